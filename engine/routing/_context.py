"""What a policy may know about the traffic it routes: prices, fits and seeded draws."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.pricing import Catalog, cost_at

#: A model needs this many successful rows in the window before its own
#: latency fit (and this many rows before its own error rate) is trusted.
MIN_OBSERVED_ROWS = 200
#: Base seed of every routing draw. Changing it changes every replay.
ROUTING_SEED = 20260101


@dataclass(frozen=True)
class ModelStats:
    """What the log store shows about one model in the window."""

    rows: int
    ok_rows: int
    error_rates: dict[str, float]
    intercept: float | None = None
    slope: float | None = None
    residuals: np.ndarray | None = None

    @property
    def error_rate(self) -> float:
        """Share of rows that ended in any error."""
        return float(sum(self.error_rates.values()))

    @property
    def has_fit(self) -> bool:
        """Whether the latency fit from these rows is usable."""
        return self.residuals is not None and self.ok_rows >= MIN_OBSERVED_ROWS

    @property
    def has_error_rate(self) -> bool:
        """Whether enough rows were seen to trust the observed error rate."""
        return self.rows >= MIN_OBSERVED_ROWS


def observe(frame: pl.DataFrame) -> dict[str, ModelStats]:
    """Per-model row counts, error rates by type, and a latency fit ``a + b * output_tokens``."""
    counts = frame.group_by("model").agg(
        pl.len().alias("rows"),
        (pl.col("status") == "ok").sum().alias("ok_rows"),
    )
    errors = (
        frame.filter(pl.col("status") != "ok")
        .group_by("model", pl.col("error_type").fill_null("unknown"))
        .agg(pl.len().alias("n"))
    )
    ok = frame.filter(pl.col("status") == "ok").select("model", "output_tokens", "latency_ms")
    fits = (
        ok.group_by("model")
        .agg(
            pl.len().alias("n"),
            pl.cov("output_tokens", "latency_ms", ddof=0).alias("cov"),
            pl.col("output_tokens").var(ddof=0).alias("var"),
            pl.col("output_tokens").mean().alias("mx"),
            pl.col("latency_ms").mean().alias("my"),
        )
        .filter(pl.col("n") >= MIN_OBSERVED_ROWS)
    )
    fits = fits.with_columns(
        slope=pl.when(pl.col("var") > 0).then(pl.col("cov") / pl.col("var")).otherwise(0.0),
    ).with_columns(intercept=pl.col("my") - pl.col("slope") * pl.col("mx"))
    residuals = (
        ok.join(fits.select("model", "slope", "intercept"), on="model")
        .select(
            "model",
            (pl.col("latency_ms") - pl.col("intercept") - pl.col("slope") * pl.col("output_tokens")).alias("r"),
        )
        .group_by("model")
        .agg(pl.col("r").sort())
    )
    fit_by_model = {r["model"]: r for r in fits.iter_rows(named=True)}
    resid_by_model = {r["model"]: np.asarray(r["r"], dtype=np.float64) for r in residuals.iter_rows(named=True)}
    rates: dict[str, dict[str, float]] = {}
    rows_by_model = {r["model"]: r for r in counts.iter_rows(named=True)}
    for model, error_type, n in errors.iter_rows():
        rates.setdefault(model, {})[error_type] = n / rows_by_model[model]["rows"]
    out = {}
    for model, row in rows_by_model.items():
        fit = fit_by_model.get(model)
        out[model] = ModelStats(
            rows=row["rows"],
            ok_rows=row["ok_rows"],
            error_rates=rates.get(model, {}),
            intercept=None if fit is None else fit["intercept"],
            slope=None if fit is None else fit["slope"],
            residuals=resid_by_model.get(model),
        )
    return out


class RoutingContext:
    """Vectorised facts about each row under any model, for policies and the replay.

    Everything is a Polars expression over the window's columns; randomness is
    a hash of ``request_id`` with a fixed seed and a per-purpose salt, so the
    same window always routes the same way.
    """

    def __init__(self, catalog: Catalog, stats: dict[str, ModelStats]) -> None:
        self.catalog = catalog
        self.stats = stats

    def uniform(self, salt: str) -> pl.Expr:
        """A deterministic uniform draw in ``[0, 1)`` per row for this ``salt``."""
        seed = (ROUTING_SEED + zlib.crc32(salt.encode())) & 0xFFFFFFFF
        return (pl.col("request_id").hash(seed) // 2048).cast(pl.Float64) / float(2**53)

    def _is_actual(self, model: str) -> pl.Expr:
        return pl.col("model") == model

    def estimated_cost(self, model: str, *, input_only: bool = False) -> pl.Expr:
        """Cost of each row at ``model``'s list prices (same token counts)."""
        price = self.catalog.price(model)
        return cost_at(price, output_tokens=pl.lit(0) if input_only else None)

    def served_cost(self, model: str) -> pl.Expr:
        """What each row costs served by ``model``: the actual cost where it already was."""
        if model not in self.catalog.models:
            return pl.col("cost_usd")  # only routed here where it actually ran (validated upstream)
        return pl.when(self._is_actual(model)).then(pl.col("cost_usd")).otherwise(self.estimated_cost(model))

    def expected_latency(self, model: str) -> pl.Expr:
        """Expected latency of each row on ``model``: the window's fit, else the catalog profile."""
        stats = self.stats.get(model)
        if stats is not None and stats.has_fit:
            return pl.lit(stats.intercept) + pl.lit(stats.slope) * pl.col("output_tokens")
        price = self.catalog.price(model)
        return pl.lit(price.ttft_ms) + pl.col("output_tokens") / price.output_tokens_per_s * 1000.0

    def realized_latency(self, model: str) -> pl.Expr:
        """Latency of each row served by ``model``: actual where it ran, else fit + a resampled residual."""
        stats = self.stats.get(model)
        if model not in self.catalog.models and (stats is None or not stats.has_fit):
            return pl.col("latency_ms")
        estimate = self.expected_latency(model)
        if stats is not None and stats.has_fit and stats.residuals is not None:
            residuals = pl.Series(stats.residuals)
            index = pl.col("request_id").hash((ROUTING_SEED + zlib.crc32(model.encode())) & 0xFFFFFFFF) % len(residuals)
            estimate = estimate + pl.lit(residuals).gather(index)
        return pl.when(self._is_actual(model)).then(pl.col("latency_ms")).otherwise(estimate.clip(lower_bound=1.0))

    def error_rate(self, model: str, error_types: Iterable[str] | None = None) -> float:
        """Observed error rate of ``model`` in the window (0 when too few rows were seen)."""
        stats = self.stats.get(model)
        if stats is None or not stats.has_error_rate:
            return 0.0
        if error_types is None:
            return stats.error_rate
        return float(sum(stats.error_rates.get(t, 0.0) for t in error_types))

    def fails(self, model: str, salt: str, error_types: Iterable[str] | None = None) -> pl.Expr:
        """Whether each row errors on ``model`` (restricted to ``error_types`` when given).

        Where the row actually ran on ``model`` its real outcome is used;
        elsewhere a seeded draw against the observed error rate. For one
        ``(model, salt)`` the draw is shared, so a narrower set of error types
        always fails a subset of the rows a wider one fails.
        """
        types = None if error_types is None else list(error_types)
        actual = pl.col("status") != "ok"
        if types is not None:
            actual &= pl.col("error_type").is_in(types).fill_null(False)
        draw = self.uniform(f"{salt}:{model}") < self.error_rate(model, types)
        return pl.when(self._is_actual(model)).then(actual).otherwise(draw)

    def provider(self, model: str) -> str:
        """The catalog provider of ``model``."""
        return self.catalog.price(model).provider
