"""Dashboard sign-in: a server-side session in an HttpOnly, SameSite=Strict cookie, scoped like the API.

Signing in with a management key opens a session in the store (only the hash
of its random id is kept); the cookie carries that id, never the key. Every
request checks the session and its key, so signing out or revoking the key
ends the session at once, even for a copied cookie.

Form posts are guarded twice against cross-site requests: the browser does
not send a SameSite=Strict cookie on them, and each form carries a token
derived from the session (an HMAC keyed with its id, which no other site can
compute), checked together with the ``Origin`` header.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request
from starlette.responses import Response

from engine.schema import ApiKey
from engine.store import Store
from service.api._deps import Svc, _scope

COOKIE = "rehearsal_session"
#: The cookie of older versions, which held the raw key: dropped wherever it is seen.
LEGACY_COOKIE = "rehearsal_key"
#: A sign-in lasts a working week; the key itself may be revoked sooner (it is checked on every request).
COOKIE_MAX_AGE_S = 7 * 24 * 3600
_CSRF_CONTEXT = b"rehearsal dashboard form v1"
#: The largest form body read (sign-in and buttons post a few hundred bytes).
FORM_MAX_BYTES = 16 * 1024


class SignInRequired(Exception):
    """No live session: the page answers with a redirect to ``/login`` (JSON routes with 401)."""

    def __init__(self, had_cookie: bool) -> None:
        super().__init__("sign in with a management key")
        self.had_cookie = had_cookie


class BadForm(Exception):
    """A form post that failed the cross-site checks (or could not be read)."""


def csrf_token(session_id: str) -> str:
    """The token every form of a signed-in page carries (tied to the session, not the key)."""
    return hmac.new(session_id.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def open_session(store: Store, key: ApiKey) -> str:
    """A new session for a key that just signed in; returns its id (for the cookie)."""
    return store.create_session(key.id, COOKIE_MAX_AGE_S)


def set_session_cookie(response: Response, request: Request, session_id: str) -> None:
    """Remember the session (HttpOnly, SameSite=Strict; Secure when served over https)."""
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    clear_legacy_cookie(response, request)


def clear_session_cookie(response: Response, request: Request) -> None:
    """Forget the session in the browser (the store's record is ended apart, by ``delete_session``)."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    clear_legacy_cookie(response, request)


def clear_legacy_cookie(response: Response, request: Request) -> None:
    """Drop an older version's cookie, which held the raw key, when the browser still sends one."""
    if LEGACY_COOKIE in request.cookies:
        response.delete_cookie(LEGACY_COOKIE, path="/", httponly=True, samesite="strict")


class Session:
    """The signed-in caller: the key's record, the session's id (to end it) and form token, the project scope."""

    def __init__(self, key: ApiKey, session_id: str) -> None:
        self.key = key
        self.id = session_id
        self.scope: list[str] | None = _scope(key)
        self.csrf = csrf_token(session_id)


def current_session(request: Request, store: Store) -> Session | None:
    """The live session the request's cookie names, or ``None`` (no cookie, expired, signed out, key revoked)."""
    session_id = request.cookies.get(COOKIE)
    key = store.session_key(session_id) if session_id else None
    return Session(key, session_id) if key is not None and session_id else None


def _session(request: Request, svc: Svc) -> Session:
    session = current_session(request, svc.store)
    if session is None:
        raise SignInRequired(had_cookie=COOKIE in request.cookies or LEGACY_COOKIE in request.cookies)
    return session


def same_origin(request: Request) -> bool:
    """The post came from a page of this site (``Origin``, else ``Referer``, names this host)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the dashboard's forms send)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadForm("forms must be url-encoded")
    body = await request.body()
    if len(body) > FORM_MAX_BYTES:
        raise BadForm("the form is too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def _checked_form(request: Request, session: Annotated[Session, Depends(_session)]) -> dict[str, str]:
    if not same_origin(request):
        raise BadForm("the form was not sent from this site")
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
        raise BadForm("the form's token does not match this sign-in; reload the page and try again")
    return form


#: The signed-in caller of a page (missing or bad key: a redirect to the sign-in page).
SessionDep = Annotated[Session, Depends(_session)]
#: A form post of a signed-in page that passed the cross-site checks.
FormDep = Annotated[dict[str, str], Depends(_checked_form)]
