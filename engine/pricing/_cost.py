"""The one row-cost formula, as Polars expressions over the log columns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from engine.pricing._catalog import ModelPrice, PriceTier


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


def _at(rates: ModelPrice | PriceTier, output_tokens: pl.Expr) -> pl.Expr:
    return row_cost(
        pl.col("input_tokens"),
        output_tokens,
        pl.col("cached_input_tokens"),
        input_per_mtok=rates.input_per_mtok,
        output_per_mtok=rates.output_per_mtok,
        cached_input_per_mtok=rates.cached_rate,
    )


def piecewise(cases: list[tuple[pl.Expr, pl.Expr]], otherwise: pl.Expr) -> pl.Expr:
    """``when(c1).then(v1).when(c2).then(v2)….otherwise(otherwise)``; the first true case wins."""
    if not cases:
        return otherwise
    chain: Any = pl
    for condition, value in cases:
        chain = chain.when(condition).then(value)
    result: pl.Expr = chain.otherwise(otherwise)
    return result


def cost_at(price: ModelPrice, *, output_tokens: pl.Expr | None = None) -> pl.Expr:
    """Row cost at ``price`` over the log columns (optionally with other output tokens).

    A price with prompt-size tiers (e.g. above 200k input tokens) charges each row at the tier
    its own prompt falls in, as the provider bills it.
    """
    output = pl.col("output_tokens") if output_tokens is None else output_tokens
    cases = [(pl.col("input_tokens") > tier.above_input_tokens, _at(tier, output)) for tier in reversed(price.tiers)]
    return piecewise(cases, _at(price, output))
