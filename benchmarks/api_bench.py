"""Benchmark the REST API from the client's side: results pages, the histogram, and experiment runs.

Setup (not timed), in a temporary directory:

* a completed with-responses experiment of ``--pairs`` pairs: its rows are
  synthetic values for every ``PAIR_SCHEMA`` column (~4% candidate errors,
  ~15% unscored, texts of a few hundred characters) written with the engine's
  own ``PairStore.write_final``, and its row (completed, with progress,
  summaries and the similarity summary) stored with ``Store.put_experiment``;
* a small log store (``engine.synth.generate`` + ``write_partitioned``) for
  routing-only runs, a project and a management key;
* a Prefect server on loopback (``service.serve.EmbeddedPrefect``) and the
  service itself as ``rehearsal serve`` in a subprocess: ``create_app`` under
  uvicorn, a ``PrefectLauncher`` and a ``RunnerThread``, exactly as deployed.

What is measured, over one keep-alive ``httpx`` connection, after a warm-up
(the first, cold results request is reported on its own: it reads the Parquet
file into the service's pair cache), ``--requests`` times each, round-robin:

* (a) ``results p1``: ``GET …/results?sort=similarity_asc&candidate_status=ok&min_similarity=0.2&limit=50``
  and ``results p2``: the same with the first page's ``next_cursor``;
* (b) ``histogram``: ``GET …/similarity-histogram?threshold=0.85``;
* (c) references: ``GET /healthz`` (no key, no store) and an authenticated
  ``GET /manage/v1/experiments/{id}`` (key check + one SQLite row).

Then each endpoint alone ``--requests`` times, for the server process's CPU
time per request (``/proc``): under concurrency the server is CPU-bound, so
that, not the single-client latency, sets the throughput.

Target: p95 < 50 ms for (a) and (b).

* (d) ``--runs`` routing-only experiments POSTed one after the other: POST
  latency, time to the first observed ``running`` and to ``completed``
  (polling GET every 50 ms), split with the Prefect flow run's and the
  experiment's own timestamps. Reference: the same replay run in-process with
  ``service.core.create_experiment`` (the local path, warm).
* (e) with ``--load-seconds`` > 0: ``benchmarks/load_test.py`` as a second
  process (``--load-clients`` clients) with the service idle, then again as
  soon as a with-responses experiment of ``--load-sample`` pairs is running in
  the service (against a loopback simulated provider, similarity on the local
  embedder); the run is cancelled after the load and its flow run waited for.
  The server process's and the load generator's CPU use are reported with it.
* Where the time of (a) and (b) goes: the service-layer steps timed in this
  process on the same files (key check, experiment row, cached frame,
  filter + sort + slice, rows to dicts, response model + JSON).

Run from the repository root::

    .venv/bin/python benchmarks/api_bench.py [--pairs 50000] [--requests 300] [--runs 5] [--load-seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx
import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from engine.logs import write_partitioned
from engine.providers._sim import Divergence, SimConfig, SimProfile, SimServer
from engine.results import PAIR_SCHEMA, PairStore
from engine.schema import Deltas, ExperimentCreate, Progress, Summary
from engine.settings import Settings
from engine.similarity import histogram
from engine.synth import generate
from service import core
from service.serve import OFFLINE_ENV, EmbeddedPrefect, free_port

REPO = Path(__file__).resolve().parent.parent
console = Console(width=150)
PROJECT = "bench"
END = dt.date(2026, 6, 1)
LOG_DAYS = 7
TARGET_P95_MS = 50.0
POLL_S = 0.05
RESULTS_QUERY: dict[str, Any] = {"sort": "similarity_asc", "candidate_status": "ok", "min_similarity": 0.2, "limit": 50}
BASELINES = ["gpt-4o", "claude-3-5-sonnet", "gpt-4.1"]
ERROR_TYPES = ["rate_limited", "timeout", "server_error", "malformed_response"]
#: Words the synthetic texts are made of.
VOCABULARY = (
    "the a model answer request latency cost token route policy user account invoice refund order shipping "
    "delivery password reset billing plan upgrade support ticket summary translate code python function error "
    "please thanks customer product feature price discount weekly monthly report data table query result chart "
    "email draft meeting schedule calendar reminder travel flight hotel booking recipe ingredients steps"
)


# --- data ---------------------------------------------------------------------------------------------------------


def _texts(rng: np.random.Generator, n: int, pool: list[str], lo: int, hi: int) -> list[str]:
    """``n`` texts of ``lo``..``hi`` sentences drawn from ``pool`` (a few hundred characters each)."""
    counts = rng.integers(lo, hi + 1, size=n)
    picks = rng.integers(0, len(pool), size=int(counts.sum()))
    out, at = [], 0
    for c in counts.tolist():
        out.append(" ".join(pool[i] for i in picks[at : at + c].tolist()))
        at += c
    return out


def pair_frame(n: int, seed: int = 7) -> pl.DataFrame:
    """``n`` synthetic pairs with realistic values for every ``PAIR_SCHEMA`` column."""
    rng = np.random.default_rng(seed)
    pool = [
        " ".join(rng.choice(VOCABULARY.split(), size=int(rng.integers(8, 20)))).capitalize() + "."
        for _ in range(2000)  # sentences of 50-130 characters
    ]
    start = dt.datetime.combine(END - dt.timedelta(days=LOG_DAYS), dt.time(), tzinfo=dt.UTC)
    seconds = np.sort(rng.uniform(0, LOG_DAYS * 86_400, size=n))
    error = rng.random(n) < 0.04
    empty = ~error & (rng.random(n) < 0.115)  # scored as nothing: an empty answer
    baseline_model = rng.choice(BASELINES, size=n, p=[0.6, 0.25, 0.15])
    input_tokens = (rng.lognormal(6.0, 0.8, size=n) + 20).astype(np.int64)
    output_tokens = (rng.lognormal(5.0, 0.7, size=n) + 5).astype(np.int64)
    baseline_cost = input_tokens * 2.5e-6 + output_tokens * 1.0e-5
    candidate_cost = np.where(error, 0.0, input_tokens * 1.5e-7 + output_tokens * 6.0e-7)
    attempts = np.where(error, 4, rng.choice([1, 1, 1, 1, 1, 1, 1, 1, 2, 3], size=n))
    similarity = np.clip(rng.beta(6.0, 1.6, size=n), 0, 1)
    prompts = _texts(rng, n, pool, 2, 4)
    baseline_texts = _texts(rng, n, pool, 3, 6)
    candidate_texts = _texts(rng, n, pool, 3, 6)
    return (
        pl.DataFrame(
            {
                "request_id": [f"req_{seed:02d}{i:08d}" for i in range(n)],
                "timestamp": pl.Series([start + dt.timedelta(seconds=s) for s in seconds.tolist()]),
                "baseline_model": baseline_model,
                "candidate_model": ["gpt-4o-mini"] * n,
                "baseline_cost_usd": baseline_cost,
                "candidate_cost_usd": candidate_cost,
                "cost_delta_usd": candidate_cost - baseline_cost,
                "baseline_latency_ms": rng.lognormal(np.log(1500), 0.5, size=n),
                "candidate_latency_ms": np.where(error, 60_000.0, rng.lognormal(np.log(900), 0.5, size=n)),
                "candidate_status": np.where(error, "error", "ok"),
                "error_type": [str(rng.choice(ERROR_TYPES)) if e else None for e in error.tolist()],
                "candidate_status_code": np.where(error, 500, 200),
                "candidate_error_message": ["The server had an error." if e else None for e in error.tolist()],
                "candidate_input_tokens": np.where(error, 0, input_tokens),
                "candidate_output_tokens": np.where(error, 0, output_tokens),
                "candidate_reported_cost_usd": [None] * n,
                "attempts": attempts,
                "request_json": [
                    json.dumps({"model": m, "messages": [{"role": "user", "content": p}]})
                    for m, p in zip(baseline_model.tolist(), prompts, strict=True)
                ],
                "baseline_text": baseline_texts,
                "candidate_text": [
                    None if e else ("" if z else t)
                    for e, z, t in zip(error.tolist(), empty.tolist(), candidate_texts, strict=True)
                ],
                "similarity": np.where(error | empty, np.nan, similarity),
            },
        )
        .with_columns(pl.col("similarity").fill_nan(None), pl.col("timestamp").dt.cast_time_unit("us"))
        .cast(dict(PAIR_SCHEMA))  # type: ignore[arg-type]
    )


def _summary(frame: pl.DataFrame, side: str) -> Summary:
    cost = frame.get_column(f"{side}_cost_usd")
    latency = frame.get_column(f"{side}_latency_ms")
    errors = (frame.get_column("candidate_status") == "error").sum() / frame.height if side == "candidate" else 0.0
    models = frame.get_column(f"{side}_model").value_counts(normalize=True)
    return Summary(
        request_count=frame.height,
        cost_usd=float(cost.sum()),
        cost_per_request_usd=float(cost.sum()) / max(frame.height, 1),
        latency_p50_ms=float(latency.quantile(0.5) or 0),
        latency_p95_ms=float(latency.quantile(0.95) or 0),
        error_rate=float(errors or 0),
        input_tokens=int(frame.get_column("candidate_input_tokens").sum()),
        output_tokens=int(frame.get_column("candidate_output_tokens").sum()),
        route_distribution={f"{m}:openai": float(s) for m, s in models.iter_rows()},
    )


def completed_with_responses(svc: core.Services, pairs: int) -> str:
    """Write ``pairs`` pair rows and the completed experiment that owns them; its id."""
    from engine.experiment import new_experiment

    spec = ExperimentCreate.model_validate(
        {
            "name": "bench: gpt-4o-mini quality check",
            "projectId": PROJECT,
            "candidatePolicy": "single",
            "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
            "windowStart": f"{END - dt.timedelta(days=LOG_DAYS)}T00:00:00Z",
            "windowEnd": f"{END}T00:00:00Z",
            "mode": "with_responses",
            "sample": {"size": pairs, "method": "random"},
            "spendCapUsd": 500,
        }
    )
    experiment = new_experiment(spec)
    frame = pair_frame(pairs)
    PairStore(svc.settings.home, experiment.id).write_final(frame)
    hist = histogram(frame.get_column("similarity").fill_null(np.nan).to_numpy())
    baseline, candidate = _summary(frame, "baseline"), _summary(frame, "candidate")
    done = experiment.model_copy(
        update={
            "status": "completed",
            "progress": Progress(done=pairs, total=pairs),
            "spend_usd": candidate.cost_usd,
            "baseline_summary": baseline,
            "candidate_summary": candidate,
            "deltas": Deltas(
                cost_delta_usd=candidate.cost_usd - baseline.cost_usd,
                cost_delta_pct=(candidate.cost_usd / baseline.cost_usd - 1) * 100,
                latency_p50_delta_pct=(candidate.latency_p50_ms / baseline.latency_p50_ms - 1) * 100,
                latency_p95_delta_pct=(candidate.latency_p95_ms / baseline.latency_p95_ms - 1) * 100,
                error_rate_delta_pct=None,
            ),
            "embedding_model": "all-MiniLM-L6-v2",
            "similarity_summary": hist.summary(),
            "started_at": experiment.created_at,
            "completed_at": experiment.created_at + dt.timedelta(minutes=12),
        }
    )
    svc.store.put_experiment(done)
    return experiment.id


def routing_body(name: str) -> dict[str, Any]:
    """A routing-only experiment over the whole generated log store."""
    return {
        "name": name,
        "projectId": PROJECT,
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "windowStart": f"{END - dt.timedelta(days=LOG_DAYS)}T00:00:00Z",
        "windowEnd": f"{END}T00:00:00Z",
    }


# --- the served service ---------------------------------------------------------------------------------------------


class Served:
    """``rehearsal serve`` in a subprocess, pointed at an embedded Prefect server this bench started."""

    def __init__(self, home: Path, logs: Path, credentials: Path, prefect_api: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "serve.log"
        env = {
            **os.environ,
            **OFFLINE_ENV,
            "PREFECT_API_URL": prefect_api,
            "REHEARSAL_HOME": str(home),
            "REHEARSAL_LOGS": str(logs),
            "REHEARSAL_CREDENTIALS": str(credentials),
            "REHEARSAL_RETRY_BACKOFF_S": "0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 180) -> float:
        """Seconds until ``/healthz`` answers."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"rehearsal serve exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"rehearsal serve did not answer:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Ctrl-C, as a user would: uvicorn ends, then the flow runner."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --- measurements ---------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation)."""
    return float(np.percentile(np.asarray(values), q))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_reads(url: str, key: str, experiment_id: str, requests: int, warmup: int, pid: int) -> dict[str, Any]:
    """Latencies (seconds) of the read endpoints, round-robin over one keep-alive connection.

    Then each endpoint alone ``requests`` times, for the server process's CPU time per request.
    """
    base = f"/manage/v1/experiments/{experiment_id}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        started = time.perf_counter()
        first = client.get(f"{base}/results", params=RESULTS_QUERY)
        cold = time.perf_counter() - started
        first.raise_for_status()
        cursor = first.json()["next_cursor"]
        calls: dict[str, Callable[[], httpx.Response]] = {
            "results p1": lambda: client.get(f"{base}/results", params=RESULTS_QUERY),
            "results p2": lambda: client.get(f"{base}/results", params={**RESULTS_QUERY, "cursor": cursor}),
            "histogram": lambda: client.get(f"{base}/similarity-histogram", params={"threshold": 0.85}),
            "healthz": lambda: client.get("/healthz"),
            "get experiment": lambda: client.get(base),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        sizes: dict[str, int] = {}
        for i in range(warmup + requests):
            for name, call in calls.items():
                t0 = time.perf_counter()
                response = call()
                elapsed = time.perf_counter() - t0
                response.raise_for_status()
                sizes[name] = len(response.content)
                if i >= warmup:
                    times[name].append(elapsed)
        cpu = {}
        for name, call in calls.items():
            before = cpu_seconds(pid)
            for _ in range(requests):
                call()
            cpu[name] = (cpu_seconds(pid) - before) / requests
    page = first.json()["data"]
    assert len(page) == 50 and all(r["candidate_status"] == "ok" and r["similarity"] >= 0.2 for r in page)
    return {"cold": cold, "times": times, "sizes": sizes, "cpu": cpu}


def poll_run(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST one experiment and poll it to its end; client-side times (s) and the final object."""
    t0 = time.time()
    created = client.post("/manage/v1/experiments", json=body)
    posted = time.time()
    created.raise_for_status()
    experiment_id = created.json()["data"]["id"]
    running = None
    while True:
        data = client.get(f"/manage/v1/experiments/{experiment_id}").json()["data"]
        now = time.time()
        if data["status"] == "running" and running is None:
            running = now - t0
        if data["status"] not in ("queued", "running"):
            break
        if now - t0 > 300:
            raise TimeoutError(f"{experiment_id} still {data['status']} after 300 s")
        time.sleep(POLL_S)
    if data["status"] != "completed":
        raise RuntimeError(f"{experiment_id} ended {data['status']}: {data['status_reason']}")
    return {"t0": t0, "post": posted - t0, "running": running, "completed": now - t0, "data": data}


