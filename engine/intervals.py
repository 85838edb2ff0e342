"""90% intervals of a routing-only replay: a bootstrap over the window's rows and over the token multipliers.

Two sources of doubt are drawn separately, ``DRAWS`` replicates each, and their deviations from the
point are added replicate by replicate:

* **Rows**: the window is one sample of traffic. A seeded, evenly spaced subsample of at most
  ``SUBSAMPLE`` rows is resampled with replacement (an m-out-of-n bootstrap); each replicate's
  deviation from the subsample's own figures is scaled by ``sqrt(m / n)``, the spread a resample
  of all ``n`` rows would show. Baseline and candidate are resampled together, so the deltas are paired.
* **Multipliers**: each moved row's input and output tokens are scaled by its move's multiplier draws
  (``engine.calibration``): cost through the two token prices, latency through the output tokens
  (the latency model's slope, per token).

Each figure's interval is its exact point (the replay's) plus the 5th and 95th percentiles of the
summed deviations. Pure numpy; the draws are seeded, so the same replay gives the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.calibration import CALIBRATION_SEED, DRAWS
from engine.schema import Deltas, Interval, Summary

#: Most window rows the bootstrap resamples.
SUBSAMPLE = 2_000


@dataclass(frozen=True)
class Rows:
    """The subsample's columns, aligned (``m`` rows).

    ``move`` indexes the rows of ``input_draws`` / ``output_draws`` (``DRAWS`` columns each) and
    ``input_point`` / ``output_point``; a row that stays has a move whose draws are all 1.
    ``fixed_cost``: the candidate cost that no multiplier touches (a staying row's cost, a policy's
    extra cost); ``input_cost`` / ``output_cost``: a moved row's input and output cost at the logged
    tokens; ``latency_slope``: milliseconds per output token of a moved row's latency model.
    """

    base_cost: np.ndarray
    base_latency: np.ndarray
    base_error: np.ndarray
    fixed_cost: np.ndarray
    input_cost: np.ndarray
    output_cost: np.ndarray
    cand_latency: np.ndarray
    latency_slope: np.ndarray
    output_tokens: np.ndarray
    cand_error: np.ndarray
    move: np.ndarray
    input_point: np.ndarray
    output_point: np.ndarray
    input_draws: np.ndarray
    output_draws: np.ndarray


def _p50_p95(values: np.ndarray, *, scratch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 50th and 95th percentiles along the last axis (numpy's default, linear interpolation).

    ``scratch``: ``values`` is the caller's own temporary, partitioned in place instead of copied.
    """
    m = values.shape[-1]
    a = values if scratch else values.copy()
    at = [(m - 1) * q for q in (0.50, 0.95)]
    kth = sorted({min(k, m - 1) for h in at for k in (math.floor(h), math.floor(h) + 1)})
    a.partition(kth, axis=-1)
    out = []
    for h in at:
        k = math.floor(h)
        low, high = a[..., k], a[..., min(k + 1, m - 1)]
        out.append(low + (h - k) * (high - low))
    return out[0], out[1]


def _stats(
    cost_b: np.ndarray, cost_c: np.ndarray, lat_b: np.ndarray, lat_c: np.ndarray, err_b: np.ndarray, err_c: np.ndarray
) -> np.ndarray:
    """Per replicate: mean costs, p50/p95 latencies and error rates of both sides.

    Rows of 2-D inputs are replicates; a 1-D input is the same in every replicate. 2-D latencies are
    scratch, partitioned in place.
    """
    shape = max((x.shape[:-1] for x in (cost_b, cost_c, lat_b, lat_c, err_b, err_c)), key=len)
    columns = [
        cost_b.mean(-1),
        cost_c.mean(-1),
        *_p50_p95(lat_b, scratch=lat_b.ndim > 1),
        *_p50_p95(lat_c, scratch=lat_c.ndim > 1),
        err_b.mean(-1),
        err_c.mean(-1),
    ]
    return np.stack([np.broadcast_to(c, shape) for c in columns], axis=-1)


