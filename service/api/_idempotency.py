"""``Idempotency-Key`` for mutating calls.

The same key with the same request (method, path, query, body) answers the
first response again and does nothing twice; the same key with another
request is a 409. Keys are per management key. Only successful answers are
kept, so a request that failed can be fixed and retried under its key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.store import Store
from service.api._errors import error_response
from service.api._limits import read_body, replaying

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255


class IdempotencyMiddleware:
    """A pure ASGI middleware over the routes."""

    def __init__(self, app: ASGIApp, store: Callable[[], Store]) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        idem = headers.get("idempotency-key")
        auth = headers.get("authorization", "")
        if not idem or not auth.lower().startswith("bearer "):
            return await self.app(scope, receive, send)
        if len(idem) > MAX_KEY_LENGTH:
            response = error_response(
                400,
                f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters",
                "invalid_request_error",
                "Idempotency-Key",
            )
            return await response(scope, receive, send)
        store = self.store()
        caller = await run_in_threadpool(store.authenticate, auth[7:].strip())
        if caller is None:
            return await self.app(scope, receive, send)  # the route answers 401

        body = await read_body(receive)  # BodyLimits, outside, has bounded it already
        request_id = b"\n".join(
            [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), _canonical(body)]
        )
        fingerprint = hashlib.sha256(request_id).hexdigest()
        state, status, saved = await run_in_threadpool(store.idempotency_begin, caller.id, idem, fingerprint)
        if state != "new":
            return await _answer_reserved(state, status, saved)(scope, receive, send)

        seen_status = [500]
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen_status[0] = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        keep = False
        try:
            await self.app(scope, replaying(body, receive), capture)
            keep = 200 <= seen_status[0] < 300
        finally:
            text = _without_secrets(b"".join(chunks).decode()) if keep else None
            await run_in_threadpool(store.idempotency_finish, caller.id, idem, seen_status[0] if keep else None, text)
        return None


#: Secrets shown once (a new management key, a webhook's signing secret) are not kept for replays.
SECRET_FIELDS = {"key": "rhk_", "secret": "whsec_"}
REDACTED = "redacted: shown only in the first answer"


def _without_secrets(text: str) -> str:
    answer = json.loads(text)
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, dict):
        for name, prefix in SECRET_FIELDS.items():
            if isinstance(data.get(name), str) and data[name].startswith(prefix):
                data[name] = REDACTED
        return json.dumps(answer)
    return text


def _canonical(body: bytes) -> bytes:
    """JSON bodies compare by content, not by whitespace or key order."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def _answer_reserved(state: str, status: int | None, saved: str | None) -> Response:
    if state == "replay":
        assert status is not None and saved is not None
        return Response(
            saved, status_code=status, media_type="application/json", headers={"Idempotent-Replayed": "true"}
        )
    message = (
        "this Idempotency-Key was already used with a different request"
        if state == "mismatch"
        else "a request with this Idempotency-Key is still in progress; retry later"
    )
    return error_response(409, message, "idempotency_error", "Idempotency-Key")
