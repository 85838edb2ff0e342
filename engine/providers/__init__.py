"""Model providers behind one small interface.

``openai`` reaches any OpenAI-compatible endpoint through the real SDK; the
simulated provider (``engine.providers._sim``) is a loopback OpenAI-compatible
server reached through the same client. ``OpenAICompatible`` and its neighbours load on first use, so
what only needs the call contract does not import the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.providers._base import PAIR_HEADER, REPORTED_COST_HEADER, ChatCall, ChatResult, Provider

if TYPE_CHECKING:
    from engine.providers._openai import OpenAICompatible, RetryPolicy, scrub_secrets

__all__ = [
    "PAIR_HEADER",
    "REPORTED_COST_HEADER",
    "ChatCall",
    "ChatResult",
    "OpenAICompatible",
    "Provider",
    "RetryPolicy",
    "scrub_secrets",
]


def __getattr__(name: str) -> Any:
    if name not in ("OpenAICompatible", "RetryPolicy", "scrub_secrets"):
        raise AttributeError(f"module 'engine.providers' has no attribute {name!r}")
    from engine.providers import _openai

    return getattr(_openai, name)
