"""Prices and latency profiles: genai-prices' list prices by date, a pricing file's overrides, the row-cost formula.

``Catalog`` (from ``load_catalog``) answers what a model costs on a date
(``price``/``rates``), who bills it (``provider_of``) and its latency profile;
``cost_at``/``Catalog.cost`` turn prices into vectorised per-row costs.
"""

from engine.pricing._catalog import (
    SHIPPED,
    AsOf,
    Catalog,
    EmbeddingPrice,
    Family,
    ModelEntry,
    ModelPrice,
    PriceQuote,
    PriceTier,
    Profile,
    load_catalog,
    today,
)
from engine.pricing._cost import cost_at, piecewise, row_cost

__all__ = [
    "SHIPPED",
    "AsOf",
    "Catalog",
    "EmbeddingPrice",
    "Family",
    "ModelEntry",
    "ModelPrice",
    "PriceQuote",
    "PriceTier",
    "Profile",
    "cost_at",
    "load_catalog",
    "piecewise",
    "row_cost",
    "today",
]