def _ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def flow_run_times(prefect_api: str, flow_run_id: str) -> dict[str, float | None]:
    """The flow run's created time and when it first entered Pending (runner took it) and Running (epoch s)."""
    flow_run = httpx.get(f"{prefect_api}/flow_runs/{flow_run_id}", timeout=10).json()
    states = httpx.get(f"{prefect_api}/flow_run_states/", params={"flow_run_id": flow_run_id}, timeout=10).json()
    first: dict[str, float | None] = {"PENDING": None, "RUNNING": None}
    for state in sorted(states, key=lambda st: st["timestamp"]):
        if state["type"] in first and first[state["type"]] is None:
            first[state["type"]] = _ts(state["timestamp"])
    return {"created": _ts(flow_run["created"]), "pending": first["PENDING"], "running": first["RUNNING"]}


def measure_runs(url: str, key: str, runs: int, prefect_api: str) -> list[dict[str, Any]]:
    """``runs`` routing-only experiments, one after the other, with the Prefect and store timestamps."""
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for i in range(runs):
            run = poll_run(client, routing_body(f"bench run {i}"))
            data = run.pop("data")
            run["flow"] = flow_run_times(prefect_api, data["flow_run_id"])
            run["started_at"] = _ts(data["started_at"])
            run["completed_at"] = _ts(data["completed_at"])
            run["rows"] = data["progress"]["total"]
            out.append(run)
    return out


