"""Any OpenAI-compatible endpoint, through the real ``openai`` SDK (``AsyncOpenAI``)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2  # the openai SDK's HTTP client (a fork of httpx)
import openai

from engine.netpolicy import Target
from engine.providers._base import PAIR_HEADER, REPORTED_COST_HEADER, ChatCall, ChatResult, Provider

#: How much of a provider's error message a result keeps.
ERROR_MESSAGE_CHARS = 500
REDACTED = "[redacted]"
#: What looks like a credential in an error message: an Authorization header or a bearer token, a
#: ``key=``/``api_key:`` pair (Google's URLs carry ``?key=``), OpenAI/Anthropic-style ``sk-`` keys (masked
#: or not) and Google API keys.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(authorization|x-api-key|api-key)(\s*[:=]\s*)(bearer\s+)?[^\s,;'\"}]+"),
    re.compile(r"(?i)\bbearer\s+[^\s,;'\"}]+"),
    re.compile(r"(?i)\b((?:api[_-]?)?key|token|secret)(\s*[:=]\s*|\s+provided:\s*)['\"]?[^\s,;&'\"}]*[^\s,;&'\"}.]"),
    re.compile(r"\bsk-[A-Za-z0-9_*\-]{4,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for 429s (honouring ``Retry-After``), 5xx, timeouts and malformed bodies."""

    max_attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    timeout_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s) if self.backoff_s > 0 else 0.0
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _classify(exc: Exception) -> tuple[str, bool]:
    """Error type and whether it is worth retrying."""
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit", True
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", True
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (408, 504):
        return "timeout", True
    if isinstance(exc, openai.InternalServerError):
        return "server_error", True
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", True
    if isinstance(exc, openai.APIStatusError):
        return ("server_error", True) if exc.status_code >= 500 else ("invalid_request", False)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValueError):
        return "malformed_response", True
    return "unknown_error", False


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` (the key the call was made with) and anything that looks like a key redacted."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_redact, text)
    return text


def _redact(match: re.Match[str]) -> str:
    groups = match.groups()
    # Keep the name and the separator of a ``name: value`` pair, so the message still says what was wrong.
    return f"{groups[0]}{groups[1]}{REDACTED}" if len(groups) >= 2 and groups[1] is not None else REDACTED


def _body_message(body: object) -> str | None:
    """The ``message`` of an error body: ``{"error": {"message"}}``, ``{"message"}``, a list of those (Gemini).

    A body without one reads as its ``detail`` (FastAPI-style servers), else as itself.
    """
    for _ in range(3):
        if isinstance(body, list) and body:
            body = body[0]
        elif isinstance(body, dict) and isinstance(body.get("error"), dict | list):
            body = body["error"]
        else:
            break
    if isinstance(body, dict):
        for name in ("message", "detail"):
            if isinstance(body.get(name), str) and body[name]:
                return str(body[name])
        return json.dumps(body, separators=(",", ":"), default=str) if body else None
    return body if isinstance(body, str) and body else None


def error_message(exc: Exception, secrets: Iterable[str] = ()) -> str:
    """What the provider said about a failed call, on one line: its own message where it sent one, no secrets."""
    message = _body_message(exc.body) if isinstance(exc, openai.APIStatusError) else None
    text = " ".join((message or str(exc) or type(exc).__name__).split())
    text = scrub_secrets(text, secrets)
    return text if len(text) <= ERROR_MESSAGE_CHARS else text[: ERROR_MESSAGE_CHARS - 1] + "…"


def reported_cost(headers: Any) -> float | None:
    """The cost the endpoint reported in ``REPORTED_COST_HEADER`` (USD), or ``None`` when absent or not a cost."""
    value = headers.get(REPORTED_COST_HEADER) if headers is not None else None
    try:
        cost = float(value) if value is not None else None
    except ValueError:
        return None
    return cost if cost is not None and math.isfinite(cost) and cost >= 0 else None


class PinnedAsyncTransport(httpx2.AsyncHTTPTransport):
    """Sends every request to the address that passed the target check: no second DNS lookup.

    The Host header, TLS SNI and the certificate check keep the base URL's host name.
    A request for any other origin (a redirect, say) is refused.
    """

    def __init__(self, target: Target, **options: Any) -> None:
        super().__init__(**options)
        self.target = target

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` to ``target.address``."""
        url = request.url
        address, extensions = self.target.pin(
            url.scheme, url.raw_host.decode("ascii"), url.port, request.extensions,
            what="provider", param="provider_credential_id",
        )  # fmt: skip
        pinned = httpx2.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await super().handle_async_request(pinned)


def pinned_client(target: Target) -> httpx2.AsyncClient:
    """An HTTP client for the SDK that connects only to ``target.address`` and follows no redirects."""
    # With a transport of its own the client ignores its limits (and proxy variables): give the SDK's limits.
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
    return openai.DefaultAsyncHttpxClient(transport=PinnedAsyncTransport(target, limits=limits), follow_redirects=False)


class OpenAICompatible(Provider):
    """One ``AsyncOpenAI`` client per credential; the SDK's own retries are off (ours honour Retry-After).

    With ``pin`` (a checked target), every call connects to its address (see ``PinnedAsyncTransport``).
    """

    def __init__(
        self, *, base_url: str, api_key: str, retry: RetryPolicy | None = None, pin: Target | None = None
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.api_key = api_key
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=self.retry.timeout_s,
            http_client=pinned_client(pin) if pin is not None else None,
        )

    async def complete(self, call: ChatCall) -> ChatResult:
        """Send the logged request with the candidate model; retry what is retryable.

        The raw response is read so its headers (a cost the endpoint reports) are kept with the answer.
        """
        body: dict[str, Any] = {k: v for k, v in call.body.items() if k not in ("model", "stream", "n")}
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            status_code: int | None = None
            try:
                raw = await self.client.chat.completions.with_raw_response.create(
                    model=call.model, extra_headers={PAIR_HEADER: call.pair_id}, **body
                )
                status_code = raw.status_code
                return _result(call, raw.parse(), attempt, started, status_code, reported_cost(raw.headers))
            except Exception as exc:  # the SDK raises many types; each is classified below
                error_type, retryable = _classify(exc)
                if not retryable or attempt >= self.retry.max_attempts:
                    if isinstance(exc, openai.APIStatusError):
                        status_code = exc.status_code
                    return ChatResult(
                        pair_id=call.pair_id,
                        status="error",
                        latency_ms=(time.perf_counter() - started) * 1000,
                        error_type=error_type,
                        error_message=error_message(exc, [self.api_key]),
                        status_code=status_code,
                        attempts=attempt,
                    )
                retry_after = _retry_after(exc) if isinstance(exc, openai.APIStatusError) else None
                await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.close()


def _result(
    call: ChatCall, response: Any, attempts: int, started: float, status_code: int, reported_cost_usd: float | None
) -> ChatResult:
    usage = response.usage
    message = response.choices[0].message if response.choices else None
    text = message.content if message is not None else None
    if message is not None and getattr(message, "tool_calls", None):
        calls = json.dumps([tc.model_dump() for tc in message.tool_calls], separators=(",", ":"))
        text = f"{text}\n{calls}" if text else calls
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return ChatResult(
        pair_id=call.pair_id,
        status="ok",
        text=text,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        cached_input_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        latency_ms=(time.perf_counter() - started) * 1000,
        status_code=status_code,
        reported_cost_usd=reported_cost_usd,
        attempts=attempts,
    )
