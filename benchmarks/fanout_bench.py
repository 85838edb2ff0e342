"""Benchmark the Ray fan-out of paid calls against a plain asyncio loop, and what spend tracking costs.

What is measured, against one loopback simulator (``engine.providers._sim.SimServer``, started once for the
whole run) that serves models with a fixed added latency and no errors — ``fast`` (0 ms) and ``slow``
(200 ms) — over ``--calls`` chat calls built from the synthetic prompts of ``engine.synth`` (one user
message each, ``max_tokens`` 64, distinct pair ids), for every (latency, concurrency) pair:

* ``plain``: the reference. One process, ``asyncio``, one ``openai.AsyncOpenAI`` client (``max_retries=0``),
  an ``asyncio.Semaphore(concurrency)`` and ``asyncio.gather`` over the same calls (same bodies and pair
  header). It runs in a child process spawned once, so that it does not share a GIL with the simulator's
  server thread (the fan-out's call workers do not either).
* ``fan_out W=1`` / ``fan_out W=2``: ``engine.fanout.fan_out`` end to end with ``W`` call workers of
  ``concurrency // W`` calls in flight each, batches of ``--batch-size`` and a cap that is never reached.
  Ray is started once before timing (``ensure_ray``); actor creation (spend tracker and call workers)
  happens inside ``fan_out`` and is timed, since a user waits for it. The time to the first outcome batch
  and the steady-state rate (outcomes after the first batch / time from the first to the last batch) are
  shown beside it, so startup is visible separately.
* ``untracked W=1`` / ``untracked W=2`` (0 ms only): the very same ``fan_out`` with its call-worker class
  swapped (patched in ``engine.fanout._driver`` for the run) for a bench-local ``CallWorkerActor`` whose
  tracker is the engine's ``SpendTracker`` called in-process (same ledger work, never reaches its cap)
  instead of the tracker actor. Everything else (actors, batches, the tracker actor's creation and final
  snapshot) is unchanged, so the difference is the per-batch reserve and settle round trips to the
  spend-tracking actor (a check that the actor booked nothing confirms the swap). Tracking overhead =
  (t_tracked - t_untracked) / t_untracked, shown from the medians and as the median over rounds of the two
  runs made back to back (the target uses the latter, which drift from other load on the machine hurts least).

Each variant runs once to warm up and then ``--repeat`` times; variants take turns within a configuration
(in reverse order every other round) so that drift hits all alike, and tables show medians. At 0 ms, where
five variants run, each run makes ``--calls-0ms`` calls (default 1,000) so that the defaults finish in about
eight minutes on two cores. Throughput is calls / wall-clock seconds. For an added latency L > 0 the
efficiency is the throughput over Little's law's bound, concurrency / L.

Run from the repository root::

    .venv/bin/python benchmarks/fanout_bench.py                   # 2,000 calls (1,000 at 0 ms); 64 and 256
    .venv/bin/python benchmarks/fanout_bench.py --calls 500 --latencies 200 --concurrency 64 --repeat 1

Targets (informational; the script always exits 0): with 200 ms of latency the fan-out reaches at least
90% of Little's bound and at least the plain loop's throughput; at 0 ms spend tracking costs under 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from multiprocessing import get_context
from typing import Any
from unittest import mock

import openai
from rich.console import Console
from rich.table import Table

from engine.fanout import Endpoint, FanoutOptions, Job, Outcome, Price, SpendTracker, _driver, ensure_ray, fan_out
from engine.fanout._worker import CallWorkerActor
from engine.providers import PAIR_HEADER, ChatCall
from engine.providers._sim import SimConfig, SimProfile, SimServer
from engine.synth import prompt_index

#: Model names of the simulator by added latency (ms); other latencies get ``sim-<ms>ms``.
MODEL_NAMES = {0.0: "fast", 200.0: "slow"}
ENDPOINT = "sim"
PRICE = Price(input_per_mtok=0.15, cached_input_per_mtok=0.075, output_per_mtok=0.6)
ESTIMATE_USD = 1e-5
CAP_USD = 1e9
MAX_TOKENS = 64
EFFICIENCY_TARGET = 0.90
RATIO_TARGET = 1.0
OVERHEAD_TARGET = 0.05


# --- the workload -------------------------------------------------------------------------------------------------


def model_name(latency_ms: float) -> str:
    """The simulator model that adds ``latency_ms``."""
    return MODEL_NAMES.get(latency_ms, f"sim-{latency_ms:g}ms")


def sim_config(latencies: list[float]) -> SimConfig:
    """One model per latency, no errors, no jitter, real time.

    The simulator waits ``ttft + completion_tokens / output_tokens_per_s``; an infinite rate makes the second
    term exactly 0, so the added latency is exactly ``ttft_ms`` (a rate of 1e9 would leave ~1e-7 s, which
    also sends the 0 ms model down the server's sleep path).
    """
    profiles = {
        model_name(ms): SimProfile(ttft_ms=ms, output_tokens_per_s=math.inf, jitter=0)
        for ms in sorted({0.0, 200.0, *latencies})
    }
    return SimConfig(models=profiles, time_scale=1)


def build_jobs(n: int, model: str) -> list[Job]:
    """``n`` jobs for ``model`` from the synthetic prompts, with distinct pair ids and a tiny price."""
    prompts = list(prompt_index())
    return [
        Job(
            ChatCall(
                pair_id=f"bench-{i:06d}",
                model=model,
                body={"messages": [{"role": "user", "content": prompts[i % len(prompts)]}], "max_tokens": MAX_TOKENS},
            ),
            ENDPOINT,
            ESTIMATE_USD,
            PRICE,
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class Run:
    """One timed run: wall-clock seconds, calls that succeeded or failed, and (fan-out only) the batch timeline."""

    seconds: float
    ok: int
    errors: int
    first_s: float | None = None
    steady_rate: float | None = None


# --- (a) the plain loop, in a child process ---------------------------------------------------------------------


async def _plain(base_url: str, calls: list[tuple[str, str, dict[str, Any]]], concurrency: int) -> Run:
    start = time.perf_counter()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(pair_id: str, model: str, body: dict[str, Any]) -> bool:
        async with semaphore:
            try:
                await client.chat.completions.create(model=model, extra_headers={PAIR_HEADER: pair_id}, **body)
            except openai.OpenAIError:
                return False
            return True

    results = await asyncio.gather(*(one(*call) for call in calls))
    seconds = time.perf_counter() - start
    await client.close()
    ok = sum(results)
    return Run(seconds, ok, len(results) - ok)


def plain_run(base_url: str, calls: list[tuple[str, str, dict[str, Any]]], concurrency: int) -> Run:
    """The reference loop (runs in the child process; timed there)."""
    return asyncio.run(_plain(base_url, calls, concurrency))


def plain_in(pool: ProcessPoolExecutor, base_url: str, calls: list[tuple[str, str, dict[str, Any]]], c: int) -> Run:
    """``plain_run`` in the pool's child process."""
    return pool.submit(plain_run, base_url, calls, c).result()


# --- (b) and (c) the fan-out, with and without the spend tracker ------------------------------------------------


class InProcessTracker:
    """The engine's ``SpendTracker`` called in-process: the same ledger work, no actor and no round trip.

    Every method of the tracker becomes a coroutine, as ``TrackerClient`` makes them; its cap is never reached,
    so it grants every reservation.
    """

    def __init__(self, cap_usd: float) -> None:
        self.inner = SpendTracker(cap_usd)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


class UntrackedWorkerActor(CallWorkerActor):
    """``CallWorkerActor`` built as usual, then given an ``InProcessTracker`` instead of the tracker actor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker = InProcessTracker(CAP_USD)


def fanout_run(jobs: list[Job], endpoint: Endpoint, options: FanoutOptions, *, tracked: bool) -> Run:
    """One ``fan_out`` end to end (a fresh run id); ``tracked=False`` swaps in ``UntrackedWorkerActor`` for it."""
    marks: list[tuple[float, int, int]] = []

    def on_outcomes(outcomes: list[Outcome]) -> str | None:
        if outcomes:
            bad = sum(o.result is None or o.result.status != "ok" for o in outcomes)
            marks.append((time.perf_counter(), len(outcomes), bad))
        return None

    swap = contextlib.nullcontext() if tracked else mock.patch.object(_driver, "CallWorkerActor", UntrackedWorkerActor)
    with swap:
        start = time.perf_counter()
        report = fan_out(
            jobs,
            run_id=f"bench-{uuid.uuid4().hex[:12]}",
            cap_usd=CAP_USD,
            endpoints={ENDPOINT: endpoint},
            on_outcomes=on_outcomes,
            options=options,
        )
        seconds = time.perf_counter() - start
    if report.stop is not None or report.started != len(jobs):
        raise RuntimeError(f"fan_out stopped early: {report}")
    if (report.spent_usd > 0) != tracked:  # the tracker actor books spend only when the swap did not happen
        raise RuntimeError(f"tracked={tracked} but the tracker actor booked ${report.spent_usd:g}")
    errors = sum(m[2] for m in marks)
    steady = None
    if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
        steady = (len(jobs) - marks[0][1]) / (marks[-1][0] - marks[0][0])
    return Run(seconds, len(jobs) - errors, errors, marks[0][0] - start if marks else None, steady)


# --- measuring ----------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """The timed runs of one variant in one configuration."""

    name: str
    runs: list[Run]

    @property
    def seconds(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(r.seconds for r in self.runs)

    @property
    def errors(self) -> int:
        """Failed calls over all timed runs."""
        return sum(r.errors for r in self.runs)

    def rate(self, calls: int) -> float:
        """Calls per second at the median time."""
        return calls / self.seconds

    @property
    def steady_rate(self) -> float | None:
        """Median steady-state rate (first to last outcome batch)."""
        rates = [r.steady_rate for r in self.runs if r.steady_rate is not None]
        return statistics.median(rates) if rates else None

    @property
    def first_s(self) -> float | None:
        """Median time to the first outcome batch."""
        firsts = [r.first_s for r in self.runs if r.first_s is not None]
        return statistics.median(firsts) if firsts else None


@dataclass
class Config:
    """One (latency, concurrency) configuration and its variants."""

    latency_ms: float
    concurrency: int
    calls: int
    variants: dict[str, Measured]


def measure_config(
    variants: dict[str, Callable[[], Run]], repeat: int, latency_ms: float, concurrency: int, calls: int
) -> Config:
    """Warm every variant up once, then run them in turn ``repeat`` times (the order reversed every other round)."""
    measured = {name: Measured(name, []) for name in variants}
    for rep in range(repeat + 1):
        order = list(variants.items())
        for name, run in order if rep % 2 == 0 else order[::-1]:
            result = run()
            if rep > 0:
                measured[name].runs.append(result)
    return Config(latency_ms, concurrency, calls, measured)


def paired_overhead(tracked: Measured, untracked: Measured) -> float:
    """Median over rounds of t_tracked / t_untracked - 1 (the two ran back to back in each round)."""
    return statistics.median(t.seconds / u.seconds - 1 for t, u in zip(tracked.runs, untracked.runs, strict=True))


# --- printing -----------------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def config_table(config: Config, repeat: int) -> Table:
    """Throughput of each variant of one configuration."""
    title = (
        f"{config.latency_ms:g} ms added, concurrency {config.concurrency}, {config.calls:,} calls "
        f"(median of {repeat} after 1 warm-up)"
    )
    table = Table(title=title)
    slow = config.latency_ms > 0
    columns = ["variant", "seconds", "calls/s", "ours/plain", "first batch s", "steady calls/s"]
    if slow:
        columns += ["efficiency", "steady eff."]
    for column in [*columns, "errors"]:
        table.add_column(column, justify="left" if column == "variant" else "right")
    plain = config.variants["plain"].rate(config.calls)
    bound = config.concurrency / (config.latency_ms / 1000) if slow else None
    for m in config.variants.values():
        rate = m.rate(config.calls)
        steady = m.steady_rate
        row = [
            m.name,
            f"{m.seconds:.2f}",
            f"{rate:,.0f}",
            "-" if m.name == "plain" else f"{rate / plain:.2f}x",
            _fmt(m.first_s, ".2f"),
            _fmt(steady, ",.0f"),
        ]
        if bound is not None:
            row += [f"{rate / bound:.0%}", _fmt(None if steady is None else steady / bound, ".0%")]
        table.add_row(*row, str(m.errors))
    return table


def overhead_table(configs: list[Config], workers: list[int]) -> Table:
    """Tracked against untracked fan-out at 0 ms."""
    table = Table(title="Spend-tracking overhead at 0 ms: (t_tracked - t_untracked) / t_untracked")
    columns = ("calls", "concurrency", "W", "tracked s", "untracked s", "of medians", "paired (median)", "steady")
    for column in columns:
        table.add_column(column, justify="right")
    for config in configs:
        if config.latency_ms != 0:
            continue
        for w in workers:
            tracked, untracked = config.variants[f"fan_out W={w}"], config.variants[f"untracked W={w}"]
            steady = None
            if tracked.steady_rate and untracked.steady_rate:
                steady = untracked.steady_rate / tracked.steady_rate - 1
            table.add_row(
                f"{config.calls:,}",
                str(config.concurrency),
                str(w),
                f"{tracked.seconds:.3f}",
                f"{untracked.seconds:.3f}",
                f"{tracked.seconds / untracked.seconds - 1:+.1%}",
                f"{paired_overhead(tracked, untracked):+.1%}",
                _fmt(steady, "+.1%"),
            )
    return table


def targets_table(configs: list[Config], workers: list[int]) -> Table:
    """PASS/MISS for each target (end-to-end times, startup included)."""
    table = Table(title="Targets (informational)")
    for column in ("target", "value", "limit", "verdict"):
        table.add_column(column, justify="left" if column == "target" else "right")

    def row(label: str, value: float, limit: str, ok: bool, spec: str) -> None:
        verdict = "[green]PASS[/green]" if ok else "[red]MISS[/red]"
        table.add_row(label, f"{value:{spec}}", limit, verdict)

    for config in configs:
        plain = config.variants["plain"].rate(config.calls)
        where = f"{config.latency_ms:g} ms, c={config.concurrency}"
        for w in workers:
            tracked = config.variants[f"fan_out W={w}"]
            rate = tracked.rate(config.calls)
            if config.latency_ms > 0:
                efficiency = rate / (config.concurrency / (config.latency_ms / 1000))
                row(
                    f"{where}, W={w}: efficiency",
                    efficiency,
                    f">= {EFFICIENCY_TARGET:.0%}",
                    efficiency >= EFFICIENCY_TARGET,
                    ".0%",
                )
                row(f"{where}, W={w}: ours/plain", rate / plain, f">= {RATIO_TARGET:.1f}x", rate >= plain, ".2f")
            else:
                overhead = paired_overhead(tracked, config.variants[f"untracked W={w}"])
                row(
                    f"{where}, W={w}: tracking overhead",
                    overhead,
                    f"< {OVERHEAD_TARGET:.0%}",
                    overhead < OVERHEAD_TARGET,
                    "+.1%",
                )
    return table


def delay_check(server: SimServer, latencies: list[float]) -> str:
    """The delays the simulator actually drew per model (they should equal the requested latencies exactly)."""
    drawn: dict[str, set[float]] = {}
    for call in server.calls:
        drawn.setdefault(call.model, set()).add(call.delay_s)
    parts = []
    for ms in latencies:
        seen = sorted(drawn.get(model_name(ms), set()))
        exact = seen == [ms / 1000]
        parts.append(f"{model_name(ms)} {', '.join(f'{d:g}' for d in seen)} s ({'exact' if exact else 'NOT exact'})")
    return f"simulator delays drawn: {'; '.join(parts)}; {len(server.calls):,} calls served"


def machine_facts() -> str:
    """CPU, OS and versions."""
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {version(p)}" for p in ("ray", "openai", "httpx2", "uvicorn", "starlette", "rich"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({affinity} usable), {cpu}; {platform.platform()}; load avg {load}\n"
        f"python {platform.python_version()}; {versions}"
    )


# --- main ---------------------------------------------------------------------------------------------------------


def _numbers(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (default 2000)")
    parser.add_argument(
        "--calls-0ms",
        type=int,
        default=1000,
        help="calls per run at 0 ms, where five variants run (default 1000, to stay within ~8 minutes on two "
        "cores; 0 = --calls)",
    )
    parser.add_argument("--latencies", default="0,200", help="added latencies in ms, comma-separated (default 0,200)")
    parser.add_argument("--concurrency", default="64,256", help="calls in flight, comma-separated (default 64,256)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant after one warm-up (default 3)")
    parser.add_argument("--workers", default="1,2", help="fan-out call workers W, comma-separated (default 1,2)")
    parser.add_argument("--batch-size", type=int, default=32, help="fan-out batch size (default 32)")
    args = parser.parse_args(argv)
    args.latencies = _numbers(args.latencies, float)
    args.concurrency = _numbers(args.concurrency, int)
    args.workers = _numbers(args.workers, int)
    args.calls_0ms = args.calls_0ms or args.calls
    if (
        min(args.calls, args.calls_0ms) < 1
        or args.repeat < 1
        or args.batch_size < 1
        or not args.latencies
        or not args.concurrency
    ):
        parser.error("need --calls, --repeat and --batch-size >= 1 and at least one latency and concurrency")
    if any(c < w for c in args.concurrency for w in args.workers) or min(args.latencies) < 0:
        parser.error("every concurrency must be at least every W, and latencies must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start the simulator, Ray and the plain loop's process once; time every configuration; print the tables."""
    args = parse_args(argv)
    out = Console(width=None if sys.stdout.isatty() else 140)
    out.print(machine_facts())
    began = time.perf_counter()
    configs: list[Config] = []
    with (
        SimServer(sim_config(args.latencies)) as server,
        ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as plain_pool,
    ):
        endpoint = Endpoint(server.base_url, "x")
        plain_pool.submit(plain_run, server.base_url, [], 1).result()  # spawn and import before timing
        ensure_ray()
        out.print(f"simulator at {server.base_url}: {', '.join(server.config.models)}; Ray started; timing...")
        for latency in args.latencies:
            n = args.calls_0ms if latency == 0 else args.calls
            jobs = build_jobs(n, model_name(latency))
            calls = [(j.call.pair_id, j.call.model, j.call.body) for j in jobs]
            for concurrency in args.concurrency:
                variants: dict[str, Callable[[], Run]] = {
                    "plain": partial(plain_in, plain_pool, server.base_url, calls, concurrency)
                }
                for w in args.workers:
                    for tracked in (True, False) if latency == 0 else (True,):
                        options = FanoutOptions(workers=w, concurrency=concurrency // w, batch_size=args.batch_size)
                        name = f"{'fan_out' if tracked else 'untracked'} W={w}"
                        variants[name] = partial(fanout_run, jobs, endpoint, options, tracked=tracked)
                config = measure_config(variants, args.repeat, latency, concurrency, n)
                configs.append(config)
                out.print(config_table(config, args.repeat))
        out.print(delay_check(server, args.latencies))
    if any(c.latency_ms == 0 for c in configs):
        out.print(overhead_table(configs, args.workers))
    out.print(targets_table(configs, args.workers))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out.print(
        f"batch size {args.batch_size}; per-worker concurrency = concurrency // W. 'first batch s': fan_out's start "
        "to its first outcome batch (actor start-up + one batch's latency); 'steady': outcomes after the first "
        "batch / time from the first to the last batch; efficiency = calls/s / (concurrency / latency). "
        f"Targets use end-to-end times. Total {time.perf_counter() - began:.0f} s; load avg at the end {load}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
