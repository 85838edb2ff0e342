"""Benchmark the routing-only replay against the cost of reading its data and against DuckDB and pandas.

What is measured, over the last 7 days of a synthetic log store (``--rows`` rows over ``--days`` days):

* ``floor``: a bare Polars lazy scan of the window's partition files (the files
  ``engine.logs.partition_files`` selects), the timestamp filter and exactly
  ``REPLAY_COLUMNS``, collected. No replay can be faster than reading its input.
* ``replay single`` / ``replay cost_optimized``: what a user waits for,
  ``load_window`` + ``replay`` end to end (as ``engine.experiment.replay_spec``
  runs them), for ``single`` to gpt-4o-mini and ``cost_optimized`` over four
  models.
* ``duckdb single``: the same ``single`` replay as one DuckDB SQL query over the
  same files: window filter, latency fit and sorted residuals of the candidate,
  candidate cost / latency (fit + a residual picked by a hash of
  ``request_id``) / error draw per row, both sides' sums, p50/p95 and error rates.
* ``pandas single``: the same computation in pandas and numpy.
* A breakdown of our replay: ``load_window`` alone and ``replay()`` alone on an
  in-memory frame.

Each phase runs once to warm up (page cache, lazy imports) and then
``--repeat`` times; the table shows the median and the minimum. Memory is the
process's peak RSS during the phase (``VmHWM``, reset per phase through
``/proc/self/clear_refs``) and its growth over the RSS the phase started at.
Hash functions differ between engines, so DuckDB's and pandas's candidate
latencies and error rates differ slightly from ours; cost totals are
deterministic and are checked to agree to 1e-6 relative.

The data is generated on first use (metadata only, one day at a time) under
``--data`` with a marker file; it is regenerated when the size changes.

Run from the repository root::

    .venv/bin/python benchmarks/replay_bench.py                     # 10M rows over 30 days
    .venv/bin/python benchmarks/replay_bench.py --rows 600000 --repeat 3

Targets (informational; the script always exits 0): the end-to-end replay takes
at most 1.5x the floor, ``single`` is no slower than DuckDB, and the replay with
its 90% intervals takes at most 1.3x the point replay alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
from rich.console import Console
from rich.table import Table

from engine.calibration import Calibration
from engine.logs import Window, load_window, partition_files, write_partitioned
from engine.pricing import Catalog, ModelPrice, load_catalog
from engine.replay import REPLAY_COLUMNS, ReplayResult, replay
from engine.routing import Policy, build_policy
from engine.synth import generate

REPO = Path(__file__).resolve().parent.parent
PROJECT = "bench"
SEED = 1
END = dt.date(2026, 6, 1)
WINDOW_DAYS = 7
CANDIDATE = "gpt-4o-mini"
COST_MODELS = ["gpt-4o-mini", "gpt-4.1-mini", "claude-3-5-haiku", "gemini-2.5-flash"]
#: Replay time over the floor's, and over DuckDB's, that the targets allow.
FLOOR_TARGET = 1.5
DUCKDB_TARGET = 1.0
#: The 90% intervals (bootstrap over rows and multipliers) cost at most this much over the point replay.
INTERVAL_TARGET = 1.3
REL_TOL = 1e-6

err = Console(stderr=True)


# --- data -------------------------------------------------------------------------------------------------------------


def ensure_data(root: Path, rows: int, days: int, catalog: Catalog) -> None:
    """Generate the log store under ``root`` unless its marker says it already has this size."""
    marker = root / "bench.json"
    per_day = rows // days
    wanted = {"rows_per_day": per_day, "days": days, "end": END.isoformat(), "seed": SEED}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return
    err.print(f"generating {per_day * days:,} rows over {days} days under {root}")
    shutil.rmtree(root / f"project_id={PROJECT}", ignore_errors=True)
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    for i in range(days):
        # One day per call keeps peak memory at one day's rows; distinct seeds keep request ids unique.
        day_end = END - dt.timedelta(days=days - 1 - i)
        frame = generate(
            catalog,
            project_id=PROJECT,
            days=1,
            rows_per_day=per_day,
            seed=SEED + i,
            end=day_end,
            metadata_only=True,
        )
        write_partitioned(frame, root, PROJECT)
        elapsed = time.perf_counter() - started
        err.print(f"  day {i + 1}/{days} ({day_end - dt.timedelta(days=1)}) written, {elapsed:.0f} s")
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted))


# --- the contenders ---------------------------------------------------------------------------------------------------


def floor(files: list[Path], window: Window) -> pl.DataFrame:
    """Read the window's replay columns with nothing else: the lower bound of any replay."""
    in_window = (pl.col("timestamp") >= window.start) & (pl.col("timestamp") < window.end)
    return pl.scan_parquet(files).filter(in_window).select(REPLAY_COLUMNS).collect()


