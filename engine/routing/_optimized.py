"""``cost_optimized`` and ``latency_optimized``: per row, the best allowed model by an estimate."""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated

import polars as pl
from pydantic import Field

from engine.errors import ConfigError
from engine.routing._base import MAX_ITEMS, NAME_MAX, Policy, PolicyConfig, Route, register
from engine.routing._context import RoutingContext


class CostOptimizedConfig(PolicyConfig):
    """Cheapest allowed model per row."""

    allowed_models: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(min_length=1, max_length=MAX_ITEMS)
    quality_tier: int | None = Field(
        None, ge=1, le=3, description="Only models at this catalog tier or better (1 = frontier)."
    )


class LatencyOptimizedConfig(PolicyConfig):
    """Fastest allowed model per row."""

    allowed_models: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(min_length=1, max_length=MAX_ITEMS)


class _Argmin(Policy):
    """Pick, per row, the allowed model with the smallest score (first listed wins ties)."""

    config: CostOptimizedConfig | LatencyOptimizedConfig

    @abstractmethod
    def score(self, ctx: RoutingContext, model: str) -> pl.Expr:
        """The quantity to minimise for each row on ``model``."""

    def candidates(self, ctx: RoutingContext) -> list[str]:
        """The allowed models, each checked against the catalog."""
        for i, model in enumerate(self.config.allowed_models):
            ctx.catalog.price(model, param=f"{self.param}.allowed_models.{i}")
        return list(dict.fromkeys(self.config.allowed_models))

    def route(self, ctx: RoutingContext) -> Route:
        """Argmin over the candidates' scores."""
        models = self.candidates(ctx)
        scores = [self.score(ctx, m) for m in models]
        best = pl.min_horizontal(scores)
        chosen: pl.Expr = pl.lit(models[-1])
        for model, score in zip(reversed(models[:-1]), reversed(scores[:-1]), strict=True):
            chosen = pl.when(score <= best).then(pl.lit(model)).otherwise(chosen)
        return Route(model=chosen)

    def models(self) -> set[str]:
        """The allowed models."""
        return set(self.config.allowed_models)


@register
class CostOptimized(_Argmin):
    """Cheapest model at list prices for the row's token counts."""

    name = "cost_optimized"
    config_model = CostOptimizedConfig
    config: CostOptimizedConfig

    def candidates(self, ctx: RoutingContext) -> list[str]:
        """Allowed models, narrowed to the requested quality tier."""
        models = super().candidates(ctx)
        tier = self.config.quality_tier
        if tier is None:
            return models
        kept = [m for m in models if ctx.catalog.price(m).quality_tier <= tier]
        if not kept:
            raise ConfigError(
                f"{self.param}.quality_tier: no allowed model is at tier {tier} or better",
                param=f"{self.param}.quality_tier",
            )
        return kept

    def score(self, ctx: RoutingContext, model: str) -> pl.Expr:
        """Estimated cost."""
        return ctx.estimated_cost(model)


@register
class LatencyOptimized(_Argmin):
    """Fastest model by expected latency (the window's fit, else the catalog profile)."""

    name = "latency_optimized"
    config_model = LatencyOptimizedConfig
    config: LatencyOptimizedConfig

    def score(self, ctx: RoutingContext, model: str) -> pl.Expr:
        """Expected latency."""
        return ctx.expected_latency(model)
