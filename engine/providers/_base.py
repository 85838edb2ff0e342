"""The provider interface: one async ``complete`` per chat call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

#: Header carrying the pair (log row) id on every candidate and judge call, so
#: a provider-side log can tell which pair a call belonged to.
PAIR_HEADER = "X-Rehearsal-Pair"
#: Response header in which an endpoint reports what the call cost it (a LiteLLM proxy sets it, in USD).
REPORTED_COST_HEADER = "x-litellm-response-cost"


@dataclass(frozen=True)
class ChatCall:
    """One chat completion to make: the logged request body with the model swapped."""

    pair_id: str
    model: str
    body: dict[str, Any]


@dataclass(frozen=True)
class ChatResult:
    """What one call produced, with its usage; errors are results too (``status == "error"``).

    ``status_code`` is the HTTP status of the last attempt (``None`` when no response came: a timeout, a
    connection error); ``error_message`` is the provider's own message, trimmed and with anything that
    looks like a key taken out; ``reported_cost_usd`` is the cost the endpoint reported itself
    (``REPORTED_COST_HEADER``), ``None`` when it reported none.
    """

    pair_id: str
    status: Literal["ok", "error"]
    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    latency_ms: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    status_code: int | None = None
    reported_cost_usd: float | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """A model provider. Implementations register by vendor name."""

    @abstractmethod
    async def complete(self, call: ChatCall) -> ChatResult:
        """Make one call (with the provider's own retries); never raises for an API error."""

    async def aclose(self) -> None:
        """Release connections."""
        return None
