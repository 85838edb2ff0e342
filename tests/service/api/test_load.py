"""Concurrent readers of a finished experiment's results while another run executes: no request fails.

``benchmarks/load_test.py`` runs as a second process against the served app on
a real socket; timings are printed, never asserted (shared CI machines vary).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from tests.conftest import REPO
from tests.service.api.conftest import Served, Uvicorn, body_with_responses

CLIENTS = 20
SECONDS = 8


def test_results_and_histogram_under_load_while_a_run_executes(
    served: Served, live_server: Uvicorn, finished_with_responses: dict[str, Any]
) -> None:
    body = body_with_responses()
    body["sample"] = {**body["sample"], "seed": 7}  # another draw: a new run, not the shared one
    created = served.client.post("/manage/v1/experiments", json=body, headers=served.headers())
    assert created.status_code == 201, created.text
    path = f"/manage/v1/experiments/{created.json()['data']['id']}"
    deadline = time.monotonic() + 120
    while served.client.get(path, headers=served.headers()).json()["data"]["status"] == "queued":
        assert time.monotonic() < deadline, "the run never left queued"
        time.sleep(0.1)
    status_at_start = served.client.get(path, headers=served.headers()).json()["data"]["status"]

    cmd = [sys.executable, str(REPO / "benchmarks" / "load_test.py"), "--url", live_server.url, "--key", served.key]
    cmd += ["--experiment", finished_with_responses["id"], "--clients", str(CLIENTS), "--seconds", str(SECONDS)]
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=SECONDS + 120, check=False)
    status_at_end = served.client.get(path, headers=served.headers()).json()["data"]["status"]
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    print(f"\nrun {status_at_start} at the start of the load, {status_at_end} at its end")
    for name, e in report["endpoints"].items():
        print(f"{name}: {e['requests']} requests, p50 {e['p50_ms']} ms, p95 {e['p95_ms']} ms, max {e['max_ms']} ms")
    print(f"total {report['requests']} requests, {report['requests_per_s']}/s, {report['errors']} errors")

    assert report["errors"] == 0, report["error_samples"]
    assert done.returncode == 0, done.stderr
    assert report["requests"] > 0
    assert {"results", "histogram"} <= set(report["endpoints"])
    assert served.wait(path)["status"] == "completed"
