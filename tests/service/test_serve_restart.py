"""``rehearsal serve`` as an operator runs it: embedded Prefect server, a run interrupted by a restart resumes,
a run whose flow-run process is killed resumes without a restart, and nothing listens beyond loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from engine.providers._sim import SimServer
from service.serve import free_port
from tests.conftest import STORE_END
from tests.listeners import beyond_loopback

PROJECT = "demo"


SIM_TTFT_MS = 150  # slow enough to stop `serve` in the middle of a run
#: The run's pairs: enough to be stopped after 40 calls and killed 20 calls into its resume, with some left.
PAIRS = 160


class Serve:
    """One ``rehearsal serve`` process."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve did not come up:\n{log.read_text()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; the run in flight is interrupted."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _lease(env: dict[str, str], path: str) -> int | None:
    """The pid of the process holding the experiment's lease (its flow-run process), if one does."""
    with sqlite3.connect(Path(env["REHEARSAL_HOME"]) / "rehearsal.db") as db:
        row = db.execute("SELECT lease FROM experiments WHERE id = ?", (path.rsplit("/", 1)[-1],)).fetchone()
    return int(row[0].rpartition(":")[2]) if row and row[0] else None


def _get(serve: Serve, key: str, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{serve.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_a_run_interrupted_by_a_restart_is_resumed_and_pays_no_pair_twice(
    env: dict[str, str], tmp_path: Path, sim: SimServer
) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--project", PROJECT, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(made.stdout)["key"]
    assert key not in made.stderr
    port, prefect_port = free_port(), free_port()
    serve = Serve(env | {"REHEARSAL_PREFECT_PORT": str(prefect_port)}, port, tmp_path / "serve-1.log")
    try:
        ui = f"http://127.0.0.1:{prefect_port}"
        assert f"Prefect UI {ui}" in serve.log.read_text()
        # The Prefect UI finds its API (it asks /ui-settings), not Prefect's default port 4200.
        assert httpx.get(f"{ui}/ui-settings", timeout=30).json()["api_url"] == f"{ui}/api"
        body = {
            "projectId": PROJECT,
            "candidatePolicy": "single",
            "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
            "windowStart": "2026-04-12T00:00:00Z",
            "windowEnd": f"{STORE_END}T00:00:00Z",
            "mode": "with_responses",
            "sample": {"size": PAIRS, "method": "random"},
            "spendCapUsd": 5,
        }
        created = httpx.post(
            f"{serve.url}/manage/v1/experiments", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        assert created.status_code == 201, created.text
        path = f"/manage/v1/experiments/{created.json()['data']['id']}"
        deadline = time.monotonic() + 120
        while len(sim.calls) < 40:
            assert time.monotonic() < deadline, "the run did not start calling"
            assert _get(serve, key, path)["status"] in ("queued", "running")
            time.sleep(0.1)
        # Mid-run: serve, its Prefect server, the flow-run process and its Ray cluster all listen on loopback.
        assert beyond_loopback(serve.proc.pid) == []
    finally:
        serve.stop()
    interrupted_at = len(sim.calls)
    assert interrupted_at < PAIRS, "the run finished before the restart"

    serve = Serve(env, port, tmp_path / "serve-2.log")
    try:
        assert "resumed" in serve.log.read_text()
        # Now kill only the flow-run process executing it: the service resumes it without a restart.
        deadline = time.monotonic() + 120
        while (holder := _lease(env, path)) is None or len(sim.calls) < interrupted_at + 20:
            assert time.monotonic() < deadline, "the resumed run did not start calling"
            time.sleep(0.1)
        os.kill(holder, signal.SIGKILL)
        killed_at = len(sim.calls)
        deadline = time.monotonic() + 180
        while (done := _get(serve, key, path))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"still {done['status']} after the restart"
            time.sleep(0.3)
    finally:
        serve.stop()
    for log in ("serve-1.log", "serve-2.log"):  # a clean stop: runner and embedded Prefect server stopped
        assert "stopping the flow runner" in (tmp_path / log).read_text()
    assert done["status"] == "completed", done["status_reason"]
    assert done["progress"] == {"done": PAIRS, "total": PAIRS}
    assert len(sim.calls) > killed_at > interrupted_at  # each resumed run made the rest
    assert any("in flight when an earlier run stopped" in note for note in done["notes"]), done["notes"]
    counts = Counter(call.pair_id for call in sim.calls)
    assert max(counts.values()) == 1  # no pair was called twice across the restart
