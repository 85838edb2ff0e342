"""Routing policies: each maps every log row to a route with vectorised Polars expressions.

Policies register by name (``candidatePolicy``); ``build_policy`` validates a
``candidateConfig`` into one. ``ensemble`` is refused as a candidate.
"""

from engine.routing import _ab_test, _cascade, _custom_rules, _fallback, _optimized, _single  # noqa: F401  (registration)
from engine.routing._base import Policy, RefResolver, Route, build_policy, policy_names, register
from engine.routing._context import MIN_OBSERVED_ROWS, LatencyFit, ModelStats, RoutingContext, observe
from engine.routing._expr import FIELDS, compile_condition

__all__ = [
    "FIELDS",
    "MIN_OBSERVED_ROWS",
    "LatencyFit",
    "ModelStats",
    "Policy",
    "RefResolver",
    "Route",
    "RoutingContext",
    "build_policy",
    "compile_condition",
    "observe",
    "policy_names",
    "register",
]
