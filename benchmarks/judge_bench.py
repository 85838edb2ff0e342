"""Benchmark a 1,500-pair judge run through the Ray fan-out against a plain asyncio loop.

What is measured:

* Setup (not timed): a synthetic log store and a with-responses experiment of
  ``--pairs`` pairs against the loopback simulator (no added latency), so every
  similarity bucket has pairs to judge.
* ``judge run``: ``service.core.create_judge_run`` for 500 pairs per bucket
  (1,500 judge calls) against a simulated judge that answers after
  ``--latency`` ms: sampling, prompt building, the Ray fan-out under the spend
  tracker, checkpoints, verdict parsing and the summary.
* ``plain loop``: the same 1,500 judge prompts sent by one ``asyncio`` loop with
  one ``AsyncOpenAI`` client and a semaphore of the same concurrency, on the
  same server. The reference.

Efficiency is against Little's law: achieved calls/s ÷ (concurrency ÷ latency).
Run from the repository root::

    .venv/bin/python benchmarks/judge_bench.py [--latency 200] [--concurrency 64] [--pairs 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import openai
from rich.console import Console
from rich.table import Table

from engine import judge
from engine.fanout import ensure_ray
from engine.logs import write_partitioned
from engine.providers._sim import Divergence, SimConfig, SimProfile, SimServer
from engine.providers._sim_judge import SimJudgeProfile
from engine.settings import Settings
from engine.synth import generate
from service import core

console = Console()
END = dt.date(2026, 6, 1)
PER_BUCKET = 500


def setup(home: Path, pairs: int, base_url: str) -> tuple[core.Services, str]:
    """A store, a project and a with-responses experiment with enough pairs in every bucket."""
    credentials = home / "credentials.yaml"
    credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{base_url}'}}\n")
    settings = Settings(home=home / "state", sample_min=1, retry_backoff_s=0, concurrency=128)
    svc = core.open_services(settings, logs=str(home / "logs"), credentials=credentials)
    frame = generate(svc.catalog, project_id="bench", days=2, rows_per_day=max(pairs, 2000), seed=11, end=END)
    write_partitioned(frame, home / "logs", "bench")
    core.create_project(svc, "bench")
    experiment = core.create_experiment(
        svc,
        {
            "projectId": "bench",
            "candidatePolicy": "single",
            "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
            "windowStart": f"{END - dt.timedelta(days=2)}T00:00:00Z",
            "windowEnd": f"{END}T00:00:00Z",
            "mode": "with_responses",
            "sample": {"size": pairs, "seed": 1},
            "spendCapUsd": 50,
        },
    )
    return svc, experiment.id


async def plain_loop(base_url: str, prompts: list[list[dict[str, str]]], concurrency: int) -> float:
    """Seconds for one asyncio loop to send every judge prompt with bounded concurrency."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, messages: list[dict[str, str]]) -> None:
        async with gate:
            await client.chat.completions.create(
                model="gpt-4o", messages=messages, max_tokens=200, extra_headers={"X-Rehearsal-Pair": f"plain-{i}"}
            )  # type: ignore[call-overload]

    started = time.perf_counter()
    await asyncio.gather(*(one(i, m) for i, m in enumerate(prompts)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def judge_prompts(svc: core.Services, experiment_id: str) -> list[list[dict[str, str]]]:
    """The messages of the 1,500 judge calls (same sample and order logic as the run)."""
    from engine.judging import plan_judge
    from engine.schema import JudgeCreate

    experiment = core.get_experiment(svc, experiment_id)
    spec = JudgeCreate(
        judge_model="gpt-4o", stratification={"high": PER_BUCKET, "mild": PER_BUCKET, "major": PER_BUCKET}
    )
    planned = plan_judge(experiment, spec, svc.run_context())
    rows = planned.pairs.to_dicts()
    first = judge.candidate_first([r["request_id"] for r in rows], 0)
    out = []
    for row, cand_a in zip(rows, first.tolist(), strict=True):
        a, b = (
            (row["candidate_text"], row["baseline_text"]) if cand_a else (row["baseline_text"], row["candidate_text"])
        )
        out.append(judge.judge_messages(planned.rubric, judge.request_text(row["request_json"]), a, b))
    return out


def main() -> None:
    """Parse arguments, run both variants, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=200.0, help="judge latency added by the simulator (ms)")
    parser.add_argument("--concurrency", type=int, default=64, help="judge calls in flight")
    parser.add_argument("--pairs", type=int, default=4000, help="pairs of the experiment to judge from")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    profiles = {
        "gpt-4o-mini": SimProfile(divergence=Divergence(close=0.34, mild=0.33, far=0.33)),
        "gpt-4o": SimProfile(ttft_ms=args.latency, output_tokens_per_s=1e9, jitter=0, judge=SimJudgeProfile()),
    }
    ensure_ray()
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimConfig(models=profiles, time_scale=1)) as sim:
        console.print(f"[dim]setting up an experiment of {args.pairs:,} pairs…[/dim]")
        svc, experiment_id = setup(Path(tmp), args.pairs, sim.base_url)
        # Judge calls: one worker actor per core would only add hops; the fan-out splits concurrency over workers.
        judge_svc = core.open_services(
            svc.settings.model_copy(update={"workers": 2, "concurrency": args.concurrency // 2}),
            logs=svc.logs_root,
            credentials=svc.credentials_path,
        )
        body: dict[str, Any] = {
            "judgeModel": "gpt-4o",
            "stratification": {"high": PER_BUCKET, "mild": PER_BUCKET, "major": PER_BUCKET},
            "spendCapUsd": 20,
        }
        prompts = judge_prompts(svc, experiment_id)
        ours, plain = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run = core.create_judge_run(judge_svc, experiment_id, body)
            ours.append(time.perf_counter() - started)
            assert run.status == "completed", run.status_reason
            plain.append(asyncio.run(plain_loop(sim.base_url, prompts, args.concurrency)))
    calls = len(prompts)
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    limit = args.concurrency / (args.latency / 1000) if args.latency else float("inf")
    table = Table(title=f"{calls:,} judge calls at {args.latency:g} ms, concurrency {args.concurrency}")
    for col in ("variant", "median s", "calls/s", "x plain", "Little's-law efficiency"):
        table.add_column(col, justify="right")
    for name, seconds in (("judge run (Ray fan-out)", ours_s), ("plain asyncio loop", plain_s)):
        rate = calls / seconds
        eff = f"{rate / limit:.0%}" if limit != float("inf") else "n/a"
        table.add_row(name, f"{seconds:.2f}", f"{rate:,.0f}", f"{plain_s / seconds:.2f}", eff)
    console.print(table)
    console.print(
        f"[dim]ours {', '.join(f'{s:.2f}' for s in ours)} s; plain {', '.join(f'{s:.2f}' for s in plain)} s; "
        f"{os.cpu_count()} CPUs[/dim]"
    )
    console.print(
        f"summary of the last run: judged {run.summary['judged_count'] if run.summary else 0:,}, "
        f"spend ${run.spend_usd:.4f}"
    )


if __name__ == "__main__":
    main()
