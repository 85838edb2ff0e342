"""Routing-only replay: what the window would have cost and how fast it would have been."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine.pricing import AsOf, Catalog, piecewise
from engine.routing import MIN_OBSERVED_ROWS, Policy, RoutingContext
from engine.schema import Deltas, Summary

#: Columns every replay reads; policies and filters add theirs.
REPLAY_COLUMNS = (
    "request_id",
    "timestamp",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "latency_ms",
    "cost_usd",
    "status",
    "error_type",
)


@dataclass(frozen=True)
class ReplayResult:
    """Both sides' summaries, the deltas, notes, and the per-row candidate columns."""

    baseline: Summary
    candidate: Summary
    deltas: Deltas
    notes: list[str]
    rows: pl.DataFrame


def pct_change(base: float, cand: float, label: str, notes: list[str]) -> float | None:
    """``(cand - base) / base * 100``; 0 when both are 0; ``None`` (and a note) when only the base is 0."""
    if base == 0:
        if cand == 0:
            return 0.0
        notes.append(f"The baseline {label} is 0, so its relative change is undefined (reported as null).")
        return None
    return (cand - base) / base * 100.0


def deltas(baseline: Summary, candidate: Summary, notes: list[str]) -> Deltas:
    """Candidate minus baseline, raw and relative."""
    return Deltas(
        cost_delta_usd=candidate.cost_usd - baseline.cost_usd,
        cost_delta_pct=pct_change(baseline.cost_usd, candidate.cost_usd, "cost", notes),
        latency_p50_delta_pct=pct_change(baseline.latency_p50_ms, candidate.latency_p50_ms, "p50 latency", notes),
        latency_p95_delta_pct=pct_change(baseline.latency_p95_ms, candidate.latency_p95_ms, "p95 latency", notes),
        error_rate_delta_pct=pct_change(baseline.error_rate, candidate.error_rate, "error rate", notes),
    )


def _route_notes(ctx: RoutingContext, moved: list[str]) -> list[str]:
    notes = []
    if moved:
        notes.append(
            "Rows moved to another model are costed at that model's catalog list prices with the "
            "same token counts; rows that stay on the model that served them keep their actual cost and latency."
        )
    for model in sorted(moved):
        stats = ctx.stats.get(model)
        if stats is not None and stats.has_fit:
            notes.append(
                f"Latency of {model} comes from a fit on its {stats.ok_rows:,} successful rows in the window "
                "(latency = a + b * output_tokens, plus resampled residuals)."
            )
        else:
            profile = ctx.catalog.price(model).profile
            guess = "" if profile == "listed" else f" ({profile} profile: the pricing file does not list {model})"
            notes.append(
                f"Latency of {model} comes from the catalog profile{guess} (time to first token + output tokens / "
                f"tokens per second): the window has fewer than {MIN_OBSERVED_ROWS} successful rows of it."
            )
        if stats is None or not stats.has_error_rate:
            notes.append(
                f"Error rate of {model} is taken as 0: the window has fewer than {MIN_OBSERVED_ROWS} rows of it."
            )
    return notes


def _price_notes(ctx: RoutingContext, moved: list[str]) -> list[str]:
    if not moved or ctx.as_of != "row":
        return []
    notes = ["Moved rows are priced at the list prices in force on each row's own date (pricing.asOf row)."]
    if ctx.frame.height:
        first, last = ctx.frame.select(
            pl.col("timestamp").dt.date().min().alias("first"), pl.col("timestamp").dt.date().max().alias("last")
        ).row(0)
        for model in sorted(moved):
            inside = [d for d in ctx.catalog.changes(model) if first < d <= last]
            if inside:
                days = ", ".join(f"{d:%Y-%m-%d}" for d in inside)
                notes.append(
                    f"The list price of {model} changes inside the window (on {days}); rows pay the price of their day."
                )
    return notes


def _rows(n: int) -> str:
    return f"{n:,} successful baseline row" + ("" if n == 1 else "s")


def price_missing_costs(frame: pl.DataFrame, catalog: Catalog) -> tuple[pl.DataFrame, list[str]]:
    """Price successful rows with no logged cost (null or 0) from the catalog, each at its own date and provider.

    ``baseline_cost_estimated`` flags them. Returns the frame and notes saying how many rows and how
    much money that was (and which models could not be priced).
    """
    wanted = (pl.col("status") == "ok") & (pl.col("cost_usd").is_null() | (pl.col("cost_usd") == 0))
    keys = frame.lazy().filter(wanted).select("model", "provider").unique().sort("model", "provider", nulls_last=True)
    cases, unpriced = [], []
    for model, provider in keys.collect().iter_rows():
        if catalog.rates(model, provider=provider) is None:
            unpriced.append(model)
            continue
        served = (pl.col("model") == model) & pl.col("provider").eq_missing(pl.lit(provider, pl.String))
        cases.append((served, catalog.cost(model, on="row", provider=provider)))
    if not cases and not unpriced:
        return frame.with_columns(baseline_cost_estimated=pl.lit(False)), []
    listed = pl.when(wanted).then(piecewise(cases, pl.lit(None, pl.Float64)))
    frame = frame.with_columns(_listed=listed).with_columns(
        cost_usd=pl.coalesce("_listed", "cost_usd"), baseline_cost_estimated=pl.col("_listed").is_not_null()
    )
    priced = frame.select(pl.col("baseline_cost_estimated").sum(), pl.col("_listed").sum()).row(0)
    notes = []
    if priced[0]:
        notes.append(
            f"{_rows(priced[0])} without a logged cost (missing or 0) priced from the catalog at "
            f"{'its' if priced[0] == 1 else 'their'} own date: ${priced[1]:,.4f} in all."
        )
    if unpriced:
        left = frame.select((wanted & pl.col("model").is_in(unpriced)).sum()).item()
        notes.append(
            f"{_rows(left)} without a logged cost on a model the catalog cannot price "
            f"({', '.join(sorted(set(unpriced)))}) counted at $0: add the model to a pricing override file."
        )
    return frame.drop("_listed"), notes


