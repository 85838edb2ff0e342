"""The policy interface, the registry and nested-config resolution."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from engine.errors import ConfigError
from engine.routing._context import RoutingContext

#: Resolves ``@slug`` / ``@slug:version`` to a saved ``(policy, config)``.
RefResolver = Callable[[str], tuple[str, dict[str, Any]]]
#: How deep routes may nest (inline or through saved ``@slug`` configs, which may otherwise refer in a cycle).
MAX_NESTING = 12
#: The most entries in one list of a policy config (variants, rules, steps, attempts, models).
MAX_ITEMS = 64
#: Longest model or credential name.
NAME_MAX = 200


@dataclass(frozen=True)
class Route:
    """Per-row routing decision as expressions over the window.

    ``model`` serves the row. ``extra_cost`` and ``extra_latency`` are what
    the route spent before that model answered (failed fallback attempts,
    discarded cascade steps). ``failed`` overrides the replay's own error draw
    where it is non-null.
    """

    model: pl.Expr
    extra_cost: pl.Expr = field(default_factory=lambda: pl.lit(0.0))
    extra_latency: pl.Expr = field(default_factory=lambda: pl.lit(0.0))
    failed: pl.Expr = field(default_factory=lambda: pl.lit(None, pl.Boolean))


class PolicyConfig(BaseModel):
    """Base of every policy's config model: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Policy(ABC):
    """A routing policy: one vectorised ``route`` over the window."""

    #: Registry name (the ``candidatePolicy`` value).
    name: ClassVar[str]
    #: The pydantic model of ``candidateConfig``.
    config_model: ClassVar[type[PolicyConfig]]

    def __init__(self, config: PolicyConfig, *, param: str, resolve: RefResolver | None, depth: int = 0) -> None:
        self.config = config
        self.param = param
        self.resolve = resolve
        self.depth = depth

    @abstractmethod
    def route(self, ctx: RoutingContext) -> Route:
        """Decide every row's route."""

    def models(self) -> set[str]:
        """Models this policy may send rows to (each must be priced)."""
        return set()

    def columns(self) -> set[str]:
        """Log columns the policy reads beyond the replay's own."""
        return set()

    def nested(self, raw: Any, param: str) -> Policy:
        """Build a nested config (``{model}``, ``{policy, config}`` or ``"@slug"``)."""
        return build_nested(raw, param=param, resolve=self.resolve, depth=self.depth + 1)


_REGISTRY: dict[str, type[Policy]] = {}
_REFUSED = {
    "ensemble": "ensemble policies cannot be used as experiment candidates: an ensemble calls several "
    "models per request and merges their answers, which a replay cannot reproduce"
}

P = TypeVar("P", bound=type[Policy])


def register(cls: P) -> P:
    """Class decorator: make a policy available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def policy_names() -> list[str]:
    """Registered policy names."""
    return sorted(_REGISTRY)


def _describe(exc: ValidationError, param: str) -> ConfigError:
    err = exc.errors()[0]
    where = ".".join([param, *(str(p) for p in err["loc"])])
    return ConfigError(f"{where}: {err['msg']}", param=where)


def build_policy(
    name: str,
    config: Mapping[str, Any] | None,
    *,
    param: str = "candidateConfig",
    resolve: RefResolver | None = None,
    depth: int = 0,
) -> Policy:
    """Validate ``config`` for policy ``name`` and build it; ``ConfigError`` names the field.

    ``depth`` is how deep this route sits inside another; past ``MAX_NESTING`` it is refused.
    """
    name_param = {"candidateConfig": "candidatePolicy", "config": "policy"}.get(param, param)
    if name in _REFUSED:
        raise ConfigError(_REFUSED[name], param=name_param)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown routing policy {name!r}; choose one of: {', '.join(policy_names())}", param=name_param
        )
    if not isinstance(config, Mapping):
        raise ConfigError(f"{param} must be an object", param=param)
    try:
        parsed = cls.config_model.model_validate(dict(config))
    except ValidationError as exc:
        raise _describe(exc, param) from None
    return cls(parsed, param=param, resolve=resolve, depth=depth)


def build_nested(raw: Any, *, param: str, resolve: RefResolver | None, depth: int) -> Policy:
    """A nested route: ``{"model": …}``, ``{"policy": …, "config": …}`` or ``"@slug[:version]"``."""
    if depth > MAX_NESTING:
        raise ConfigError(
            f"{param}: routes nest more than {MAX_NESTING} levels deep (saved configs that refer to each other "
            "in a cycle do this too)",
            param=param,
        )
    if isinstance(raw, str):
        if not raw.startswith("@"):
            raise ConfigError(f"{param}: a string route must name a saved config as '@slug'", param=param)
        if resolve is None:
            raise ConfigError(f"{param}: saved config {raw!r} cannot be resolved here", param=param)
        policy, config = resolve(raw[1:])
        return build_policy(policy, config, param=param, resolve=resolve, depth=depth)
    if isinstance(raw, Mapping) and "policy" in raw:
        extra = set(raw) - {"policy", "config"}
        if extra:
            raise ConfigError(f"{param}: unexpected key(s) {sorted(extra)}", param=param)
        return build_policy(
            str(raw["policy"]), raw.get("config") or {}, param=f"{param}.config", resolve=resolve, depth=depth
        )
    if isinstance(raw, Mapping) and "model" in raw:
        return build_policy("single", raw, param=param, resolve=resolve, depth=depth)
    raise ConfigError(f"{param}: expected {{'model': …}}, {{'policy': …, 'config': …}} or '@slug'", param=param)


def combine(branches: list[tuple[pl.Expr, Route]], otherwise: Route) -> Route:
    """One route that takes the first branch whose condition holds, else ``otherwise``."""

    def pick(attr: str) -> pl.Expr:
        expr: Any = pl
        for condition, route in branches:
            expr = expr.when(condition).then(getattr(route, attr))
        return expr.otherwise(getattr(otherwise, attr)) if branches else getattr(otherwise, attr)

    return Route(
        model=pick("model"), extra_cost=pick("extra_cost"), extra_latency=pick("extra_latency"), failed=pick("failed")
    )


#: The route that leaves every row on the model that actually served it.
def keep_actual() -> Route:
    """Route every row to the model that actually served it."""
    return Route(model=pl.col("model"))
