"""Model providers behind one small interface.

``openai`` reaches any OpenAI-compatible endpoint through the real SDK; the
simulated provider (``engine.providers._sim``) is a loopback OpenAI-compatible
server reached through the same client.
"""

from engine.providers._base import PAIR_HEADER, REPORTED_COST_HEADER, ChatCall, ChatResult, Provider
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
