"""Routing-only replay: what the window would have cost and how fast it would have been."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine.calibration import DRAWS, Calibration, Move
from engine.intervals import SUBSAMPLE, Rows, bootstrap, with_intervals
from engine.pricing import AsOf, Catalog, piecewise
from engine.routing import MIN_OBSERVED_ROWS, Policy, RoutingContext
from engine.schema import Deltas, Summary, TokenMultipliers

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
    multipliers: list[TokenMultipliers]


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


def _multiplier_text(name: str, m: TokenMultipliers) -> str:
    x = getattr(m, name)
    spread = "" if x.low == x.high else f" (90%: {x.low:.2f}-{x.high:.2f})"
    return f"{name} tokens x{x.point:.2f}{spread}, {x.basis}"


def _multiplier_notes(multipliers: list[TokenMultipliers]) -> list[str]:
    notes = []
    if multipliers:
        notes.append(
            "Rows moved to another model are costed at that model's catalog list prices, with the logged token "
            "counts scaled by the move's token multipliers (learned from the project's with-responses runs where "
            "it has enough answered pairs, else priors); rows that stay on the model that served them keep their "
            "actual cost and latency."
        )
    for m in multipliers:
        notes.append(
            f"{m.baseline_model} -> {m.candidate_model}: {_multiplier_text('input', m)}; "
            f"{_multiplier_text('output', m)}."
        )
    return notes


def _route_notes(ctx: RoutingContext, moved: list[str]) -> list[str]:
    notes = []
    for model in sorted(moved):
        stats = ctx.stats.get(model)
        if stats is not None and stats.has_fit:
            notes.append(
                f"Latency of {model} comes from a fit on its {stats.ok_rows:,} successful rows in the window "
                "(latency = a + b * output_tokens, plus resampled residuals)."
            )
        elif model in ctx.learned_latency:
            fit = ctx.learned_latency[model]
            notes.append(
                f"Latency of {model} comes from a fit on {fit.pairs:,} of its answers in the project's runs "
                f"({', '.join(fit.runs)}): latency = {fit.intercept:.0f} ms + {fit.slope:.2f} ms * output_tokens; "
                f"the window has fewer than {MIN_OBSERVED_ROWS} successful rows of it."
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


def _scaled(
    ctx: RoutingContext, policy: Policy, calibration: Calibration | None, cost: pl.Expr, latency: pl.Expr
) -> tuple[pl.Expr, pl.Expr]:
    """Moved rows' cost and latency with the token multipliers of their move, where a point is not 1.

    Latency follows the scaled output tokens.
    """
    if calibration is None:
        return cost, latency
    costs, latencies = [], []
    for baseline in sorted(ctx.stats):
        for candidate in sorted(policy.models() - {baseline}):
            move = calibration.move(baseline, candidate)
            if move.input.point == 1.0 and move.output.point == 1.0:
                continue
            costs.append((move_of(move), scaled_cost(ctx, move)))
            if move.output.point != 1.0:
                latencies.append(
                    (move_of(move), ctx.estimated_latency(candidate, pl.col("output_tokens") * move.output.point))
                )
    return piecewise(costs, cost), piecewise(latencies, latency)


def move_of(move: Move) -> pl.Expr:
    """Whether a row is one of ``move``: served by its baseline model, routed to its candidate."""
    return (pl.col("model") == move.baseline) & (pl.col("route_model") == move.candidate)


def scaled_cost(ctx: RoutingContext, move: Move) -> pl.Expr:
    """Each row's cost on the move's candidate with its input and output tokens scaled by the move's points.

    A prompt-size price tier stays the one of the logged prompt.
    """
    prompt = ctx.estimated_cost(move.candidate, input_only=True)
    return prompt * move.input.point + (ctx.estimated_cost(move.candidate) - prompt) * move.output.point


def candidate_rows(
    frame: pl.DataFrame, policy: Policy, ctx: RoutingContext, calibration: Calibration | None = None
) -> pl.LazyFrame:
    """The window with each row's route and candidate cost, latency and error.

    A row that stays on the model that served it keeps its actual values, so
    only rows that move need an estimate (and only for the policy's models).
    With ``calibration``, a moved row's tokens are scaled by its move's multipliers.
    """
    route = policy.route(ctx)
    stays = pl.col("route_model") == pl.col("model")
    moved = _per_model(policy)
    cost, latency = _scaled(ctx, policy, calibration, moved(ctx.estimated_cost), moved(ctx.estimated_latency))

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
            candidate_cost_usd=pl.when(stays).then(pl.col("cost_usd")).otherwise(cost) + pl.col("_extra_cost"),
            candidate_latency_ms=pl.when(stays).then(pl.col("latency_ms")).otherwise(latency)
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


def _interval_rows(rows: pl.DataFrame, policy: Policy, ctx: RoutingContext, moves: list[Move]) -> Rows:
    """The bootstrap's columns over an evenly spaced subsample of at most ``SUBSAMPLE`` rows."""
    sub = rows.gather_every(max(1, -(-rows.height // SUBSAMPLE)))
    stays = pl.col("route_model") == pl.col("model")
    moved = _per_model(policy)
    index = pl.DataFrame(
        {
            "model": [m.baseline for m in moves],
            "route_model": [m.candidate for m in moves],
            "_move": list(range(1, len(moves) + 1)),
        },
        schema={"model": pl.String, "route_model": pl.String, "_move": pl.Int64},
    )
    prompt = pl.when(stays).then(0.0).otherwise(moved(lambda m: ctx.estimated_cost(m, input_only=True)))
    answer = pl.when(stays).then(0.0).otherwise(moved(ctx.estimated_cost)) - pl.col("_in")
    sub = (
        sub.join(index, on=["model", "route_model"], how="left", maintain_order="left")
        .with_columns(pl.col("_move").fill_null(0), _in=prompt)
        .with_columns(
            _out=answer, _slope=pl.when(stays).then(0.0).otherwise(moved(lambda m: pl.lit(ctx.latency_slope(m))))
        )
    )
    ones = np.ones(DRAWS)
    input_point = np.array([1.0, *(m.input.point for m in moves)])
    output_point = np.array([1.0, *(m.output.point for m in moves)])
    move = sub.get_column("_move").to_numpy()
    input_cost, output_cost = sub.get_column("_in").to_numpy(), sub.get_column("_out").to_numpy()
    cand_cost = sub.get_column("candidate_cost_usd").fill_null(0.0).to_numpy()
    return Rows(
        base_cost=sub.get_column("cost_usd").fill_null(0.0).to_numpy(),
        base_latency=sub.get_column("latency_ms").to_numpy().astype(np.float64),
        base_error=(sub.get_column("status") != "ok").to_numpy(),
        fixed_cost=cand_cost - input_cost * input_point[move] - output_cost * output_point[move],
        input_cost=input_cost,
        output_cost=output_cost,
        cand_latency=sub.get_column("candidate_latency_ms").to_numpy().astype(np.float64),
        latency_slope=sub.get_column("_slope").to_numpy(),
        output_tokens=sub.get_column("output_tokens").to_numpy().astype(np.float64),
        cand_error=sub.get_column("candidate_error").to_numpy(),
        move=move,
        input_point=input_point,
        output_point=output_point,
        input_draws=np.vstack([ones, *(m.input.draws for m in moves)]),
        output_draws=np.vstack([ones, *(m.output.draws for m in moves)]),
    )


def replay(
    frame: pl.DataFrame,
    policy: Policy,
    catalog: Catalog,
    *,
    as_of: AsOf | None = None,
    calibration: Calibration | None = None,
    intervals: bool = True,
) -> ReplayResult:
    """Replay the window ``frame`` (log columns) through ``policy``.

    Moved rows pay the list prices in force on ``as_of`` (today when ``None``; ``"row"``: each row's own date),
    with their tokens scaled by ``calibration``'s multipliers (default: the priors alone). The candidate's
    figures and the deltas carry 90% intervals (``engine.intervals``) unless ``intervals`` is false.

    Successful rows without a logged cost are priced first (``price_missing_costs``).
    Deterministic: the same rows, policy, catalog, date and calibration give the same result.
    """
    for model in sorted(policy.models()):
        catalog.price(model, param=policy.param)
    calibration = calibration or Calibration([], catalog)
    frame, cost_notes = price_missing_costs(frame, catalog)
    learned_latency = {m: fit for m in sorted(policy.models()) if (fit := calibration.latency_fit(m)) is not None}
    ctx = RoutingContext(catalog, frame, as_of, learned_latency)
    rows = candidate_rows(frame, policy, ctx, calibration).collect()
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
    pairs = routes.filter(pl.col("route_model") != pl.col("model")).select("model", "route_model").unique()
    moves = [calibration.move(b, c) for b, c in sorted(pairs.iter_rows())]
    moved = sorted({m.candidate for m in moves})
    multipliers = [m.describe() for m in moves]
    notes = cost_notes + _multiplier_notes(multipliers) + _route_notes(ctx, moved) + _price_notes(ctx, moved)
    change = deltas(baseline, candidate, notes)
    if n and intervals:
        spreads = bootstrap(_interval_rows(rows, policy, ctx, moves), n)
        candidate, change = with_intervals(candidate, change, spreads)
        notes.append(
            f"Intervals are 90%: a bootstrap over {min(n, SUBSAMPLE):,} of the window's rows (rescaled to all "
            f"{n:,}) and over the token multipliers' uncertainty; they do not cover traffic unlike the window's."
        )
    return ReplayResult(baseline, candidate, change, notes, rows, multipliers)
