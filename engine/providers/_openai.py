"""Any OpenAI-compatible endpoint, through the real ``openai`` SDK (``AsyncOpenAI``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2  # the openai SDK's HTTP client (a fork of httpx)
import openai

from engine.netpolicy import Target
from engine.providers._base import PAIR_HEADER, ChatCall, ChatResult, Provider


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
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=self.retry.timeout_s,
            http_client=pinned_client(pin) if pin is not None else None,
        )

    async def complete(self, call: ChatCall) -> ChatResult:
        """Send the logged request with the candidate model; retry what is retryable."""
        body: dict[str, Any] = {k: v for k, v in call.body.items() if k not in ("model", "stream", "n")}
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.client.chat.completions.create(
                    model=call.model, extra_headers={PAIR_HEADER: call.pair_id}, **body
                )
                return _result(call, response, attempt, started)
            except Exception as exc:  # the SDK raises many types; each is classified below
                error_type, retryable = _classify(exc)
                if not retryable or attempt >= self.retry.max_attempts:
                    return ChatResult(
                        pair_id=call.pair_id,
                        status="error",
                        latency_ms=(time.perf_counter() - started) * 1000,
                        error_type=error_type,
                        error_message=str(exc)[:500],
                        attempts=attempt,
                    )
                retry_after = _retry_after(exc) if isinstance(exc, openai.APIStatusError) else None
                await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.close()


def _result(call: ChatCall, response: Any, attempts: int, started: float) -> ChatResult:
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
        attempts=attempts,
    )
