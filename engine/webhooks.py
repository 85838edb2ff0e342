"""Webhooks: endpoints, signed deliveries, retries with backoff, and the target allow-list.

A delivery's body is ``{"id", "type", "created_at", "data"}``. It is signed
with HMAC-SHA256 over ``"<unix timestamp>.<raw body>"``; the timestamp goes in
``X-Rehearsal-Timestamp`` so receivers can refuse old (replayed) deliveries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator

from engine.errors import ConfigError
from engine.schema import NAME_MAX, Body

EventType = Literal["experiment.completed", "experiment.regression_detected"]
EVENT_TYPES: list[EventType] = ["experiment.completed", "experiment.regression_detected"]
TIMESTAMP_HEADER = "X-Rehearsal-Timestamp"
SIGNATURE_HEADER = "X-Rehearsal-Signature"
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


def check_target(url: str, allow: list[str], *, resolve: bool = True) -> None:
    """Refuse targets that are not allowed: ``ConfigError`` naming ``url``.

    ``allow`` holds host patterns (``hooks.example.com``, ``*.example.com``,
    ``127.0.0.1``; ``*`` allows any public host). Private, loopback and
    link-local addresses are refused unless listed explicitly, so a webhook
    cannot be aimed at internal services by accident.
    """
    host = (urlsplit(url).hostname or "").lower()
    if any(_matches(host, pattern.lower()) for pattern in allow if pattern != "*"):
        return
    if "*" not in allow:
        raise ConfigError(
            f"webhook host {host!r} is not in the allow-list (REHEARSAL_WEBHOOK_ALLOW_HOSTS)", param="url"
        )
    for address in _addresses(host) if resolve else []:
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise ConfigError(
                f"webhook host {host!r} resolves to the internal address {address}; list it in "
                "REHEARSAL_WEBHOOK_ALLOW_HOSTS to allow it",
                param="url",
            )


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def send(url: str, secret: str, payload: dict[str, Any], *, timeout_s: float = 10.0) -> tuple[int | None, str | None]:
    """POST one signed delivery; returns the status code (``None`` on a network error) and an error text."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rehearsal-webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, raw),
    }
    try:
        answer = httpx.post(url, content=raw, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status_code < 300:
        return answer.status_code, None
    return answer.status_code, f"HTTP {answer.status_code}"
