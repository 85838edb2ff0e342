"""``ab_test``: split traffic between variants by a stable hash of the request id."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.routing._base import MAX_ITEMS, Policy, PolicyConfig, Route, combine, register
from engine.routing._context import RoutingContext


class Variant(PolicyConfig):
    """One arm of the test."""

    weight: float = Field(gt=0, le=1e6, description="Relative share of traffic (normalised over all variants).")
    config: Any = Field(description="A nested route: {model}, {policy, config} or '@slug'.")


class ABTestConfig(PolicyConfig):
    """Weighted split over nested routes."""

    variants: list[Variant] = Field(min_length=1, max_length=MAX_ITEMS)


@register
class ABTest(Policy):
    """Each row draws one variant by weight; the draw is a seeded hash of ``request_id``."""

    name = "ab_test"
    config_model = ABTestConfig
    config: ABTestConfig

    def arms(self) -> list[Policy]:
        """The nested policy of every variant."""
        return [self.nested(v.config, f"{self.param}.variants.{i}.config") for i, v in enumerate(self.config.variants)]

    def route(self, ctx: RoutingContext) -> Route:
        """Cumulative weights against one uniform draw per row."""
        total = sum(v.weight for v in self.config.variants)
        draw = ctx.uniform("ab_test")
        arms = [arm.route(ctx) for arm in self.arms()]
        branches, edge = [], 0.0
        for variant, arm in zip(self.config.variants[:-1], arms[:-1], strict=True):
            edge += variant.weight / total
            branches.append((draw < edge, arm))
        return combine(branches, arms[-1])

    def models(self) -> set[str]:
        """Union of the variants' models."""
        return set().union(*(arm.models() for arm in self.arms()))

    def columns(self) -> set[str]:
        """Union of the variants' columns."""
        return set().union(*(arm.columns() for arm in self.arms()))
