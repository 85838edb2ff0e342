"""The maintained list prices behind the catalog: pydantic's ``genai-prices``, its bundled data only.

This is the one module that imports ``genai_prices``. It builds a snapshot of
its own from the data the pinned package ships (``genai_prices.data``): never
``UpdatePrices`` (the package's opt-in background fetch) and never the
process-wide snapshot another library may have replaced, so nothing here
reaches the network and the same version always gives the same prices.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider

SOURCE = "genai-prices"

#: Gateway and SDK prefixes (LiteLLM's, OpenRouter's, the clouds') -> genai-prices provider id.
PREFIXES = {
    "openai": "openai",
    "azure": "azure",
    "azure_ai": "azure",
    "anthropic": "anthropic",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "aws": "aws",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "vertex": "google",
    "gemini": "google",
    "google": "google",
    "openrouter": "openrouter",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "together_ai": "together",
    "together": "together",
    "fireworks_ai": "fireworks",
    "fireworks": "fireworks",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
    "databricks": "databricks",
    "moonshot": "moonshotai",
}
#: The request context that selects genai-prices' batch price variants.
BATCH_CONTEXT = {"processing": "batch"}
#: The token price keys the row-cost formula uses (others: audio, images, searches, are not in the logs).
TOKEN_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


def version() -> str:
    """The installed (pinned) genai-prices version."""
    return importlib.metadata.version("genai-prices")


@cache
def snapshot() -> DataSnapshot:
    """The package's bundled price data (loaded once per process, about a second)."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


@dataclass(frozen=True)
class Resolved:
    """What a model name is in genai-prices: the provider that bills it and the model entry."""

    provider: str
    model_id: str
    info: ModelInfo = field(compare=False, repr=False)
    #: Whether the provider lists the model itself (not through a fallback provider, e.g. Azure -> OpenAI);
    #: genai-prices applies request variants (batch) only then.
    own: bool = field(compare=False, repr=False)

    @property
    def canonical(self) -> str:
        """``provider:model`` as genai-prices names them."""
        return f"{self.provider}:{self.model_id}"


def provider_id(name: str) -> str | None:
    """The genai-prices provider of a provider name or alias (``bedrock``, ``vertex_ai``, ``azure``…)."""
    from genai_prices.data_snapshot import find_provider_by_id

    key = name.strip().lower()
    found = find_provider_by_id(snapshot().providers, PREFIXES.get(key, key))
    return found.id if found else None


def _in(provider: Provider, ref: str) -> Resolved | None:
    providers = snapshot().providers
    info = provider.find_model(ref, all_providers=providers)
    if info is None:
        return None
    return Resolved(provider.id, info.id, info, any(info is m for m in provider.models))


def resolve(name: str, provider: str | None = None) -> Resolved | None:
    """Resolve a logged model name, optionally with the row's provider, to a genai-prices model.

    Dated ids (``claude-3-5-sonnet-20241022``, ``gpt-4o-2024-08-06``) match through genai-prices'
    own match rules; a gateway prefix (``anthropic/…``, ``azure/…``, ``bedrock/…``, ``vertex_ai/…``,
    ``openrouter/…``) or the row's provider picks the provider that bills it (its own price list, or
    the one it falls back to). ``None`` when genai-prices does not know the model.
    """
    from genai_prices.data_snapshot import find_provider_by_id

    ref = name.strip().lower()
    hints: list[str] = []
    head, slash, rest = ref.partition("/")
    if slash and head in PREFIXES and rest:
        hints.append(PREFIXES[head])
        ref = rest
    if provider:
        key = provider.strip().lower()
        hints.append(PREFIXES.get(key, key))
    providers = snapshot().providers
    for hint in hints:
        found = find_provider_by_id(providers, hint)
        if found is not None and (resolved := _in(found, ref)) is not None:
            return resolved
    try:
        found, info = snapshot().find_provider_model(ref, None, None, None)
    except LookupError:
        return None
    return Resolved(found.id, info.id, info, any(info is m for m in found.models))


def noon(day: dt.date) -> dt.datetime:
    """The instant a date is priced at: 12:00 UTC.

    A time-of-day price (DeepSeek's off-peak discount) is in force for part of a day only; noon gives
    the daytime list price.
    """
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)


def _active(constraint: Any, day: dt.date) -> bool:
    return constraint is None or bool(constraint.active(noon(day)))


def token_prices(resolved: Resolved, day: dt.date, *, batch: bool = False) -> tuple[dict[str, Any], bool]:
    """The token price keys on ``day`` and whether a batch price variant supplied any.

    Each of ``TOKEN_KEYS`` is a ``Decimal``, genai-prices' ``TieredPrices`` or ``None``; batch variants
    apply when ``batch`` is asked and genai-prices has one for the model.
    """
    standard = resolved.info.get_prices(noon(day))
    prices = {key: getattr(standard, key, None) for key in TOKEN_KEYS}
    if not batch or not resolved.own:
        return prices, False
    overrides: dict[str, Any] = {}
    for variant in resolved.info.price_variants or ():
        if not _active(variant.constraint, day):
            continue
        if any(BATCH_CONTEXT.get(k) != v for k, v in variant.when.items()):
            continue
        for key in TOKEN_KEYS:
            value = getattr(variant.prices, key, None)
            if value is not None:
                overrides.setdefault(key, value)
    prices.update(overrides)
    return prices, bool(overrides)


def changes(resolved: Resolved) -> list[dt.date]:
    """Dates on which the model's prices (standard or batch) change, ascending."""
    from genai_prices.types import ModelPrice, StartDateConstraint

    dates: set[dt.date] = set()
    if not isinstance(resolved.info.prices, ModelPrice):
        dates |= {
            c.constraint.start_date for c in resolved.info.prices if isinstance(c.constraint, StartDateConstraint)
        }
    for variant in resolved.info.price_variants or ():
        if isinstance(variant.constraint, StartDateConstraint):
            dates.add(variant.constraint.start_date)
    return sorted(dates)


def rate(value: Any, above: int | None = None) -> float | None:
    """One price key in USD per million tokens: the base rate, or the tier's above ``above`` prompt tokens.

    genai-prices' tiers apply to the whole request once its prompt passes their start.
    """
    from genai_prices.types import TieredPrices

    if value is None:
        return None
    if isinstance(value, TieredPrices):
        price = value.base
        if above is not None:
            for tier in value.tiers:
                if above >= tier.start:
                    price = tier.price
        return float(price)
    assert isinstance(value, Decimal)
    return float(value)


def thresholds(prices: dict[str, Any]) -> list[int]:
    """The prompt sizes (input tokens) above which a tiered price key changes, ascending."""
    from genai_prices.types import TieredPrices

    return sorted({t.start for v in prices.values() if isinstance(v, TieredPrices) for t in v.tiers})


def models(provider: str | None = None) -> list[tuple[str, ModelInfo]]:
    """Every ``(provider id, model)`` genai-prices lists, of one provider when given (unknown: none)."""
    wanted = provider_id(provider) if provider else None
    if provider and wanted is None:
        return []
    return [(p.id, m) for p in snapshot().providers if wanted in (None, p.id) for m in p.models]
