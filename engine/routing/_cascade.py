"""``cascade``: a cheap model first; rows that meet a step's condition escalate."""

from __future__ import annotations

import polars as pl
from pydantic import Field, model_validator

from engine.routing._base import NAME_MAX, Policy, PolicyConfig, Route, register
from engine.routing._context import RoutingContext
from engine.routing._expr import compile_condition

#: Most steps of one cascade (each escalation nests the route's expressions one level deeper).
MAX_STEPS = 16


class Step(PolicyConfig):
    """One model of the cascade and when to move past it."""

    model: str = Field(min_length=1, max_length=NAME_MAX)
    escalate_if: str | None = Field(None, description="Rule over row fields; true moves the row to the next step.")
    provider_credential_id: str | None = Field(None, max_length=NAME_MAX)


class CascadeConfig(PolicyConfig):
    """Steps from cheapest to strongest; every step but the last needs ``escalate_if``."""

    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _conditions(self) -> CascadeConfig:
        for i, step in enumerate(self.steps[:-1]):
            if not step.escalate_if:
                raise ValueError(f"step {i} needs escalate_if (only the last step may omit it)")
        return self


@register
class Cascade(Policy):
    """Escalated rows pay every step they passed through (cost and latency)."""

    name = "cascade"
    config_model = CascadeConfig
    config: CascadeConfig

    def conditions(self) -> list[pl.Expr]:
        """The compiled ``escalate_if`` of every step but the last."""
        return [
            compile_condition(step.escalate_if or "", param=f"{self.param}.steps.{i}.escalate_if").expr
            for i, step in enumerate(self.config.steps[:-1])
        ]

    def route(self, ctx: RoutingContext) -> Route:
        """Back to front: a row stops at the first step whose condition is false."""
        steps = self.config.steps
        model: pl.Expr = pl.lit(steps[-1].model)
        extra_cost: pl.Expr = pl.lit(0.0)
        extra_latency: pl.Expr = pl.lit(0.0)
        for step, escalate in zip(reversed(steps[:-1]), reversed(self.conditions()), strict=True):
            model = pl.when(escalate).then(model).otherwise(pl.lit(step.model))
            extra_cost = pl.when(escalate).then(extra_cost + ctx.served_cost(step.model)).otherwise(0.0)
            extra_latency = pl.when(escalate).then(extra_latency + ctx.realized_latency(step.model)).otherwise(0.0)
        return Route(model=model, extra_cost=extra_cost, extra_latency=extra_latency)

    def models(self) -> set[str]:
        """Every step's model."""
        return {s.model for s in self.config.steps}

    def columns(self) -> set[str]:
        """Columns the conditions read."""
        return set().union(
            *(
                compile_condition(s.escalate_if or "", param=f"{self.param}.steps.{i}.escalate_if").columns
                for i, s in enumerate(self.config.steps[:-1])
            )
        )