def _figures(s: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The reported figures from ``_stats`` columns (the relative ones NaN where the baseline's is 0)."""
    bc, cc, bp50, bp95, cp50, cp95, be, ce = (s[..., i] for i in range(8))

    def pct(base: np.ndarray, cand: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # non-finite values are dropped below
            return np.where(base != 0, (cand - base) / base * 100.0, np.nan)

    return {
        "cost_usd": cc * n,
        "latency_p50_ms": cp50,
        "latency_p95_ms": cp95,
        "error_rate": ce,
        "cost_delta_usd": (cc - bc) * n,
        "cost_delta_pct": pct(bc, cc),
        "latency_p50_delta_pct": pct(bp50, cp50),
        "latency_p95_delta_pct": pct(bp95, cp95),
        "error_rate_delta_pct": pct(be, ce),
    }


def bootstrap(rows: Rows, n: int, seed: int = CALIBRATION_SEED) -> dict[str, tuple[float, float]]:
    """The deviations' 5th and 95th percentiles per figure (add them to the exact points); NaN-free only."""
    m = rows.base_cost.shape[0]
    point_cost = (
        rows.fixed_cost
        + rows.input_cost * rows.input_point[rows.move]
        + rows.output_cost * rows.output_point[rows.move]
    )
    errs_b, errs_c = rows.base_error.astype(np.float64), rows.cand_error.astype(np.float64)
    origin = _figures(_stats(rows.base_cost, point_cost, rows.base_latency, rows.cand_latency, errs_b, errs_c), n)

    # Rows: resample the subsample, candidate at the point multipliers.
    index = np.random.default_rng([seed, 1]).integers(0, m, size=(DRAWS, m))
    resampled = _figures(
        _stats(
            rows.base_cost[index],
            point_cost[index],
            rows.base_latency[index],
            rows.cand_latency[index],
            errs_b[index],
            errs_c[index],
        ),
        n,
    )
    # Multipliers: every row once, each replicate with its own draw of every move.
    mi = rows.input_draws[rows.move].T  # DRAWS x m
    mo = rows.output_draws[rows.move].T
    cost = rows.fixed_cost + rows.input_cost * mi + rows.output_cost * mo
    shift = rows.latency_slope * rows.output_tokens * (mo - rows.output_point[rows.move])
    latency = np.where(shift != 0, np.maximum(rows.cand_latency + shift, 1.0), rows.cand_latency)
    redrawn = _figures(
        _stats(rows.base_cost, cost, rows.base_latency, latency, errs_b, errs_c),
        n,
    )
    scale = math.sqrt(m / n) if n else 1.0
    out = {}
    for name, at in origin.items():
        if not np.isfinite(at):
            continue
        deviation = (resampled[name] - at) * scale + (redrawn[name] - at)
        deviation = deviation[np.isfinite(deviation)]
        if deviation.size:
            low, high = np.quantile(deviation, [0.05, 0.95])
            out[name] = (float(low), float(high))
    return out


def _around(point: float | None, spread: tuple[float, float] | None) -> Interval | None:
    if point is None or spread is None:
        return None
    return Interval(low=point + spread[0], high=point + spread[1])


def with_intervals(
    candidate: Summary, deltas: Deltas, spreads: dict[str, tuple[float, float]]
) -> tuple[Summary, Deltas]:
    """The candidate summary and the deltas with their ``*_interval`` fields filled from ``bootstrap``."""
    cost = _around(candidate.cost_usd, spreads.get("cost_usd"))
    error = _around(candidate.error_rate, spreads.get("error_rate"))
    summary = candidate.model_copy(
        update={
            "cost_usd_interval": cost and Interval(low=max(cost.low, 0.0), high=cost.high),
            "latency_p50_ms_interval": _around(candidate.latency_p50_ms, spreads.get("latency_p50_ms")),
            "latency_p95_ms_interval": _around(candidate.latency_p95_ms, spreads.get("latency_p95_ms")),
            "error_rate_interval": error and Interval(low=max(error.low, 0.0), high=min(error.high, 1.0)),
        }
    )
    updated = {
        f"{name}_interval": _around(getattr(deltas, name), spreads.get(name))
        for name in (
            "cost_delta_usd",
            "cost_delta_pct",
            "latency_p50_delta_pct",
            "latency_p95_delta_pct",
            "error_rate_delta_pct",
        )
    }
    return summary, deltas.model_copy(update=updated)


__all__ = ["SUBSAMPLE", "Rows", "bootstrap", "with_intervals"]
