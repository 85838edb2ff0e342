"""Leases and restart recovery: a run is executed by one live process, and never left running after a restart."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.execution import RunGuard, recover
from engine.schema import Experiment, FiltersSpec
from engine.settings import Settings
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

    lines = recover(store, Settings(home=tmp_path, run_timeout_s=1800), relaunch, at_start=True)
    assert relaunched == [("experiments", orphan.id), ("experiments", queued.id)]
    assert store.get_experiment(live.id).status == "running"
    assert any(line.startswith(f"{orphan.id}: resumed (the process executing it") for line in lines)
    assert any(line.startswith(f"{queued.id}: started") for line in lines)
    failed = store.get_experiment(expired.id)
    assert failed.status == "failed" and "hard timeout (30 min)" in (failed.status_reason or "")
    failed = store.get_experiment(refused.id)
    assert failed.status == "failed" and "orchestrator down" in (failed.status_reason or "")


@pytest.mark.parametrize("lease", [None, ""])
def test_no_lease_is_not_live(lease: str | None) -> None:
    from engine.store import lease_is_live

    assert not lease_is_live(lease)


def _flow_run(store: Store, run: Experiment, flow_run_id: str) -> None:
    store.set_flow_run("experiments", run.id, flow_run_id)


def test_the_watch_resumes_a_crashed_run_leaves_queued_ones_and_gives_up_after_max_recoveries(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    settings = Settings(home=tmp_path, max_recoveries=2)
    crashed, pending, never_started = (
        _experiment(store),
        _experiment(store, status="queued"),
        _experiment(store, status="queued"),
    )
    _set_lease(store, crashed.id, _dead_lease())
    _flow_run(store, pending, "fr-pending")
    _flow_run(store, never_started, "fr-crashed")
    states = {"fr-pending": "PENDING", "fr-crashed": "CRASHED"}
    relaunched: list[str] = []
    lines = recover(store, settings, lambda _t, run_id: relaunched.append(run_id), lambda _ids: states)
    assert sorted(relaunched) == sorted([crashed.id, never_started.id])  # the pending one waits for its runner
    assert any(crashed.id in line and "died" in line for line in lines)
    # The relaunched run's new process dies too, twice: then it is failed, not resumed forever.
    for _ in range(2):
        _set_lease(store, crashed.id, _dead_lease())
        recover(store, settings, lambda _t, run_id: relaunched.append(run_id), lambda _ids: states)
    failed = store.get_experiment(crashed.id)
    assert failed.status == "failed" and "after 2 resumes" in (failed.status_reason or ""), failed.status_reason
    assert relaunched.count(crashed.id) == 2


def test_the_guard_fails_a_run_past_its_hard_timeout(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    run = _experiment(store)
    assert store.claim_run("experiments", run.id)
    settings = Settings(home=tmp_path, run_timeout_s=0.3, heartbeat_s=0.05)
    with RunGuard(store, "experiments", run.id, settings, dedicated=False):
        time.sleep(0.8)  # work that never checks in (a replay is one Polars query)
    failed = store.get_experiment(run.id)
    assert failed.status == "failed" and "hard timeout" in (failed.status_reason or "")


GUARDED = """
import sys, time
from engine.execution import RunGuard
from engine.settings import Settings
from engine.store import Store
store = Store(sys.argv[1])
assert store.claim_run("experiments", sys.argv[2])
print("claimed", flush=True)
with RunGuard(store, "experiments", sys.argv[2], Settings(cancel_grace_s=0.5, heartbeat_s=0.1), dedicated=True):
    time.sleep(120)  # work that ignores the cancel (and SIGTERM handlers never run while Polars computes)
"""


def test_a_cancelled_run_that_does_not_stop_ends_its_process_after_the_grace(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    run = _experiment(store)
    child = subprocess.Popen(
        [sys.executable, "-c", GUARDED, str(store.path), run.id], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"claimed"
    assert store.cancel_experiment(run.id, "cancelled on request")
    started = time.monotonic()
    assert child.wait(30) == 1
    assert time.monotonic() - started < 10
    assert b"cancelled" in child.stderr.read() if child.stderr else False
    assert store.get_experiment(run.id).status == "cancelled"


def test_the_watch_gives_a_run_being_handed_over_the_time_of_a_lease(tmp_path: Path) -> None:
    # Stored, not yet handed to Prefect (a REST create, a scheduled fire): another process is starting it.
    store = Store(tmp_path / "db.sqlite")
    just_stored = _experiment(store, status="queued")
    relaunched: list[str] = []
    assert recover(store, Settings(home=tmp_path), lambda _t, run_id: relaunched.append(run_id)) == []
    # Left so for longer than a lease lasts, it is orphaned and started.
    lines = recover(store, Settings(home=tmp_path, lease_expiry_s=1e-6), lambda _t, run_id: relaunched.append(run_id))
    assert relaunched == [just_stored.id] and "nothing was executing it" in lines[0]
