"""``rehearsal experiment`` with responses as a user runs it: preflight, run, results, histogram, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from engine.providers._sim import SimServer
from tests.conftest import STORE_END

SPEC = {
    "name": "gpt-4o-mini quality check",
    "projectId": "demo",
    "candidatePolicy": "single",
    "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
    "windowStart": "2026-04-12T00:00:00Z",
    "windowEnd": f"{STORE_END}T00:00:00Z",
    "mode": "with_responses",
    "sample": {"size": 1000, "method": "random"},
    "spendCapUsd": 5,
}


def cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == expect, proc.stderr[-2000:]
    return proc


def spec_file(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC | changes))
    return str(path)


def test_preflight_run_results_histogram_and_judge(env: dict[str, str], tmp_path: Path) -> None:
    """One run (each takes ~20 s: Ray, the embedder) read back by the experiment and the judge commands."""
    spec = spec_file(tmp_path, sample={"size": 40, "method": "stratified", "seed": 1})
    pre = json.loads(cli(env, "experiment", "preflight", spec, "--json").stdout)
    assert pre["estimate"]["effectiveSampleSize"] == 40
    assert pre["suggestedSpendCapUsd"] == 0.05 and pre["autoCancelRatio"] == 1.5
    run = cli(env, "experiment", "run", spec, "--json")
    experiment = json.loads(run.stdout)
    assert experiment["status"] == "completed" and experiment["progress"] == {"done": 40, "total": 40}
    assert "agreement (≥0.85) over 40 scored pairs" in experiment["similarity_summary"]["headline"]
    assert "pairs" in run.stderr  # the progress bar went to stderr
    hist = json.loads(cli(env, "experiment", "histogram", experiment["id"], "--threshold", "0.5", "--json").stdout)
    assert sum(b["count"] for b in hist["buckets"]) == hist["scored_count"] == 40 and hist["threshold"] == 0.5
    rows = json.loads(
        cli(env, "experiment", "results", experiment["id"], "--sort", "similarity_asc", "--limit", "5", "--json").stdout
    )
    assert len(rows) == 5 and rows[0]["similarity"] <= rows[-1]["similarity"]
    shown = cli(env, "experiment", "results", experiment["id"], "--sort", "similarity_asc", "--limit", "2").stdout
    assert "baseline" in shown and "candidate" in shown
    bars = cli(env, "experiment", "histogram", experiment["id"]).stdout
    assert "█" in bars and "scored" in bars
    shown = cli(env, "experiment", "show", experiment["id"]).stdout
    assert "Estimate error (actual ÷ estimated):" in shown and "Suspicious usage:" in shown

    # The judge commands on the same experiment.
    pre = json.loads(
        cli(
            env,
            "judge",
            "preflight",
            experiment["id"],
            "--high",
            "5",
            "--mild",
            "5",
            "--major",
            "5",
            "--model",
            "gpt-4o-mini",
            "--json",
        ).stdout
    )
    assert pre["effectivePairCount"] == 15 and len(pre["rubricHash"]) == 64
    run = cli(
        env,
        "judge",
        "run",
        experiment["id"],
        "--spend-cap",
        "1",
        "--high",
        "5",
        "--mild",
        "5",
        "--major",
        "5",
        "--model",
        "gpt-4o-mini",
        "--order",
        "both",
        "--json",
    )
    judged = json.loads(run.stdout)
    assert (
        judged["status"] == "complete" and judged["summary"]["judged_count"] + judged["summary"]["parse_errors"] == 15
    )
    assert "position_flip_rate" in judged["summary"]
    assert json.loads(cli(env, "judge", "show", judged["id"], "--json").stdout)["id"] == judged["id"]
    judge_shown = cli(env, "judge", "show", judged["id"]).stdout
    assert "95% CI" in judge_shown and "Estimate error (actual ÷ estimated):" in judge_shown
    rows = json.loads(cli(env, "judge", "results", judged["id"], "--bucket", "high", "--json").stdout)
    assert all(r["bucket"] == "high" for r in rows)
    listed = json.loads(cli(env, "judge", "list", experiment["id"], "--json").stdout)
    assert [r["id"] for r in listed] == [judged["id"]]
    bad = cli(env, "judge", "run", experiment["id"], "--spend-cap", "25", expect=2)
    assert "judge_spend_cap_usd" in bad.stderr


def test_bad_with_responses_input_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    proc = cli(env, "experiment", "run", spec_file(tmp_path, spendCapUsd=None), expect=2)
    assert "spendCapUsd is required" in proc.stderr
    proc = cli(env, "experiment", "run", spec_file(tmp_path, sample={"size": 10**6}), expect=2)
    assert "[sample.size]" in proc.stderr or "sample.size" in proc.stderr
    proc = cli(env, "experiment", "results", "exp_nope", expect=2)
    assert "does not exist" in proc.stderr


#: Enough that the run is killed a third of the way through; each pair costs a call and an embedding.
PAIRS = 150


def test_killed_run_resumes_without_calling_any_pair_twice(env: dict[str, str], tmp_path: Path, sim: SimServer) -> None:
    spec = spec_file(tmp_path, sample={"size": PAIRS, "method": "random"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "experiment", "run", spec],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(sim.calls) < PAIRS // 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    called_before = len(sim.calls)
    (interrupted,) = json.loads(cli(env, "experiment", "list", "--json").stdout)
    assert interrupted["status"] == "running"
    resumed = json.loads(cli(env, "experiment", "resume", interrupted["id"], "--json").stdout)
    assert resumed["status"] == "completed"
    assert resumed["progress"] == {"done": PAIRS, "total": PAIRS}
    counts = Counter(call.pair_id for call in sim.calls)
    assert len(sim.calls) > called_before  # the resumed run made the rest
    assert max(counts.values()) == 1  # the simulator's own log: no pair was ever called twice
    log_lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(log_lines) == len(sim.calls) == len(counts) <= PAIRS