def local_runs(svc: core.Services, runs: int) -> list[float]:
    """Seconds of the same replay run in-process (``core.create_experiment``), after one warm-up."""
    core.create_experiment(svc, routing_body("local warm-up"))
    out = []
    for i in range(runs):
        started = time.perf_counter()
        done = core.create_experiment(svc, routing_body(f"local {i}"))
        out.append(time.perf_counter() - started)
        assert done.status == "completed", done.status_reason
    return out


def run_load(url: str, key: str, experiment_id: str, clients: int, seconds: float, pid: int) -> dict[str, Any]:
    """``benchmarks/load_test.py`` as a second process; its JSON report plus the CPU the server and it used."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "load_test.py"), "--url", url, "--key", key]
    cmd += ["--experiment", experiment_id, "--clients", str(clients), "--seconds", str(seconds), "--json"]
    server_before, children_before, started = (
        cpu_seconds(pid),
        resource.getrusage(resource.RUSAGE_CHILDREN),
        time.time(),
    )
    loadavg = os.getloadavg()[0]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    wall = time.time() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not done.stdout.strip():
        raise RuntimeError(f"load_test.py printed nothing (rc {done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["server_cpu"] = (cpu_seconds(pid) - server_before) / wall
    used = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    report["generator_cpu"] = used / wall
    report["loadavg"] = loadavg
    return report


def load_under_run(
    url: str, key: str, experiment_id: str, clients: int, seconds: float, pairs: int, prefect_api: str, pid: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The load test while a with-responses experiment runs in the service; the report and the run.

    The run is cancelled after the load, and its flow-run process is waited for (so nothing is left behind).
    """
    body = {
        **routing_body("bench: with responses under load"),
        "mode": "with_responses",
        "sample": {"size": pairs, "method": "random", "seed": 3},
        "spendCapUsd": 50,
    }
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        created = client.post("/manage/v1/experiments", json=body)
        created.raise_for_status()
        path = f"/manage/v1/experiments/{created.json()['data']['id']}"
        deadline = time.monotonic() + 120
        while client.get(path).json()["data"]["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(POLL_S)
        before = client.get(path).json()["data"]
        report = run_load(url, key, experiment_id, clients, seconds, pid)
        after = client.get(path).json()["data"]
        if after["status"] in ("queued", "running"):
            client.post(f"{path}/cancel")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        flow_run = httpx.get(f"{prefect_api}/flow_runs/{after['flow_run_id']}", timeout=10).json()
        if flow_run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            break
        time.sleep(0.5)
    return report, {"before": before, "after": after}


def breakdown(svc: core.Services, key: str, experiment_id: str, repeat: int = 50) -> list[tuple[str, float]]:
    """Median seconds of the service-layer steps behind (a) and (b), in this process, cache warm."""
    from pydantic import TypeAdapter

    from engine.results import ROW_COLUMNS, query_pairs
    from engine.schema import PairRow
    from engine.similarity import Histogram
    from service.api._models import Data, Page, page_of

    experiment = core.get_experiment(svc, experiment_id)
    frame = core._pairs(svc, experiment)  # fills the cache
    page, cursor = query_pairs(frame, **RESULTS_QUERY)
    rows = page.select(ROW_COLUMNS).to_dicts()
    page_model: TypeAdapter[Any] = TypeAdapter(Page[PairRow])
    hist = core.experiment_histogram(svc, experiment_id)
    hist_model: TypeAdapter[Any] = TypeAdapter(Data[Histogram])

    def respond(adapter: TypeAdapter[Any], content: dict[str, Any]) -> bytes:
        # What FastAPI does with a response_model: validate, dump to JSON-able, render.
        return json.dumps(adapter.dump_python(adapter.validate_python(content), mode="json")).encode()

    steps: list[tuple[str, Callable[[], object]]] = [
        ("key check (Store.authenticate)", lambda: svc.store.authenticate(key)),
        ("experiment row (core.get_experiment)", lambda: core.get_experiment(svc, experiment_id)),
        ("cached pairs (core._pairs, warm)", lambda: core._pairs(svc, experiment)),
        ("filter + sort + slice (query_pairs)", lambda: query_pairs(frame, **RESULTS_QUERY)),
        ("50 rows to dicts", lambda: page.select(ROW_COLUMNS).to_dicts()),
        ("response model + JSON (results page)", lambda: respond(page_model, page_of(rows, cursor))),
        ("core.experiment_results (all of it)", lambda: core.experiment_results(svc, experiment_id, **RESULTS_QUERY)),
        ("core.experiment_histogram (all of it)", lambda: core.experiment_histogram(svc, experiment_id)),
        ("response model + JSON (histogram)", lambda: respond(hist_model, {"data": hist})),
        ("Parquet read, cold (PairStore.frame)", lambda: PairStore(svc.settings.home, experiment_id).frame()),
    ]
    out = []
    for name, step in steps:
        n = 5 if name.startswith("Parquet") else repeat
        step()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out.append((name, statistics.median(times)))
    return out


# --- report -----------------------------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def print_reads(reads: dict[str, Any], pairs: int) -> None:
    times = reads["times"]
    ref_health = statistics.median(times["healthz"])
    ref_get = statistics.median(times["get experiment"])
    n = len(times["healthz"])
    table = Table(title=f"(a)-(c) read latency over {pairs:,} pairs, {n} requests each, one keep-alive connection")
    columns = ("endpoint", "bytes", "p50 ms", "p95 ms", "max ms", "p50 x healthz", "p50 x get exp", "server CPU ms")
    for col in (*columns, "target"):
        table.add_column(col, justify="right")
    for name, values in times.items():
        p95 = pct(values, 95)
        verdict = ""
        if name in ("results p1", "results p2", "histogram"):
            verdict = f"{'PASS' if p95 * 1000 < TARGET_P95_MS else 'MISS'} (p95 < {TARGET_P95_MS:g} ms)"
        table.add_row(
            name,
            f"{reads['sizes'][name]:,}",
            ms(pct(values, 50)),
            ms(p95),
            ms(max(values)),
            f"{pct(values, 50) / ref_health:.1f}",
            f"{pct(values, 50) / ref_get:.1f}",
            ms(reads["cpu"][name]),
            verdict,
        )
    console.print(table)
    console.print(f"cold first results request (Parquet read into the pair cache): {ms(reads['cold'])} ms")


def print_runs(runs: list[dict[str, Any]], local: list[float]) -> None:
    ref = statistics.median(local)
    table = Table(title=f"(d) {len(runs)} routing-only runs over {runs[0]['rows']:,} log rows, POSTed one at a time")
    for col in ("client-side, from POST sent", "p50 s", "p95 s", "x local"):
        table.add_column(col, justify="right")

    def row(name: str, values: list[float | None]) -> None:
        seen = [v for v in values if v is not None]
        if not seen:
            table.add_row(name, "not seen", "", "")
            return
        note = f" ({len(seen)}/{len(values)} seen)" if len(seen) < len(values) else ""
        table.add_row(name + note, f"{pct(seen, 50):.3f}", f"{pct(seen, 95):.3f}", f"{pct(seen, 50) / ref:.1f}")

    row("POST answered (queued)", [r["post"] for r in runs])
    row("first GET showing running", [r["running"] for r in runs])
    row("first GET showing completed", [r["completed"] for r in runs])
    table.add_row("reference: core.create_experiment in-process", f"{ref:.3f}", f"{pct(local, 95):.3f}", "1.0")
    console.print(table)

    split = Table(title="(d) where the time to completed goes (p50 s; Prefect and store timestamps)")
    for col in ("segment", "p50 s", "share"):
        split.add_column(col, justify="right")

    def seg(a: Callable[[dict[str, Any]], float | None], b: Callable[[dict[str, Any]], float | None]) -> list[float]:
        return [bv - av for r in runs if (av := a(r)) is not None and (bv := b(r)) is not None]

    total = pct([r["completed"] for r in runs], 50)
    segments = [
        ("POST sent -> flow run created", seg(lambda r: r["t0"], lambda r: r["flow"]["created"])),
        (
            "flow run created -> Pending (runner poll)",
            seg(lambda r: r["flow"]["created"], lambda r: r["flow"]["pending"]),
        ),
        (
            "Pending -> Running (flow-run process start, imports)",
            seg(lambda r: r["flow"]["pending"], lambda r: r["flow"]["running"]),
        ),
        ("Running -> experiment started (task, lease)", seg(lambda r: r["flow"]["running"], lambda r: r["started_at"])),
        ("experiment started -> completed (the replay)", seg(lambda r: r["started_at"], lambda r: r["completed_at"])),
        (
            "completed -> seen by the client (poll)",
            seg(lambda r: r["completed_at"], lambda r: r["t0"] + r["completed"]),
        ),
    ]
    for name, values in segments:
        if values:
            split.add_row(name, f"{pct(values, 50):.3f}", f"{pct(values, 50) / total:.0%}")
    console.print(split)


def print_load(reports: list[tuple[str, dict[str, Any]]]) -> None:
    for title, report in reports:
        table = Table(
            title=f"(e) load_test.py, {report['clients']} clients x {report['seconds']:.0f} s, {title}: "
            f"{report['requests']:,} requests, {report['requests_per_s']:,.0f}/s, {report['errors']} errors; "
            f"server process CPU {report['server_cpu']:.0%}, load generator CPU {report['generator_cpu']:.0%} "
            f"(of {os.cpu_count()} CPUs), load average {report['loadavg']:.1f} at start"
        )
        for col in ("endpoint", "requests", "p50 ms", "p95 ms", "max ms"):
            table.add_column(col, justify="right")
        for name, e in report["endpoints"].items():
            table.add_row(name, f"{e['requests']:,}", str(e["p50_ms"]), str(e["p95_ms"]), str(e["max_ms"]))
        console.print(table)
        for sample in report["error_samples"]:
            console.print(f"  [red]{sample}[/red]")


def print_breakdown(steps: list[tuple[str, float]], reads: dict[str, Any]) -> None:
    table = Table(title="where (a) and (b) spend their time: service-layer steps in-process (median)")
    for col in ("step", "ms", "x results p1 server CPU", "x histogram server CPU"):
        table.add_column(col, justify="right")
    p1, hist = reads["cpu"]["results p1"], reads["cpu"]["histogram"]
    for name, seconds in steps:
        table.add_row(name, f"{seconds * 1000:.2f}", f"{seconds / p1:.2f}", f"{seconds / hist:.2f}")
    console.print(table)


def main() -> None:
    """Parse arguments, set up, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50_000, help="pairs of the completed with-responses experiment")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per read endpoint (>= 200)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests per read endpoint first")
    parser.add_argument("--runs", type=int, default=5, help="routing-only experiments to POST and follow")
    parser.add_argument("--log-rows", type=int, default=20_000, help="rows of the log store the runs replay")
    parser.add_argument("--load-seconds", type=float, default=20, help="load test length per phase (0: skip)")
    parser.add_argument("--load-clients", type=int, default=50, help="load test clients")
    parser.add_argument("--load-sample", type=int, default=1000, help="pairs of the with-responses run under load")
    args = parser.parse_args()
    if args.requests < 200:
        parser.error("--requests must be at least 200")
    console.print(
        f"[dim]{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; setting up {args.pairs:,} pairs…[/dim]"
    )
    profiles = {"gpt-4o-mini": SimProfile(ttft_ms=150, output_tokens_per_s=2000, divergence=Divergence())}
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimConfig(models=profiles, time_scale=1)) as sim:
        home, logs, credentials = Path(tmp) / "home", Path(tmp) / "logs", Path(tmp) / "credentials.yaml"
        credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
        svc = core.open_services(Settings(home=home, retry_backoff_s=0), logs=str(logs), credentials=credentials)
        started = time.perf_counter()
        frame = generate(
            svc.catalog, project_id=PROJECT, days=LOG_DAYS, rows_per_day=args.log_rows // LOG_DAYS, seed=5, end=END
        )
        write_partitioned(frame, logs, PROJECT)
        core.create_project(svc, PROJECT)
        key = svc.store.create_api_key([PROJECT], name="bench").key
        experiment_id = completed_with_responses(svc, args.pairs)
        size = (PairStore(home, experiment_id).final.stat().st_size) / 1e6
        console.print(
            f"[dim]data ready in {time.perf_counter() - started:.1f} s ({size:.1f} MB of pairs); "
            "starting Prefect and rehearsal serve…[/dim]"
        )
        prefect = EmbeddedPrefect(Path(tmp) / "prefect").start()
        served = Served(home, logs, credentials, prefect.api_url)
        try:
            ready = served.wait_ready()
            console.print(f"[dim]service up in {ready:.1f} s at {served.url}; measuring reads…[/dim]")
            pid = served.process.pid
            reads = measure_reads(served.url, key, experiment_id, args.requests, args.warmup, pid)
            console.print("[dim]measuring experiment runs…[/dim]")
            runs = measure_runs(served.url, key, args.runs, prefect.api_url)
            loads: list[tuple[str, dict[str, Any]]] = []
            under: dict[str, Any] | None = None
            if args.load_seconds > 0:
                console.print(f"[dim]load test, service idle ({args.load_seconds:g} s)…[/dim]")
                loads.append(
                    (
                        "service idle",
                        run_load(served.url, key, experiment_id, args.load_clients, args.load_seconds, pid),
                    )
                )
                console.print(f"[dim]load test during a with-responses run of {args.load_sample:,} pairs…[/dim]")
                report, under = load_under_run(
                    served.url,
                    key,
                    experiment_id,
                    args.load_clients,
                    args.load_seconds,
                    args.load_sample,
                    prefect.api_url,
                    pid,
                )
                loads.append(("during a with-responses run", report))
        finally:
            served.stop()
            prefect.stop()
        console.print("[dim]in-process reference and breakdown…[/dim]")
        local = local_runs(svc, args.runs)
        steps = breakdown(svc, key, experiment_id)
    print_reads(reads, args.pairs)
    print_breakdown(steps, reads)
    print_runs(runs, local)
    if loads:
        print_load(loads)
    if under is not None:
        before, after = under["before"], under["after"]
        console.print(
            f"the with-responses run ({after['progress']['total'] or '?'} pairs) was {before['status']} when the "
            f"load started and {after['status']} ({after['progress']['done']:,} pairs done) when it ended; "
            "it was cancelled then"
        )


if __name__ == "__main__":
    main()
