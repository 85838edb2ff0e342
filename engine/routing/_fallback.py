"""``fallback``: try models in order; a failed attempt falls through to the next."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from engine.routing._base import MAX_ITEMS, NAME_MAX, Policy, PolicyConfig, Route, register
from engine.routing._context import RoutingContext

DEFAULT_RETRY_ON = ["rate_limit", "server_error", "timeout"]


class Attempt(PolicyConfig):
    """One model in the chain."""

    model: str = Field(min_length=1, max_length=NAME_MAX)
    timeout_ms: float | None = Field(None, gt=0, le=3_600_000, description="Give up on this attempt after this long.")
    provider_credential_id: str | None = None


class FallbackConfig(PolicyConfig):
    """Ordered attempts and the error types that move on to the next one."""

    attempts: list[Attempt] = Field(min_length=1, max_length=MAX_ITEMS)
    retry_on: list[str] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON), max_length=MAX_ITEMS)


@register
class Fallback(Policy):
    """The first attempt that does not fail serves the row.

    An attempt fails with its model's observed rate of the ``retry_on`` error
    types (its real outcome where the row actually ran on it), or when its
    latency would pass ``timeout_ms``. A failed attempt costs its input
    tokens and its time (the timeout, or the model's time to first token for
    an error); the last attempt always answers, with its own error rate.
    """

    name = "fallback"
    config_model = FallbackConfig
    config: FallbackConfig

    def route(self, ctx: RoutingContext) -> Route:
        """Walk the attempts as expressions, accumulating the cost of failures."""
        attempts = self.config.attempts
        last = attempts[-1]
        model: pl.Expr = pl.lit(last.model)
        failed: pl.Expr = pl.lit(None, pl.Boolean)
        extra_cost: pl.Expr = pl.lit(0.0)
        extra_latency: pl.Expr = pl.lit(0.0)
        # Built back to front: at attempt i, a row either is served here or pays and moves on.
        for i in range(len(attempts) - 2, -1, -1):
            attempt = attempts[i]
            salt = f"fallback:{i}"
            errored = ctx.fails(attempt.model, salt, self.config.retry_on)
            timed_out = pl.lit(False)
            if attempt.timeout_ms is not None:
                timed_out = ctx.realized_latency(attempt.model) > attempt.timeout_ms
            moves_on = errored | timed_out
            # A row served here can still fail with an error type that is not retried.
            hard_error = ctx.fails(attempt.model, salt) & ~errored
            wasted_time = (
                pl.when(timed_out)
                .then(pl.lit(attempt.timeout_ms or 0.0))
                .otherwise(pl.lit(ctx.catalog.price(attempt.model).ttft_ms))
            )
            model = pl.when(moves_on).then(model).otherwise(pl.lit(attempt.model))
            failed = pl.when(moves_on).then(failed).otherwise(hard_error)
            extra_cost = (
                pl.when(moves_on).then(extra_cost + ctx.estimated_cost(attempt.model, input_only=True)).otherwise(0.0)
            )
            extra_latency = pl.when(moves_on).then(extra_latency + wasted_time).otherwise(0.0)
        return Route(model=model, extra_cost=extra_cost, extra_latency=extra_latency, failed=failed)

    def models(self) -> set[str]:
        """Every attempt's model."""
        return {a.model for a in self.config.attempts}

    def columns(self) -> set[str]:
        """Reads error types to decide what is retried."""
        return {"error_type"}
