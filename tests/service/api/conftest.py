"""A served rehearsal for API tests: the real Prefect test server, a flow runner, SQLite, the loopback provider.

One for the whole package: the Prefect test server takes ~10 s to start. Package-scoped rather than
session-scoped, so the server, the runner and uvicorn stop (and their background CPU and the
``REHEARSAL_*`` environment go) once the API tests are done, before the rest of the suite runs.
Flow runs execute in subprocesses of the runner, so the store's settings go through the environment.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from engine.logs import write_partitioned
from engine.providers._sim import Divergence, SimConfig, SimProfile, SimServer
from engine.settings import Settings
from engine.synth import generate
from service import core
from service.api import create_app
from service.serve import free_port
from tests.conftest import STORE_END

#: The guides' project; its store holds about 12 rows a day, so a 7-day window has ~81 rows.
PROJECT = "proj_abc"
OTHER = "proj_other"
#: A project whose traffic runs up to now, for scheduled experiments (their windows end at the fire time).
LIVE = "proj_live"
SIM = SimConfig(models={"gpt-4o-mini": SimProfile(divergence=Divergence(close=0.6, mild=0.3, far=0.1))}, time_scale=0)


@dataclass
class Served:
    """What API tests talk to."""

    home: Path
    svc: core.Services
    client: TestClient
    key: str  # proj_abc (admin of it)
    other_key: str  # proj_other (admin of it)
    admin_key: str  # every project
    live_key: str  # proj_live (scheduled experiments; admin of it)
    sim: SimServer
    member_key: str  # proj_abc, runs only (no caps, keys or credentials)

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        """Authorization (this env's proj_abc key unless another is given) plus ``extra``."""
        return {"Authorization": f"Bearer {key or self.key}", **extra}

    def session(self, key: str | None = None) -> str:
        """A dashboard session id for ``key`` (proj_abc's unless another is given), as signing in opens one."""
        from service.web._auth import open_session

        found = self.svc.store.authenticate(key or self.key)
        assert found is not None, "not a live key"
        return open_session(self.svc.store, found)

    def wait(self, path: str, key: str | None = None, timeout_s: float = 180) -> dict[str, Any]:
        """Poll ``path`` until its object has ended; returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            data: dict[str, Any] = self.client.get(path, headers=self.headers(key)).json()["data"]
            if data["status"] not in ("queued", "running"):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} still {data['status']} after {timeout_s} s")
            time.sleep(0.25)


def _store(logs: Path) -> None:
    for project, seed in ((PROJECT, 11), (OTHER, 12)):
        write_partitioned(generate_rows(project, seed, days=10, rows_per_day=12, end=STORE_END), logs, project)
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    write_partitioned(generate_rows(LIVE, 13, days=3, rows_per_day=240, end=tomorrow), logs, LIVE)


def generate_rows(project: str, seed: int, *, days: int, rows_per_day: int, end: dt.date) -> Any:
    from engine.pricing import load_catalog
    from engine.settings import CONFIGS_DIR

    catalog = load_catalog(CONFIGS_DIR / "pricing.yaml")
    return generate(catalog, project_id=project, days=days, rows_per_day=rows_per_day, seed=seed, end=end)


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from prefect.testing.utilities import prefect_test_harness

    from flows.launch import PrefectLauncher, RunnerThread

    home = tmp_path_factory.mktemp("served") / "home"
    logs = home / "logs"
    _store(logs)
    with SimServer(SIM) as sim, prefect_test_harness(server_startup_timeout=120):
        credentials = home / "credentials.yaml"
        credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
        env = {
            "REHEARSAL_HOME": str(home),
            "REHEARSAL_LOGS": str(logs),
            "REHEARSAL_CREDENTIALS": str(credentials),
            "REHEARSAL_RETRY_BACKOFF_S": "0",
            "REHEARSAL_WORKERS": "1",
            "REHEARSAL_CONCURRENCY": "16",
            "REHEARSAL_WEBHOOK_ALLOW_HOSTS": '["127.0.0.1"]',
            "REHEARSAL_PROVIDER_ALLOW_HOSTS": '["127.0.0.1"]',  # credentials stored through the API may use the sim
            "REHEARSAL_WEBHOOK_BACKOFF_S": "0.5",
            "REHEARSAL_WEBHOOK_DISPATCH_S": "0.25",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the runner's flow-run processes read their settings from here
        runner = RunnerThread(poll_seconds=0.5).start()
        try:
            svc = core.open_services(Settings(), logs=str(logs), credentials=credentials)
            for project in (PROJECT, OTHER, LIVE):
                core.create_project(svc, project)
            key, other_key, admin_key, live_key, member_key = (
                svc.store.create_api_key([PROJECT], role="admin").key,
                svc.store.create_api_key([OTHER], role="admin").key,
                svc.store.create_api_key([], all_projects=True).key,
                svc.store.create_api_key([LIVE], role="admin").key,
                svc.store.create_api_key([PROJECT]).key,
            )
            app = create_app(svc, PrefectLauncher())
            with TestClient(app, raise_server_exceptions=False) as client:
                yield Served(home, svc, client, key, other_key, admin_key, live_key, sim, member_key)
        finally:
            runner.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@dataclass
class Uvicorn:
    """The same app behind a real uvicorn on loopback."""

    url: str
    server: uvicorn.Server


@pytest.fixture(scope="package")
def live_server(served: Served) -> Iterator[Uvicorn]:
    """The served app on a real socket (for other processes: the CLI, a load generator)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(served.client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield Uvicorn(f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(10)


def body_routing_only(**extra: Any) -> dict[str, Any]:
    """The guide's routing-only body."""
    return {
        "name": "switch to gpt-4o-mini",
        "projectId": PROJECT,
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "windowStart": "2026-04-10T00:00:00Z",
        "windowEnd": "2026-04-17T00:00:00Z",
        **extra,
    }


def body_with_responses(**extra: Any) -> dict[str, Any]:
    """The guide's with-responses body."""
    return body_routing_only(
        name="gpt-4o-mini quality check",
        mode="with_responses",
        sample={"size": 1000, "method": "random"},
        spendCapUsd=0.05,
        **extra,
    )


@pytest.fixture(scope="package")
def finished_with_responses(served: Served) -> dict[str, Any]:
    """One completed with-responses experiment of proj_abc (shared by read-only tests)."""
    created = served.client.post("/manage/v1/experiments", json=body_with_responses(), headers=served.headers())
    assert created.status_code == 201, created.text
    return served.wait(f"/manage/v1/experiments/{created.json()['data']['id']}")


@pytest.fixture(scope="package")
def finished_judge_run(served: Served, finished_with_responses: dict[str, Any]) -> dict[str, Any]:
    """One completed judge run (2 pairs a bucket) of the shared experiment, for tests that only read it."""
    experiment_id = finished_with_responses["id"]
    created = served.client.post(
        f"/manage/v1/experiments/{experiment_id}/judge",
        json={"stratification": {"high": 2, "mild": 2, "major": 2}, "spendCapUsd": 1},
        headers=served.headers(),
    )
    assert created.status_code == 201, created.text
    return served.wait(f"/manage/v1/experiments/{experiment_id}/judge/{created.json()['data']['id']}")


WaitFn = Callable[[str], dict[str, Any]]