def replay_columns(policy: Policy, window: Window) -> list[str]:
    """The log columns a replay of ``policy`` reads (as ``engine.experiment.replay_spec`` asks for them)."""
    return [*REPLAY_COLUMNS, *sorted(policy.columns() | window.filters.columns)]


def ours(root: Path, window: Window, policy: Policy, catalog: Catalog) -> dict[str, Any]:
    """Our replay end to end: load the window, replay it, return the headline numbers."""
    frame = load_window(str(root), window, replay_columns(policy, window))
    return headline(replay(frame, policy, catalog))


def headline(result: ReplayResult) -> dict[str, Any]:
    """The numbers every contender reports, from a ``ReplayResult``."""
    base, cand = result.baseline, result.candidate
    return {
        "rows": base.request_count,
        "baseline_cost": base.cost_usd,
        "candidate_cost": cand.cost_usd,
        "baseline_p50": base.latency_p50_ms,
        "baseline_p95": base.latency_p95_ms,
        "candidate_p50": cand.latency_p50_ms,
        "candidate_p95": cand.latency_p95_ms,
        "baseline_error_rate": base.error_rate,
        "candidate_error_rate": cand.error_rate,
    }


DUCKDB_SINGLE = """
WITH w AS (
    SELECT request_id, model, provider, input_tokens, output_tokens,
           coalesce(cached_input_tokens, 0) AS cached_input_tokens, latency_ms, cost_usd, status
    FROM read_parquet({files}, hive_partitioning = false)
    WHERE "timestamp" >= TIMESTAMPTZ '{start}' AND "timestamp" < TIMESTAMPTZ '{end}'
),
ok AS (SELECT output_tokens, latency_ms FROM w WHERE model = $model AND status = 'ok'),
fit AS (
    SELECT regr_intercept(latency_ms, output_tokens) AS a, regr_slope(latency_ms, output_tokens) AS b, count(*) AS n
    FROM ok
),
resid AS (
    SELECT row_number() OVER (ORDER BY r) - 1 AS i, r
    FROM (SELECT ok.latency_ms - fit.a - fit.b * ok.output_tokens AS r FROM ok, fit)
),
rate AS (SELECT avg((status <> 'ok')::DOUBLE) AS p FROM w WHERE model = $model),
cand AS (
    SELECT w.*,
        CASE WHEN w.model = $model THEN w.cost_usd
             ELSE (((w.input_tokens - w.cached_input_tokens) * $input_rate + w.cached_input_tokens * $cached_rate)
                   * {input_multiplier} + w.output_tokens * $output_rate) / 1e6 END AS c_cost,
        CASE WHEN w.model = $model THEN w.latency_ms
             ELSE greatest(fit.a + fit.b * w.output_tokens + resid.r, 1.0) END AS c_latency,
        CASE WHEN w.model = $model THEN w.status <> 'ok'
             ELSE (hash(w.request_id, 'error') >> 11)::DOUBLE / 9007199254740992.0 < rate.p END AS c_error
    FROM w CROSS JOIN fit CROSS JOIN rate
    LEFT JOIN resid ON resid.i = hash(w.request_id) % fit.n
)
SELECT count(*) AS rows,
       sum(cost_usd) AS baseline_cost,
       sum(c_cost) AS candidate_cost,
       quantile_cont(latency_ms, 0.5) AS baseline_p50,
       quantile_cont(latency_ms, 0.95) AS baseline_p95,
       quantile_cont(c_latency, 0.5) AS candidate_p50,
       quantile_cont(c_latency, 0.95) AS candidate_p95,
       avg((status <> 'ok')::DOUBLE) AS baseline_error_rate,
       avg(c_error::DOUBLE) AS candidate_error_rate,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       histogram(model || ':' || provider) AS baseline_routes
FROM cand
"""


