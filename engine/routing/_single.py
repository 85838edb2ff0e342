"""``single``: every row to one model."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from engine.routing._base import NAME_MAX, Policy, PolicyConfig, Route, register
from engine.routing._context import RoutingContext


class SingleConfig(PolicyConfig):
    """Send all traffic to one model."""

    model: str = Field(min_length=1, max_length=NAME_MAX, description="Model that serves every request.")
    provider_credential_id: str | None = Field(None, max_length=NAME_MAX, description="Credential used for real calls.")


@register
class Single(Policy):
    """Every row goes to ``config.model``."""

    name = "single"
    config_model = SingleConfig
    config: SingleConfig

    def route(self, ctx: RoutingContext) -> Route:
        """All rows to one model."""
        return Route(model=pl.lit(self.config.model))

    def models(self) -> set[str]:
        """The one model."""
        return {self.config.model}
