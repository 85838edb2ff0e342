"""Bounds every request meets before a route sees it, and a last-resort 500 that keeps the connection.

``BodyLimits`` reads a mutating request's body once: too large is a 413, JSON
nested too deeply or holding a number that is not finite (``Infinity``,
``NaN``, ``1e400``) is a 400 naming where, so no route, model or stored
object ever meets such a value; a JSON body sent with no JSON ``Content-Type``
(curl's ``-d`` default) is read as JSON. ``CatchAll`` answers an unexpected error with
the error envelope and swallows it: Starlette's own handler re-raises, and
the server then drops the keep-alive connection of the next request.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.schema import JSON_MAX_DEPTH, json_problem
from service.api._errors import error_response

log = logging.getLogger("rehearsal.api")

#: The largest request body read (the guides' bodies are a few kilobytes).
BODY_MAX_BYTES = 1024 * 1024
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class BodyTooLarge(Exception):
    """The body passed ``BODY_MAX_BYTES``."""


async def read_body(receive: Receive, limit: int = BODY_MAX_BYTES) -> bytes:
    """The whole request body; ``BodyTooLarge`` as soon as it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already read ``body`` to the app, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parse(body: bytes) -> tuple[bool, tuple[str, str | None] | None]:
    """Whether ``body`` is JSON, and what is wrong with it (``None``: nothing)."""
    try:
        value = json.loads(body)
    except RecursionError:
        return True, (f"the body nests deeper than {JSON_MAX_DEPTH} levels", None)
    except ValueError:
        return False, None  # not JSON: the route answers that, naming what it expected
    return True, json_problem(value)


#: What a client that names no JSON type sends: nothing, or curl's default for ``-d``.
UNDECLARED = {b"", b"application/x-www-form-urlencoded"}


def _as_json(scope: Scope) -> Scope:
    """``scope`` with a JSON ``Content-Type`` where the client declared none (or curl's ``-d`` default).

    The guides' own curls send JSON with ``-d`` and, in places, no ``-H "Content-Type: ..."``.
    """
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    declared = [v.split(b";")[0].strip().lower() for k, v in scope["headers"] if k.lower() == b"content-type"]
    if any(d not in UNDECLARED for d in declared):
        return scope
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class BodyLimits:
    """Pure ASGI middleware: size, depth and finiteness of mutating requests' bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        try:
            body = await read_body(receive)
        except BodyTooLarge:
            response = error_response(
                413, f"the request body is larger than {BODY_MAX_BYTES // 1024} KiB", "request_too_large"
            )
            return await response(scope, receive, send)
        is_json, problem = _parse(body) if body else (False, None)
        if problem is not None:
            message, param = problem
            return await error_response(400, message, "invalid_request_error", param)(scope, receive, send)
        return await self.app(_as_json(scope) if is_json else scope, replaying(body, receive), send)


class CatchAll:
    """Outermost: an error no handler took becomes a logged 500 envelope, and is not re-raised."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, "internal error; the server log has the details", "internal_error")
                await response(scope, receive, send)
        return None
