"""The pricing and latency catalog and the one row-cost formula used everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from engine.configfile import load_yaml_model
from engine.errors import ConfigError

NonNegative = Annotated[float, Field(ge=0)]


class ModelPrice(BaseModel):
    """List prices (USD per million tokens) and latency profile of one chat model."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(description="Vendor that serves the model, e.g. `openai`.")
    input_per_mtok: NonNegative = Field(description="Uncached prompt tokens.")
    output_per_mtok: NonNegative = Field(description="Completion tokens, reasoning included.")
    cached_input_per_mtok: NonNegative | None = Field(
        None, description="Prompt tokens read from the provider's cache; defaults to the input price."
    )
    ttft_ms: NonNegative = Field(description="Typical time to first token.")
    output_tokens_per_s: Annotated[float, Field(gt=0)] = Field(description="Typical streaming rate.")
    quality_tier: Annotated[int, Field(ge=1, le=3)] = Field(
        2, description="1 = frontier, 2 = strong, 3 = small; used by `cost_optimized`."
    )

    @property
    def cached_rate(self) -> float:
        """The cached-input price, falling back to the plain input price."""
        return self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok


class EmbeddingPrice(BaseModel):
    """Price of one embedding model (input tokens only)."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    input_per_mtok: NonNegative


class Catalog(BaseModel):
    """Chat models and embedding models with their prices."""

    models: dict[str, ModelPrice]
    embeddings: dict[str, EmbeddingPrice] = Field(default_factory=dict)

    def price(self, model: str, *, param: str = "model") -> ModelPrice:
        """The price entry of ``model``; a ``ConfigError`` naming ``param`` if unknown."""
        try:
            return self.models[model]
        except KeyError:
            raise ConfigError(
                f"unknown model {model!r}: it is not in the pricing catalog; "
                "add it to your catalog (REHEARSAL_PRICING / --pricing) or pick one of: "
                + ", ".join(sorted(self.models)),
                param=param,
            ) from None


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; a ``ConfigError`` names the bad entry."""
    return load_yaml_model(path, Catalog, what="pricing catalog", param="pricing")


def row_cost(
    input_tokens: pl.Expr,
    output_tokens: pl.Expr,
    cached_input_tokens: pl.Expr,
    *,
    input_per_mtok: pl.Expr | float,
    output_per_mtok: pl.Expr | float,
    cached_input_per_mtok: pl.Expr | float,
) -> pl.Expr:
    """Cost in USD of one request: ``((in - cached) * in_rate + cached * cached_rate + out * out_rate) / 1e6``."""
    return (
        (input_tokens - cached_input_tokens) * input_per_mtok
        + cached_input_tokens * cached_input_per_mtok
        + output_tokens * output_per_mtok
    ) / 1e6


def cost_at(price: ModelPrice, *, output_tokens: pl.Expr | None = None) -> pl.Expr:
    """Row cost at ``price`` over the log columns (optionally with other output tokens)."""
    return row_cost(
        pl.col("input_tokens"),
        pl.col("output_tokens") if output_tokens is None else output_tokens,
        pl.col("cached_input_tokens"),
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        cached_input_per_mtok=price.cached_rate,
    )