def duckdb_single(con: duckdb.DuckDBPyConnection, query: str, price: ModelPrice) -> dict[str, Any]:
    """The ``single`` replay as one DuckDB query."""
    params = {
        "model": CANDIDATE,
        "input_rate": price.input_per_mtok,
        "cached_rate": price.cached_rate,
        "output_rate": price.output_per_mtok,
    }
    cursor = con.execute(query, params)
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def input_multipliers(catalog: Catalog, models: list[str]) -> dict[str, float]:
    """The prior input-token multiplier of each model's move to ``CANDIDATE`` (what our replay prices with).

    Only the tokenizer prior moves a point off 1 (output multipliers are centred on 1), so the references
    scale the prompt side by it to price the same tokens.
    """
    calibration = Calibration([], catalog)
    return {m: calibration.move(m, CANDIDATE).input.point for m in models if m != CANDIDATE}


def duckdb_query(files: list[Path], window: Window, multipliers: dict[str, float]) -> str:
    """``DUCKDB_SINGLE`` over ``files``, the window's bounds and the models' input multipliers."""
    listed = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    cases = " ".join(f"WHEN '{m}' THEN {v!r}" for m, v in sorted(multipliers.items()))
    return DUCKDB_SINGLE.format(
        files=listed,
        start=window.start.isoformat(),
        end=window.end.isoformat(),
        input_multiplier=f"(CASE w.model {cases} ELSE 1.0 END)" if cases else "1.0",
    )


def pandas_single(
    files: list[Path], window: Window, price: ModelPrice, multipliers: dict[str, float]
) -> dict[str, Any]:
    """The ``single`` replay in pandas and numpy."""
    df = pd.read_parquet(files, columns=list(REPLAY_COLUMNS))
    df = df[(df["timestamp"] >= window.start) & (df["timestamp"] < window.end)]
    is_cand = (df["model"] == CANDIDATE).to_numpy()
    failed = (df["status"] != "ok").to_numpy()
    x = df["output_tokens"].to_numpy(np.float64)
    latency = df["latency_ms"].to_numpy(np.float64)
    cost = df["cost_usd"].to_numpy(np.float64)
    inp = df["input_tokens"].to_numpy(np.float64)
    cached = df["cached_input_tokens"].fillna(0).to_numpy(np.float64)

    # Per-model fit latency = a + b * output_tokens on successful rows.
    ok = df.loc[~failed, ["model"]].assign(x=x[~failed], y=latency[~failed])
    m = ok.assign(xy=ok["x"] * ok["y"], xx=ok["x"] * ok["x"]).groupby("model").mean()
    slope = (m["xy"] - m["x"] * m["y"]) / (m["xx"] - m["x"] ** 2)
    b = float(slope[CANDIDATE])
    a = float(m.loc[CANDIDATE, "y"] - b * m.loc[CANDIDATE, "x"])
    fit_rows = is_cand & ~failed
    residuals = np.sort(latency[fit_rows] - a - b * x[fit_rows])

    ids = df["request_id"]
    pick = pd.util.hash_pandas_object(ids, index=False, hash_key="bench-residuals!").to_numpy()
    draw = (pd.util.hash_pandas_object(ids, index=False, hash_key="bench-error-draw").to_numpy() >> 11) / 2.0**53
    error_rate = failed[is_cand].mean()
    scale = df["model"].map(multipliers).fillna(1.0).to_numpy(np.float64)
    prompt = ((inp - cached) * price.input_per_mtok + cached * price.cached_rate) * scale
    estimated = (prompt + x * price.output_per_mtok) / 1e6
    c_cost = np.where(is_cand, cost, estimated)
    c_latency = np.where(is_cand, latency, np.maximum(a + b * x + residuals[pick % len(residuals)], 1.0))
    c_error = np.where(is_cand, failed, draw < error_rate)

    base_p50, base_p95 = np.percentile(latency, [50, 95])
    cand_p50, cand_p95 = np.percentile(c_latency, [50, 95])
    routes = df.value_counts(["model", "provider"], normalize=True)
    return {
        "rows": len(df),
        "baseline_cost": float(cost.sum()),
        "candidate_cost": float(c_cost.sum()),
        "baseline_p50": float(base_p50),
        "baseline_p95": float(base_p95),
        "candidate_p50": float(cand_p50),
        "candidate_p95": float(cand_p95),
        "baseline_error_rate": float(failed.mean()),
        "candidate_error_rate": float(c_error.mean()),
        "input_tokens": int(inp.sum()),
        "output_tokens": int(x.sum()),
        "baseline_routes": routes.to_dict(),
    }


