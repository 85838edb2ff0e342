"""What a policy may know about the traffic it routes: prices, fits and seeded draws."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.pricing import AsOf, Catalog, today

#: A model needs this many successful rows in the window before its own
#: latency fit (and this many rows before its own error rate) is trusted.
MIN_OBSERVED_ROWS = 200
#: Base seed of every routing draw. Changing it changes every replay.
ROUTING_SEED = 20260101


@dataclass(frozen=True)
class LatencyFit:
    """``latency_ms = intercept + slope * output_tokens`` of one model, learned from calls rehearsal made."""

    intercept: float
    slope: float
    pairs: int
    runs: tuple[str, ...]


@dataclass(frozen=True)
class ModelStats:
    """What the log store shows about one model in the window."""

    rows: int
    ok_rows: int
    error_rates: dict[str, float]
    intercept: float | None = None
    slope: float | None = None

    @property
    def error_rate(self) -> float:
        """Share of rows that ended in any error."""
        return float(sum(self.error_rates.values()))

    @property
    def has_fit(self) -> bool:
        """Whether the latency fit from these rows is usable."""
        return self.intercept is not None and self.ok_rows >= MIN_OBSERVED_ROWS

    @property
    def has_error_rate(self) -> bool:
        """Whether enough rows were seen to trust the observed error rate."""
        return self.rows >= MIN_OBSERVED_ROWS


def observe(frame: pl.DataFrame) -> dict[str, ModelStats]:
    """Per-model row counts, error rates by type, and a least-squares fit ``latency = a + b * output_tokens``.

    Sums run through ``numpy.bincount`` (sequential, so bit-for-bit repeatable;
    a parallel group-by adds partial sums in varying order).
    """
    models = frame.get_column("model").cast(pl.Categorical)
    codes = models.to_physical().to_numpy().astype(np.intp)
    present = models.unique()
    index = dict(zip(present.cast(pl.String).to_list(), present.to_physical().to_list(), strict=True))
    k = int(codes.max()) + 1 if len(codes) else 0
    ok = frame.select((pl.col("status") == "ok") & pl.col("latency_ms").is_not_null()).to_series().to_numpy()
    x = np.where(ok, frame.get_column("output_tokens").to_numpy(), 0).astype(np.float64)
    y = np.where(ok, frame.get_column("latency_ms").fill_null(0.0).to_numpy(), 0.0)
    rows = np.bincount(codes, minlength=k)
    ok_rows = np.bincount(codes, weights=ok, minlength=k)
    sx, sy, sxx, sxy = (np.bincount(codes, weights=w, minlength=k) for w in (x, y, x * x, x * y))
    errors = (
        frame.lazy()
        .filter(pl.col("status") != "ok")
        .group_by("model", pl.col("error_type").fill_null("unknown"))
        .len()
        .collect()
    )
    rates: dict[str, dict[str, float]] = {}
    for model, error_type, n in errors.iter_rows():
        rates.setdefault(model, {})[error_type] = n / rows[index[model]]
    out = {}
    for model, i in index.items():
        n = int(ok_rows[i])
        intercept = slope = None
        if n >= MIN_OBSERVED_ROWS:
            mx, my = sx[i] / n, sy[i] / n
            var = sxx[i] / n - mx * mx
            slope = float((sxy[i] / n - mx * my) / var) if var > 0 else 0.0
            intercept = float(my - slope * mx)
        out[model] = ModelStats(int(rows[i]), n, rates.get(model, {}), intercept, slope)
    return out


class RoutingContext:
    """Vectorised facts about each row under any model, for policies and the replay.

    Everything is a Polars expression over the window's columns; randomness is
    a hash of ``request_id`` with a fixed seed and a per-purpose salt, so the
    same window always routes the same way.
    """

    def __init__(
        self,
        catalog: Catalog,
        frame: pl.DataFrame,
        as_of: AsOf | None = None,
        learned_latency: Mapping[str, LatencyFit] | None = None,
    ) -> None:
        self.catalog = catalog
        self.frame = frame
        #: Latency fits the project's runs taught, for models the window has too few rows of to fit.
        self.learned_latency = dict(learned_latency or {})
        #: The date of the list prices that price moved rows, or ``"row"``: each row's own date.
        self.as_of: AsOf = today() if as_of is None else as_of
        self.stats = observe(frame)
        self._residuals: dict[str, pl.Series] = {}

    def residuals(self, model: str) -> pl.Series:
        """Latency residuals of ``model``'s successful rows around its fit, in window order."""
        if model not in self._residuals:
            stats = self.stats[model]
            self._residuals[model] = (
                self.frame.lazy()
                .filter((pl.col("model") == model) & (pl.col("status") == "ok") & pl.col("latency_ms").is_not_null())
                .select(pl.col("latency_ms") - stats.intercept - stats.slope * pl.col("output_tokens"))
                .collect()
                .to_series()
            )
        return self._residuals[model]

    def uniform(self, salt: str) -> pl.Expr:
        """A deterministic uniform draw in ``[0, 1)`` per row for this ``salt``."""
        seed = (ROUTING_SEED + zlib.crc32(salt.encode())) & 0xFFFFFFFF
        return (pl.col("request_id").hash(seed) // 2048).cast(pl.Float64) / float(2**53)

    def _is_actual(self, model: str) -> pl.Expr:
        return pl.col("model") == model

    def estimated_cost(self, model: str, *, input_only: bool = False) -> pl.Expr:
        """Cost of each row at ``model``'s list prices on ``as_of`` (same token counts)."""
        return self.catalog.cost(model, on=self.as_of, output_tokens=pl.lit(0) if input_only else None)

    def served_cost(self, model: str) -> pl.Expr:
        """What each row costs served by ``model``: the actual cost where it ran there, else estimated."""
        return pl.when(self._is_actual(model)).then(pl.col("cost_usd")).otherwise(self.estimated_cost(model))

    def latency_slope(self, model: str) -> float:
        """Milliseconds per output token of ``model``'s latency model (the fit's slope, else the profile's rate)."""
        stats = self.stats.get(model)
        if stats is not None and stats.has_fit:
            assert stats.slope is not None
            return stats.slope
        if model in self.learned_latency:
            return self.learned_latency[model].slope
        return 1000.0 / self.catalog.price(model).output_tokens_per_s

    def expected_latency(self, model: str, output_tokens: pl.Expr | None = None) -> pl.Expr:
        """Expected latency of each row on ``model``: the window's fit, else a learned one, else the catalog profile.

        ``output_tokens``: the answer's length on ``model`` (default: the logged ``output_tokens``).
        """
        tokens = pl.col("output_tokens") if output_tokens is None else output_tokens
        stats = self.stats.get(model)
        if stats is not None and stats.has_fit:
            return pl.lit(stats.intercept) + pl.lit(stats.slope) * tokens
        if model in self.learned_latency:
            fit = self.learned_latency[model]
            return pl.lit(fit.intercept) + pl.lit(fit.slope) * tokens
        price = self.catalog.price(model)
        return pl.lit(price.ttft_ms) + tokens / price.output_tokens_per_s * 1000.0

    def estimated_latency(self, model: str, output_tokens: pl.Expr | None = None) -> pl.Expr:
        """Latency of each row if ``model`` had served it: fit + a resampled residual, else the catalog profile.

        The residual is one of the model's own residuals in the window, picked
        by a seeded hash of ``request_id``.
        """
        estimate = self.expected_latency(model, output_tokens)
        stats = self.stats.get(model)
        if stats is not None and stats.has_fit:
            residuals = self.residuals(model)
            index = pl.col("request_id").hash((ROUTING_SEED + zlib.crc32(model.encode())) & 0xFFFFFFFF) % len(residuals)
            estimate = estimate + pl.lit(residuals).gather(index)
        return estimate.clip(lower_bound=1.0)

    def realized_latency(self, model: str) -> pl.Expr:
        """Latency of each row served by ``model``: actual where it ran there, else estimated."""
        return pl.when(self._is_actual(model)).then(pl.col("latency_ms")).otherwise(self.estimated_latency(model))

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
        return pl.when(self._is_actual(model)).then(actual).otherwise(self.error_draw(model, salt, types))

    def error_draw(self, model: str, salt: str, error_types: list[str] | None = None) -> pl.Expr:
        """A seeded draw of whether each row would error on ``model`` (observed rate of those types)."""
        rate = self.error_rate(model, error_types)
        if rate == 0.0:
            return pl.lit(False)
        return self.uniform(f"{salt}:{model}") < rate

    def provider(self, model: str) -> str:
        """The catalog provider of ``model``."""
        return self.catalog.price(model).provider
