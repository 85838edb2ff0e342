"""Routing-only replay: what the window would have cost and how fast it would have been."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.pricing import Catalog
from engine.routing import MIN_OBSERVED_ROWS, Policy, RoutingContext, observe
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


def summarize(
    cost: pl.Series, latency: pl.Series, errored: pl.Series, routes: pl.Series, input_tokens: int, output_tokens: int
) -> Summary:
    """One side's summary. Percentiles use linear interpolation (numpy's default)."""
    n = cost.len()
    total = float(cost.sum())
    p50, p95 = np.percentile(latency.to_numpy(), [50, 95])
    shares = routes.value_counts(normalize=True, name="share").sort("share", descending=True)
    return Summary(
        request_count=n,
        cost_usd=total,
        cost_per_request_usd=total / n,
        latency_p50_ms=float(p50),
        latency_p95_ms=float(p95),
        error_rate=int(errored.sum()) / n,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        route_distribution={str(k): float(v) for k, v in shares.iter_rows()},
    )


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


def _route_notes(ctx: RoutingContext, moved: dict[str, int]) -> list[str]:
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
            notes.append(
                f"Latency of {model} comes from the catalog profile (time to first token + output tokens / "
                f"tokens per second): the window has fewer than {MIN_OBSERVED_ROWS} successful rows of it."
            )
        if stats is None or not stats.has_error_rate:
            notes.append(
                f"Error rate of {model} is taken as 0: the window has fewer than {MIN_OBSERVED_ROWS} rows of it."
            )
    return notes


def replay(frame: pl.DataFrame, policy: Policy, catalog: Catalog) -> ReplayResult:
    """Replay the window ``frame`` (log columns) through ``policy``.

    Deterministic: the same rows, policy and catalog give the same result.
    """
    for model in sorted(policy.models()):
        catalog.price(model, param=policy.param)
    ctx = RoutingContext(catalog, observe(frame))
    route = policy.route(ctx)
    routed = frame.with_columns(
        route.model.alias("route_model"),
        route.extra_cost.cast(pl.Float64).alias("_extra_cost"),
        route.extra_latency.cast(pl.Float64).alias("_extra_latency"),
        route.failed.alias("_failed"),
    )
    models = routed.get_column("route_model").unique().sort().to_list()

    def per_model(build: str) -> pl.Expr:
        exprs = [pl.when(pl.col("route_model") == m).then(getattr(ctx, build)(m)) for m in models]
        return pl.coalesce(exprs)

    def provider_of(m: str) -> str | None:
        return catalog.models[m].provider if m in catalog.models else None

    providers = pl.coalesce(
        [pl.when(pl.col("route_model") == m).then(pl.lit(provider_of(m), pl.String)) for m in models]
    )
    rows = routed.with_columns(
        route_provider=pl.when(pl.col("route_model") == pl.col("model")).then(pl.col("provider")).otherwise(providers),
        candidate_cost_usd=per_model("served_cost") + pl.col("_extra_cost"),
        candidate_latency_ms=per_model("realized_latency") + pl.col("_extra_latency"),
        candidate_error=pl.coalesce(
            pl.col("_failed"),
            pl.coalesce([pl.when(pl.col("route_model") == m).then(ctx.fails(m, "error")) for m in models]),
        ),
    ).drop("_extra_cost", "_extra_latency", "_failed")

    in_tok = int(rows.get_column("input_tokens").sum())
    out_tok = int(rows.get_column("output_tokens").sum())
    baseline = summarize(
        rows.get_column("cost_usd"),
        rows.get_column("latency_ms"),
        rows.get_column("status") != "ok",
        rows.select(pl.concat_str("model", "provider", separator=":")).to_series(),
        in_tok,
        out_tok,
    )
    candidate = summarize(
        rows.get_column("candidate_cost_usd"),
        rows.get_column("candidate_latency_ms"),
        rows.get_column("candidate_error"),
        rows.select(pl.concat_str("route_model", "route_provider", separator=":")).to_series(),
        in_tok,
        out_tok,
    )
    moved_counts = rows.filter(pl.col("route_model") != pl.col("model")).group_by("route_model").len()
    notes = _route_notes(ctx, dict(moved_counts.iter_rows()))
    return ReplayResult(baseline, candidate, deltas(baseline, candidate, notes), notes, rows)