# --- measuring --------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in KiB; ``None`` off Linux."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; whether that worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Measured:
    """One phase's timings, memory and last result."""

    name: str
    what: str
    times_s: list[float]
    peak_rss_kib: int | None
    growth_kib: int | None
    result: Any

    @property
    def median_ms(self) -> float:
        """Median wall time in ms."""
        return statistics.median(self.times_s) * 1000

    @property
    def min_ms(self) -> float:
        """Fastest wall time in ms."""
        return min(self.times_s) * 1000


def measure(name: str, what: str, run: Callable[[], Any], repeat: int) -> Measured:
    """Warm up once, then time ``repeat`` runs of ``run``; track the phase's peak RSS."""
    err.print(f"timing {name} ...")
    gc.collect()
    start_rss = _status_kib("VmRSS")
    tracked = _reset_peak_rss()
    result = run()
    times: list[float] = []
    for _ in range(repeat):
        result = None
        gc.collect()
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    peak = _status_kib("VmHWM") if tracked else None
    growth = None if peak is None or start_rss is None else peak - start_rss
    return Measured(name, what, times, peak, growth, result)


# --- reporting --------------------------------------------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:,.0f}"


def timing_table(phases: list[Measured], floor_ms: float, repeat: int) -> Table:
    """Median and minimum time, ratio to the floor and memory of every phase."""
    table = Table(title=f"Replay benchmark (median of {repeat} runs after 1 warm-up)")
    for column in ("phase", "what"):
        table.add_column(column)
    for column in ("median ms", "min ms", "x floor", "peak RSS MiB", "RSS growth MiB"):
        table.add_column(column, justify="right")
    for p in phases:
        table.add_row(
            p.name,
            p.what,
            f"{p.median_ms:,.1f}",
            f"{p.min_ms:,.1f}",
            f"{p.median_ms / floor_ms:.2f}",
            _mib(p.peak_rss_kib),
            _mib(p.growth_kib),
        )
    return table


RESULT_FIELDS = (
    "rows",
    "baseline_cost",
    "candidate_cost",
    "baseline_p50",
    "baseline_p95",
    "candidate_p50",
    "candidate_p95",
    "baseline_error_rate",
    "candidate_error_rate",
)


def results_table(by_engine: dict[str, dict[str, Any]]) -> Table:
    """The ``single`` replay's headline numbers from each engine, side by side."""
    table = Table(title=f"single -> {CANDIDATE}: results (latency and error draws use different hashes)")
    table.add_column("metric")
    for engine in by_engine:
        table.add_column(engine, justify="right")
    for field in RESULT_FIELDS:
        values = [r[field] for r in by_engine.values()]
        table.add_row(field, *(f"{v:,}" if isinstance(v, int) else f"{v:,.6f}" for v in values))
    return table


def cost_mismatches(ref: dict[str, Any], other: dict[str, Any], engine: str) -> list[str]:
    """A warning per cost total (or row count) of ``other`` that disagrees with ours."""
    problems = []
    if ref["rows"] != other["rows"]:
        problems.append(f"{engine}: {other['rows']:,} rows, ours {ref['rows']:,}")
    for field in ("baseline_cost", "candidate_cost"):
        if abs(other[field] - ref[field]) > REL_TOL * abs(ref[field]):
            problems.append(f"{engine}: {field} {other[field]!r} differs from ours {ref[field]!r}")
    return problems


def targets_table(by_name: dict[str, Measured]) -> Table:
    """PASS/MISS for each target."""
    floor_ms = by_name["floor"].median_ms
    duck_ms = by_name["duckdb single"].median_ms
    table = Table(title="Targets (informational)")
    for column in ("target", "ratio", "limit", "verdict"):
        table.add_column(column, justify="left" if column == "target" else "right")
    checks = [
        ("replay single / floor", by_name["replay single"].median_ms / floor_ms, FLOOR_TARGET),
        ("replay cost_optimized / floor", by_name["replay cost_optimized"].median_ms / floor_ms, FLOOR_TARGET),
        ("replay single / duckdb single", by_name["replay single"].median_ms / duck_ms, DUCKDB_TARGET),
        (
            "replay() with intervals / point alone",
            by_name["  replay() cost_optimized"].median_ms
            / by_name["  replay() cost_optimized, no intervals"].median_ms,
            INTERVAL_TARGET,
        ),
    ]
    for label, ratio, limit in checks:
        verdict = "[green]PASS[/green]" if ratio <= limit else "[red]MISS[/red]"
        table.add_row(label, f"{ratio:.2f}", f"<= {limit:.2f}", verdict)
    return table


