"""Kill -9 with-responses runs at random points, resume them, and hold the books against the provider's own log.

Each cycle starts ``rehearsal experiment run`` in a child process (a driver joining this module's Ray
cluster), kills it with SIGKILL once the simulator has seen a random number of calls, resumes the run here,
and compares what the simulator billed (its call log: tokens of every answered call, at the catalog's
prices) with what the run recorded. ``REHEARSAL_CRASH_RUNS`` sets the number of cycles (default 2; the
hardening issue's check runs 20).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import ray

from engine.fanout import FanoutOptions, ensure_ray
from engine.pricing import Catalog
from engine.providers._sim import Divergence, SimCall, SimConfig, SimProfile, SimServer
from engine.results import INTERRUPTED, PairStore
from engine.settings import Settings
from service import core
from tests.conftest import REPO, STORE_END
from tests.listeners import beyond_loopback

CYCLES = int(os.environ.get("REHEARSAL_CRASH_RUNS", "2"))
MODEL = "gpt-4o-mini"
#: About 100 ms a call, some 429s and 500s (retried; never billed), answers that stray like a real model's.
PROFILE = SimProfile(
    ttft_ms=60,
    output_tokens_per_s=3000,
    jitter=0.4,
    rate_limit=0.04,
    retry_after_s=0,
    server_error=0.04,
    divergence=Divergence(close=0.6, mild=0.3, far=0.1),
)
PAIRS = 120


@pytest.fixture(scope="module")
def gcs_address() -> Iterator[str]:
    """A Ray cluster owned by this process; the killed drivers join it (as a run joins ``RAY_ADDRESS``)."""
    ensure_ray(num_cpus=2)
    assert ray._private.worker._global_node.node_ip_address == "127.0.0.1"
    assert beyond_loopback(os.getpid()) == [], "the local Ray cluster listens beyond loopback"
    yield str(ray.get_runtime_context().gcs_address)
    ray.shutdown()


@dataclass
class Books:
    """One cycle's money: what the provider billed and what the run recorded."""

    provider_usd: float
    recorded_usd: float
    reserved_usd: float  # reservations standing in for interrupted calls
    interrupted: int
    cap_usd: float
    status: str


def _billed(calls: list[SimCall], catalog: Catalog) -> tuple[float, Counter[str]]:
    price = catalog.price(MODEL)
    answered = [c for c in calls if c.status_code == 200 and c.outcome == "ok"]
    usd = sum(
        (c.prompt_tokens * price.input_per_mtok + c.completion_tokens * price.output_per_mtok) / 1e6 for c in answered
    )
    return usd, Counter(c.pair_id for c in answered if c.pair_id)


def _spec(path: Path, cap: float) -> Path:
    body = {
        "projectId": "demo",
        "candidatePolicy": "single",
        "candidateConfig": {"model": MODEL, "provider_credential_id": "pc_openai_default"},
        "windowStart": "2026-04-12T00:00:00Z",
        "windowEnd": f"{STORE_END}T00:00:00Z",
        "mode": "with_responses",
        "sample": {"size": PAIRS, "method": "random", "seed": 5},
        "spendCapUsd": cap,
    }
    path.write_text(json.dumps(body))
    return path


@dataclass
class Bench:
    """What every cycle shares: one simulator, one store (so answers embedded once stay cached), the settings."""

    sim: SimServer
    svc: core.Services
    env: dict[str, str]
    spec_dir: Path
    catalog: Catalog


