"""``custom_rules``: ordered ``if``/``then`` rules over row fields, with an ``else``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from engine.routing._base import MAX_ITEMS, Policy, PolicyConfig, Route, combine, keep_actual, register
from engine.routing._context import RoutingContext
from engine.routing._expr import compile_condition


class Rule(PolicyConfig):
    """``{"if": condition, "then": route}`` or a final ``{"else": route}``."""

    model_config = PolicyConfig.model_config | {"populate_by_name": True}

    if_: str | None = Field(None, alias="if")
    then: Any = None
    else_: Any = Field(None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.else_ is not None and (self.if_ is not None or self.then is not None):
            raise ValueError("an 'else' rule takes no 'if' or 'then'")
        if self.else_ is None and (self.if_ is None or self.then is None):
            raise ValueError("a rule needs both 'if' and 'then' (or only 'else')")
        return self


class CustomRulesConfig(PolicyConfig):
    """Rules tried in order; the first whose condition holds routes the row."""

    rules: list[Rule] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("rules")
    @classmethod
    def _else_last(cls, rules: list[Rule]) -> list[Rule]:
        if any(rule.else_ is not None for rule in rules[:-1]):
            raise ValueError("'else' must be the last rule")
        return rules


@register
class CustomRules(Policy):
    """First matching rule wins; without an ``else`` unmatched rows stay where they ran."""

    name = "custom_rules"
    config_model = CustomRulesConfig
    config: CustomRulesConfig

    def _parts(self) -> tuple[list[tuple[Any, Policy]], Policy | None]:
        branches, fallback = [], None
        for i, rule in enumerate(self.config.rules):
            param = f"{self.param}.rules.{i}"
            if rule.else_ is not None:
                fallback = self.nested(rule.else_, f"{param}.else")
            else:
                condition = compile_condition(rule.if_ or "", param=f"{param}.if")
                branches.append((condition, self.nested(rule.then, f"{param}.then")))
        return branches, fallback

    def route(self, ctx: RoutingContext) -> Route:
        """A when/then chain over the rules' nested routes."""
        branches, fallback = self._parts()
        otherwise = fallback.route(ctx) if fallback is not None else keep_actual()
        return combine([(cond.expr, policy.route(ctx)) for cond, policy in branches], otherwise)

    def models(self) -> set[str]:
        """Union of every rule's models."""
        branches, fallback = self._parts()
        out = set().union(*(p.models() for _, p in branches))
        return out | (fallback.models() if fallback else set())

    def columns(self) -> set[str]:
        """Columns the conditions and nested routes read."""
        branches, fallback = self._parts()
        out: set[str] = set().union(*(c.columns | p.columns() for c, p in branches))
        return out | (fallback.columns() if fallback else set())