# --- main -------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the whole store (default 10M)")
    parser.add_argument("--days", type=int, default=30, help="days the store spans (default 30)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per phase after one warm-up (default 5)")
    parser.add_argument(
        "--data", type=Path, default=REPO / "benchmarks" / ".data" / "replay", help="log store directory (git-ignored)"
    )
    args = parser.parse_args(argv)
    if args.days < 1 or args.rows < args.days or args.repeat < 1:
        parser.error("need --days >= 1, --rows >= --days and --repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate the data if needed, time every phase, print the tables."""
    args = parse_args(argv)
    catalog = load_catalog(REPO / "configs" / "pricing.yaml")
    ensure_data(args.data, args.rows, args.days, catalog)
    start = dt.datetime.combine(END - dt.timedelta(days=min(WINDOW_DAYS, args.days)), dt.time(), tzinfo=dt.UTC)
    window = Window(PROJECT, start, dt.datetime.combine(END, dt.time(), tzinfo=dt.UTC))
    files = partition_files(str(args.data), PROJECT, window.dates())
    single = build_policy("single", {"model": CANDIDATE})
    cost_optimized = build_policy("cost_optimized", {"allowed_models": COST_MODELS})
    price = catalog.price(CANDIDATE)
    con = duckdb.connect()
    multipliers = input_multipliers(catalog, sorted(catalog.models))
    query = duckdb_query(files, window, multipliers)

    phases = [
        measure("floor", "pl.scan_parquet + window filter + REPLAY_COLUMNS", lambda: floor(files, window), args.repeat),
        measure("replay single", "load_window + replay", lambda: ours(args.data, window, single, catalog), args.repeat),
        measure(
            "replay cost_optimized",
            "load_window + replay",
            lambda: ours(args.data, window, cost_optimized, catalog),
            args.repeat,
        ),
        measure("duckdb single", "one SQL query", lambda: duckdb_single(con, query, price), args.repeat),
        measure(
            "pandas single",
            "read_parquet + numpy",
            lambda: pandas_single(files, window, price, multipliers),
            args.repeat,
        ),
        measure(
            "  load_window",
            "breakdown: read only",
            lambda: load_window(str(args.data), window, replay_columns(single, window)),
            args.repeat,
        ),
    ]
    frame = load_window(str(args.data), window, replay_columns(cost_optimized, window))
    phases += [
        measure("  replay() single", "breakdown: in memory", lambda: replay(frame, single, catalog), args.repeat),
        measure(
            "  replay() cost_optimized",
            "breakdown: in memory",
            lambda: replay(frame, cost_optimized, catalog),
            args.repeat,
        ),
        measure(
            "  replay() cost_optimized, no intervals",
            "breakdown: the point alone",
            lambda: replay(frame, cost_optimized, catalog, intervals=False),
            args.repeat,
        ),
    ]
    by_name = {p.name: p for p in phases}

    out = Console(width=None if sys.stdout.isatty() else 140)
    total_rows = args.rows // args.days * args.days
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    out.print(
        f"store: {total_rows:,} rows over {args.days} days in {args.data}\n"
        f"window: {window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d} (exclusive), {len(files)} files, "
        f"{by_name['floor'].result.height:,} rows\n"
        f"polars {pl.__version__} ({pl.thread_pool_size()} threads), duckdb {duckdb.__version__} "
        f"({threads} threads), pandas {pd.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs"
    )
    out.print(timing_table(phases, by_name["floor"].median_ms, args.repeat))
    engines = {
        "ours": by_name["replay single"].result,
        "duckdb": by_name["duckdb single"].result,
        "pandas": by_name["pandas single"].result,
    }
    out.print(results_table(engines))
    for engine in ("duckdb", "pandas"):
        for problem in cost_mismatches(engines["ours"], engines[engine], engine):
            out.print(f"[bold red]WARNING[/bold red] cost check failed: {problem}")
    out.print(targets_table(by_name))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out.print(f"process peak RSS (ru_maxrss): {peak / 1024:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
