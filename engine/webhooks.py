"""Webhooks: endpoints, signed deliveries, retries with backoff, and the target check.

A delivery's body is ``{"id", "type", "created_at", "data"}``. It is signed
with HMAC-SHA256 over ``"<unix timestamp>.<raw body>"``; the timestamp goes in
``X-Rehearsal-Timestamp`` so receivers can refuse old (replayed) deliveries.
Each attempt checks the target URL again (``engine.netpolicy``) and connects to
the address that passed, never to a second DNS answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator

from engine.netpolicy import Resolver, Target, check_url, resolve_host
from engine.schema import NAME_MAX, Body

EventType = Literal["experiment.completed", "experiment.regression_detected"]
EVENT_TYPES: list[EventType] = ["experiment.completed", "experiment.regression_detected"]
TIMESTAMP_HEADER = "X-Rehearsal-Timestamp"
SIGNATURE_HEADER = "X-Rehearsal-Signature"
#: The setting that lists the webhook targets allowed (``engine.settings.Settings.webhook_allow_hosts``).
ALLOW_SETTING = "REHEARSAL_WEBHOOK_ALLOW_HOSTS"
#: Retries go on for up to 24 hours after the first attempt.
RETRY_WINDOW_S = 24 * 3600.0
#: Receivers should refuse deliveries whose timestamp is older than this.
DEFAULT_TOLERANCE_S = 300


class WebhookCreate(Body):
    """The body of ``POST /manage/v1/webhooks``."""

    project_id: str = Field(min_length=1, max_length=NAME_MAX)
    url: str = Field(min_length=1, max_length=2000)
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        return value


class WebhookEndpoint(BaseModel):
    """A webhook endpoint as listed (never with its secret)."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    project_id: str
    url: str
    events: list[EventType]
    created_at: dt.datetime


class CreatedWebhook(WebhookEndpoint):
    """A new endpoint with its signing secret, shown this once."""

    secret: str


class Delivery(BaseModel):
    """One event sent (or to be sent) to one endpoint, with its attempts."""

    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    webhook_id: str
    project_id: str
    event_id: str
    type: EventType
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: dt.datetime | None = None
    payload: dict[str, Any]
    created_at: dt.datetime
    delivered_at: dt.datetime | None = None


def new_secret() -> str:
    """A signing secret."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The ``X-Rehearsal-Signature`` value: ``sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    raw_body: bytes,
    timestamp_header: str,
    signature_header: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (no replays)."""
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, raw_body), signature_header)


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event envelope."""
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "type": kind,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "data": data,
    }


def backoff_s(attempts: int, first_s: float = 30.0) -> float:
    """The wait after attempt number ``attempts`` (1-based): ``first_s``, then doubling, capped at 6 hours."""
    return min(first_s * 2 ** (attempts - 1), 6 * 3600.0)


def check_target(url: str, allow: list[str], *, resolve: Resolver = resolve_host) -> Target:
    """Check a webhook URL against ``allow`` (``REHEARSAL_WEBHOOK_ALLOW_HOSTS``); the target to send to.

    ``ConfigError`` naming ``url`` when it is refused: see ``engine.netpolicy`` for the rule
    (public addresses only, unless the host, address or network is listed; ``*`` = any public host).
    """
    return check_url(url, allow, setting=ALLOW_SETTING, param="url", what="webhook url", resolve=resolve)


class PinnedTransport(httpx.HTTPTransport):
    """Sends every request to the address that passed the target check: no second DNS lookup.

    The Host header, TLS SNI and the certificate check keep the URL's host name.
    A request for any other origin (a redirect, say) is refused.
    """

    def __init__(self, target: Target, **options: Any) -> None:
        super().__init__(**options)
        self.target = target

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to ``target.address``."""
        url = request.url
        address, extensions = self.target.pin(
            url.scheme, url.raw_host.decode("ascii"), url.port, request.extensions, what="webhook", param="url"
        )
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return super().handle_request(pinned)


def send(
    target: Target, secret: str, payload: dict[str, Any], *, timeout_s: float = 10.0
) -> tuple[int | None, str | None]:
    """POST one signed delivery to a checked target, at its checked address; no redirects are followed.

    Returns the status code (``None`` on a network error) and an error text.
    """
    raw = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rehearsal-webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, raw),
    }
    try:
        with httpx.Client(transport=PinnedTransport(target), timeout=timeout_s, follow_redirects=False) as client:
            answer = client.post(target.url, content=raw, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status_code < 300:
        return answer.status_code, None
    return answer.status_code, f"HTTP {answer.status_code}"