@pytest.fixture
def bench(tmp_path: Path, log_store: Path, gcs_address: str, shipped_catalog: Catalog) -> Iterator[Bench]:
    with SimServer(SimConfig(models={MODEL: PROFILE}, time_scale=1.0)) as sim:
        credentials = tmp_path / "credentials.yaml"
        credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
        settings = Settings(home=tmp_path / "home", sample_min=1, retry_backoff_s=0, workers=2, concurrency=8)
        svc = core.open_services(settings, logs=str(log_store), credentials=credentials)
        core.create_project(svc, "demo")
        env = {
            **os.environ,
            "REHEARSAL_HOME": str(settings.home),
            "REHEARSAL_LOGS": str(log_store),
            "REHEARSAL_CREDENTIALS": str(credentials),
            "REHEARSAL_SAMPLE_MIN": "1",
            "REHEARSAL_RETRY_BACKOFF_S": "0",
            "REHEARSAL_WORKERS": str(settings.workers),
            "REHEARSAL_CONCURRENCY": str(settings.concurrency),
            "RAY_ADDRESS": gcs_address,
        }
        yield Bench(sim, svc, env, tmp_path, shipped_catalog)


def _cycle(n: int, rng: random.Random, bench: Bench, estimate_usd: float) -> Books:
    # Half the cycles have room for every pair; the others stop at a cap well below what the pairs cost.
    cap = round(estimate_usd * (3.0 if n % 2 else 0.05), 6)
    first_call = len(bench.sim.calls)
    log = (bench.spec_dir / f"run-{n}.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "experiment", "run", str(_spec(bench.spec_dir / f"spec-{n}.json", cap))],
        env=bench.env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    kill_after = rng.randint(1, PAIRS // 2)
    deadline = time.monotonic() + 120
    while len(bench.sim.calls) - first_call < kill_after and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.2))
    child.send_signal(signal.SIGKILL)
    child.wait()
    log.close()
    (experiment,), _ = bench.svc.store.list_experiments(limit=1)
    time.sleep(0.5)  # the dead driver's call workers go with it
    if experiment.status in ("queued", "running"):
        experiment = core.resume_experiment(bench.svc, experiment.id)
    calls = bench.sim.calls[first_call:]
    billed, answered = _billed(calls, bench.catalog)
    pairs = PairStore(bench.svc.settings.home, experiment.id).frame()
    lost = pairs.filter(pl.col("error_type") == INTERRUPTED)
    # Only calls sent are journaled: at most the last batches handed to the workers had not left them yet.
    unsent = set(lost.get_column("request_id").to_list()) - {c.pair_id for c in calls}
    assert len(unsent) <= bench.svc.settings.workers * FanoutOptions().batch_size, f"never sent: {unsent}"
    assert max(answered.values(), default=0) <= 1, "a pair was paid for twice"
    assert pairs.get_column("request_id").n_unique() == pairs.height
    if experiment.status == "completed":
        assert pairs.height == PAIRS, "a pair that was never sent was not re-run"
    return Books(
        provider_usd=billed,
        recorded_usd=experiment.spend_usd,
        reserved_usd=float(lost.get_column("candidate_cost_usd").sum() or 0.0),
        interrupted=lost.height,
        cap_usd=cap,
        status=experiment.status,
    )


def test_kill_minus_nine_at_random_points_never_loses_or_doubles_money(bench: Bench) -> None:
    rng = random.Random(20261201)
    estimate = core.preflight_experiment(bench.svc, json.loads(_spec(bench.spec_dir / "probe.json", 1.0).read_text()))
    books = [_cycle(n, rng, bench, estimate.estimate.estimated_cost_usd) for n in range(CYCLES)]
    for n, b in enumerate(books):
        print(  # the figures, with -s
            f"cycle {n}: {b.status}, {b.interrupted} interrupted; billed ${b.provider_usd:.6f}, recorded "
            f"${b.recorded_usd:.6f} (reservations ${b.reserved_usd:.6f}), cap ${b.cap_usd:.6f}"
        )
        # Recorded = settled costs + the reservations of interrupted calls: never below what was billed but for
        # calls whose answer outran its reservation, never above it by more than those reservations.
        assert abs(b.recorded_usd - b.provider_usd) <= b.reserved_usd + 1e-9, (n, b)
        assert b.provider_usd <= b.cap_usd + 1e-9, (n, b)
        assert b.recorded_usd <= b.cap_usd + 1e-9, (n, b)
    assert any(b.interrupted for b in books), "no kill landed mid-flight: the test proved nothing"
    assert {b.status for b in books} >= {"completed", "cancelled"}
