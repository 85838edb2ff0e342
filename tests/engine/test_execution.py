"""Leases and restart recovery: a run is executed by one live process, and never left running after a restart."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from engine.execution import recover
from engine.schema import Experiment, FiltersSpec
from engine.store import Store, new_id, this_process, utcnow


def _experiment(store: Store, status: str = "running", started_ago_s: float = 10) -> Experiment:
    now = utcnow()
    experiment = Experiment(
        id=new_id("exp"),
        name="x",
        project_id="p",
        mode="with_responses",
        status=status,  # type: ignore[arg-type]
        candidate_policy="single",
        candidate_config={"model": "gpt-4o-mini"},
        window_start=now - dt.timedelta(days=1),
        window_end=now,
        filters=FiltersSpec(),
        created_at=now - dt.timedelta(seconds=started_ago_s),
        started_at=now - dt.timedelta(seconds=started_ago_s),
    )
    return store.put_experiment(experiment)


def _dead_lease() -> str:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{this_process().rpartition(':')[0]}:{int(child.stdout)}"


def _set_lease(store: Store, run_id: str, lease: str) -> None:
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE experiments SET lease = ? WHERE id = ?", (lease, run_id))


def test_one_live_process_holds_a_run_and_an_ended_run_is_never_claimed(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    running = _experiment(store)
    assert store.claim_run("experiments", running.id)
    assert store.claim_run("experiments", running.id)  # the holder may claim again (a resumed task)
    _set_lease(store, running.id, "some-other-host:1")
    assert not store.claim_run("experiments", running.id)  # another host's lease counts as live
    _set_lease(store, running.id, _dead_lease())
    assert store.claim_run("experiments", running.id)  # a dead holder's run is taken over
    done = _experiment(store, status="completed")
    assert not store.claim_run("experiments", done.id)


def test_a_finished_run_never_goes_back_to_running(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    run = _experiment(store)
    assert store.cancel_experiment(run.id, "cancelled on request")
    store.put_experiment(run.model_copy(update={"status": "running"}))
    assert store.get_experiment(run.id).status == "cancelled"


def test_recovery_relaunches_orphans_skips_live_runs_and_fails_what_it_cannot_resume(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    orphan, live, queued = _experiment(store), _experiment(store), _experiment(store, status="queued")
    expired = _experiment(store, started_ago_s=3600)
    refused = _experiment(store)
    for run in (orphan, expired, refused):
        _set_lease(store, run.id, _dead_lease())
    _set_lease(store, live.id, this_process())
    relaunched = []

    def relaunch(table: str, run_id: str) -> None:
        if run_id == refused.id:
            raise ConnectionError("orchestrator down")
        relaunched.append((table, run_id))

    lines = recover(store, 1800, relaunch)
    assert relaunched == [("experiments", orphan.id), ("experiments", queued.id)]
    assert store.get_experiment(live.id).status == "running"
    assert f"{orphan.id}: resumed" in lines and f"{queued.id}: started" in lines
    failed = store.get_experiment(expired.id)
    assert failed.status == "failed" and "hard timeout (30 min)" in (failed.status_reason or "")
    failed = store.get_experiment(refused.id)
    assert failed.status == "failed" and "orchestrator down" in (failed.status_reason or "")


@pytest.mark.parametrize("lease", [None, ""])
def test_no_lease_is_not_live(lease: str | None) -> None:
    from engine.store import lease_is_live

    assert not lease_is_live(lease)