def _per_model(policy: Policy) -> Callable[[Callable[[str], pl.Expr]], pl.Expr]:
    """Build ``estimate(m)`` for the row's route model ``m`` (one of the policy's models)."""
    models = sorted(policy.models())

    def moved(estimate: Callable[[str], pl.Expr]) -> pl.Expr:
        branches: list[pl.Expr] = [pl.when(pl.col("route_model") == m).then(estimate(m)) for m in models]
        return pl.coalesce(branches or [pl.lit(None)])

    return moved


def route_provider(ctx: RoutingContext, policy: Policy) -> pl.Expr:
    """The provider that serves the route: the row's own where it stays, else the catalog's."""
    moved = _per_model(policy)
    return (
        pl.when(pl.col("route_model") == pl.col("model"))
        .then(pl.col("provider"))
        .otherwise(moved(lambda m: pl.lit(ctx.provider(m), pl.String)))
    )


def candidate_rows(frame: pl.DataFrame, policy: Policy, ctx: RoutingContext) -> pl.LazyFrame:
    """The window with each row's route and candidate cost, latency and error.

    A row that stays on the model that served it keeps its actual values, so
    only rows that move need an estimate (and only for the policy's models).
    """
    route = policy.route(ctx)
    stays = pl.col("route_model") == pl.col("model")
    moved = _per_model(policy)

    return (
        frame.lazy()
        .with_columns(
            route.model.alias("route_model"),
            route.extra_cost.cast(pl.Float64).alias("_extra_cost"),
            route.extra_latency.cast(pl.Float64).alias("_extra_latency"),
            route.failed.alias("_failed"),
        )
        .with_columns(
            route_provider=route_provider(ctx, policy),
            candidate_cost_usd=pl.when(stays).then(pl.col("cost_usd")).otherwise(moved(ctx.estimated_cost))
            + pl.col("_extra_cost"),
            candidate_latency_ms=pl.when(stays).then(pl.col("latency_ms")).otherwise(moved(ctx.estimated_latency))
            + pl.col("_extra_latency"),
            candidate_error=pl.coalesce(
                pl.col("_failed"),
                pl.when(stays).then(pl.col("status") != "ok").otherwise(moved(lambda m: ctx.error_draw(m, "error"))),
            ),
        )
        .drop("_extra_cost", "_extra_latency", "_failed")
    )


def _summary(n: int, totals: dict[str, Any], side: str, latency: pl.Series, routes: pl.DataFrame) -> Summary:
    cost = totals[f"{side}_cost"]
    # Percentiles use linear interpolation, numpy's default; both in one partition pass.
    p50, p95 = np.percentile(latency.to_numpy(), [50, 95])
    shares = routes.with_columns(share=pl.col("len") / n).sort("share", "key", descending=[True, False])
    return Summary(
        request_count=n,
        cost_usd=cost,
        cost_per_request_usd=cost / n,
        latency_p50_ms=float(p50),
        latency_p95_ms=float(p95),
        error_rate=totals[f"{side}_errors"] / n,
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        route_distribution=dict(shares.select("key", "share").iter_rows()),
    )


def _shares(routes: pl.DataFrame, model: str, provider: str) -> pl.DataFrame:
    key = pl.concat_str(pl.col(model), pl.col(provider).fill_null("unknown"), separator=":")
    return routes.group_by(key.alias("key")).agg(pl.col("len").sum())


def replay(frame: pl.DataFrame, policy: Policy, catalog: Catalog, *, as_of: AsOf | None = None) -> ReplayResult:
    """Replay the window ``frame`` (log columns) through ``policy``.

    Moved rows pay the list prices in force on ``as_of`` (today when ``None``; ``"row"``: each row's own date).

    Successful rows without a logged cost are priced first (``price_missing_costs``).
    Deterministic: the same rows, policy, catalog and date give the same result.
    """
    for model in sorted(policy.models()):
        catalog.price(model, param=policy.param)
    frame, cost_notes = price_missing_costs(frame, catalog)
    ctx = RoutingContext(catalog, frame, as_of)
    rows = candidate_rows(frame, policy, ctx).collect()
    n = rows.height
    totals = rows.select(
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        pl.col("cost_usd").sum().alias("base_cost"),
        pl.col("candidate_cost_usd").sum().alias("cand_cost"),
        (pl.col("status") != "ok").sum().alias("base_errors"),
        pl.col("candidate_error").sum().alias("cand_errors"),
    ).row(0, named=True)
    # One small table of (served, candidate) route pairs gives both mixes and the moved models;
    # route_provider is a function of the other three, so it is added after grouping.
    routes = (
        rows.group_by("model", "provider", "route_model").len().with_columns(route_provider=route_provider(ctx, policy))
    )
    baseline = _summary(n, totals, "base", rows.get_column("latency_ms"), _shares(routes, "model", "provider"))
    candidate = _summary(
        n, totals, "cand", rows.get_column("candidate_latency_ms"), _shares(routes, "route_model", "route_provider")
    )
    moved = routes.filter(pl.col("route_model") != pl.col("model")).get_column("route_model").unique().to_list()
    notes = cost_notes + _route_notes(ctx, moved) + _price_notes(ctx, moved)
    return ReplayResult(baseline, candidate, deltas(baseline, candidate, notes), notes, rows)
