"""Execute stored runs by id: what a flow run, a local CLI run and restart recovery all call.

A run is executed by at most one live process at a time: it first takes the
run's lease in the store. Any failure ends the run ``failed`` with a reason,
so a run is never left ``running`` by an error.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from engine.credentials import Credential, Credentials, load_credentials
from engine.crypto import load_cipher
from engine.errors import ConfigError, RehearsalError
from engine.experiment import check_routing_only, new_experiment, replay_into
from engine.pricing import load_catalog
from engine.runs import RunContext
from engine.schema import Experiment, ExperimentCreate, JudgeCreate, JudgeRun, Project
from engine.settings import Settings
from engine.store import RUN_TABLES, RunLease, Store, lease_is_live, utcnow

if TYPE_CHECKING:  # with-responses and judge runs bring the fan-out (Ray, openai): routing-only runs skip them
    from engine.judging import JudgePlan
    from engine.responses import Plan

log = logging.getLogger("rehearsal.runs")
ProgressFn = Callable[[int, int, float], None]
R = TypeVar("R", Experiment, JudgeRun)


def project_credentials(base: Credentials, store: Store, project_id: str, allow: list[str]) -> Credentials:
    """The credentials file plus the credentials stored for ``project_id`` through the API.

    Stored ones carry ``allow`` (``REHEARSAL_PROVIDER_ALLOW_HOSTS``): a run checks their base URL
    again when it resolves them, and calls the address that passed.
    """
    extra = {
        cred.id: Credential(
            vendor=cred.vendor,
            base_url=cred.base_url,
            rate_limit_rps=cred.rate_limit_rps,
            cost_source=cred.cost_source,
            secret=SecretStr(secret) if secret else None,
            allow_hosts=list(allow),
        )
        for cred, secret in store.credential_secrets(project_id)
    }
    return base.merged(extra) if extra else base


def context_for(settings: Settings, on_progress: ProgressFn | None = None) -> RunContext:
    """A run context over ``settings`` (store, catalog, credentials file, log store)."""
    return RunContext(
        Store(settings.db_path, load_cipher(settings.secret_key, settings.home)),
        load_catalog(settings.pricing),
        load_credentials(settings.credentials),
        settings.logs_root,
        settings,
        on_progress,
    )


def for_project(ctx: RunContext, project_id: str) -> RunContext:
    """``ctx`` with the project's stored credentials added."""
    creds = project_credentials(ctx.credentials, ctx.store, project_id, ctx.settings.provider_allow_hosts)
    return ctx if creds is ctx.credentials else replace(ctx, credentials=creds)


def admit_experiment(
    ctx: RunContext, spec: ExperimentCreate, project: Project, **fields: Any
) -> tuple[Experiment, Plan | None]:
    """Check ``spec`` fully (window read, sample drawn, credentials resolved) and store it queued.

    ``fields`` are set on the stored experiment (e.g. the schedule it belongs to).
    Bad input raises before anything is stored.
    """
    planned = None
    if spec.mode == "routing_only":
        check_routing_only(spec, store=ctx.store, catalog=ctx.catalog, logs_root=ctx.logs_root)
    else:
        from engine import responses
        from engine.similarity import check_embedder

        responses.validate(spec, project, ctx.settings)
        if spec.embedding_model is not None:
            check_embedder(spec.embedding_model, ctx.catalog)
        planned = responses.plan(spec, store=ctx.store, catalog=ctx.catalog, logs_root=ctx.logs_root)
        models = sorted(set(planned.sample.get_column("route_model").to_list()))
        credentials = project_credentials(ctx.credentials, ctx.store, project.id, ctx.settings.provider_allow_hosts)
        responses.endpoints_for(spec, models, ctx.catalog, credentials)  # unknown credential / missing key: refuse now
    experiment = new_experiment(spec, ctx.catalog).model_copy(update=fields)
    return ctx.store.put_experiment(experiment), planned


def admit_judge_run(ctx: RunContext, experiment: Experiment, spec: JudgeCreate) -> tuple[JudgeRun, JudgePlan]:
    """Check a judge run (cap, pairs to judge) and store it queued; bad input stores nothing."""
    project = ctx.store.get_project(experiment.project_id)
    from engine import judging
    from engine.runs import endpoint

    cap = judging.validate_judge(spec, project)
    # The judge's credential (given, or its vendor's default): an unknown one or a missing key refuses the run
    # before anything is stored.
    credential_id = judging.judge_credential(spec, ctx.catalog)
    try:
        credentials = project_credentials(ctx.credentials, ctx.store, project.id, ctx.settings.provider_allow_hosts)
        endpoint(credentials, credential_id)
    except ConfigError as exc:
        if spec.judge_credential_id is not None:
            raise ConfigError(exc.message, param="judgeCredentialId") from None
        raise ConfigError(
            f"judgeModel {spec.judge_model!r} is called through the default credential {credential_id!r}: "
            f"{exc.message}; or name another credential in judgeCredentialId",
            param="judgeModel",
        ) from None
    planned = judging.plan_judge(experiment, spec, ctx)
    return ctx.store.put_judge_run(judging.new_judge_run(experiment, spec, planned, cap)), planned


class RunGuard:
    """Beside a run's work, in a thread: renews its lease, and enforces a cancel and the hard timeout.

    A paid run stops on its own between batches (its ``tick`` says it still checks in); work that has no
    such checks (a replay is one Polars query) cannot. So when a run is cancelled, or passes its hard
    timeout (then it is failed with that reason), and has neither returned nor checked in for
    ``cancel_grace_s``, a process that exists for this run alone (``dedicated``: a flow run, a CLI run)
    ends itself; elsewhere (a test, a notebook) the run is only marked.
    """

    def __init__(self, store: Store, table: str, run_id: str, settings: Settings, *, dedicated: bool) -> None:
        self.store, self.table, self.run_id, self.settings, self.dedicated = store, table, run_id, settings, dedicated
        self.started = self.last_tick = time.monotonic()
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._watch, name=f"guard-{run_id}", daemon=True)

    def tick(self) -> None:
        """The work checked in (it still stops on its own)."""
        self.last_tick = time.monotonic()

    def __enter__(self) -> RunGuard:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.finished.set()
        self.thread.join(5)

    def _status(self) -> str:
        status = self.store.run_status(self.table, self.run_id)
        timeout_s = self.settings.run_timeout_s
        if status in ("queued", "running") and time.monotonic() - self.started > timeout_s:
            reason = f"hard timeout: the run passed {timeout_s / 60:g} minutes and was stopped"
            if self.store.fail_run(self.table, self.run_id, reason):
                log.warning("run %s: %s", self.run_id, reason)
            return "failed"
        return status

    def _watch(self) -> None:
        stop_since: float | None = None
        while not self.finished.wait(self.settings.heartbeat_s):
            try:
                self.store.heartbeat(self.table, self.run_id)
                status = self._status()
            except Exception:  # the store is briefly unavailable: try again next beat
                log.exception("run %s: heartbeat failed", self.run_id)
                continue
            if status not in ("cancelled", "failed"):
                continue
            stop_since = stop_since or time.monotonic()
            grace = self.settings.cancel_grace_s
            quiet = time.monotonic() - max(stop_since, self.last_tick)
            if self.dedicated and quiet > grace and not self.finished.is_set():
                sys.stderr.write(f"rehearsal: run {self.run_id} is {status}; it did not stop in {grace:g} s: exiting\n")
                sys.stderr.flush()
                os._exit(1)


def _execute(
    ctx: RunContext, table: str, run_id: str, work: Callable[[RunContext], R], current: Callable[[], R], dedicated: bool
) -> R:
    if not ctx.store.claim_run(table, run_id):
        return current()  # ended, or another live process runs it
    with RunGuard(ctx.store, table, run_id, ctx.settings, dedicated=dedicated) as guard:
        try:
            work(replace(ctx, tick=guard.tick))
        except RehearsalError as exc:
            ctx.store.fail_run(table, run_id, f"{exc.error_type}: {exc.message}")
            raise
        except Exception as exc:
            ctx.store.fail_run(table, run_id, f"internal error: {type(exc).__name__}: {exc}")
            raise
    return current()  # what the store holds: a cancel or the hard timeout may have ended it meanwhile


def run_experiment(
    ctx: RunContext, experiment_id: str, planned: Plan | None = None, *, dedicated: bool = False
) -> Experiment:
    """Run (or resume) a stored experiment to its end; an experiment that has ended is returned as it is.

    ``dedicated``: this process exists for this run (a flow run, a CLI run), so it may end itself when
    the run is cancelled or times out and the work does not stop (see ``RunGuard``).
    """
    experiment = ctx.store.get_experiment(experiment_id)
    ctx = for_project(ctx, experiment.project_id)

    def work(ctx: RunContext) -> Experiment:
        if experiment.mode == "routing_only":
            running = ctx.store.put_experiment(
                experiment.model_copy(update={"status": "running", "started_at": utcnow()})
            )
            return ctx.store.put_experiment(
                replay_into(running, store=ctx.store, catalog=ctx.catalog, logs_root=ctx.logs_root)
            )
        from engine import responses

        return responses.execute(experiment, ctx, planned)

    return _execute(ctx, "experiments", experiment_id, work, lambda: ctx.store.get_experiment(experiment_id), dedicated)


def run_judge_run(
    ctx: RunContext, run_id: str, planned: JudgePlan | None = None, *, dedicated: bool = False
) -> JudgeRun:
    """Run (or resume) a stored judge run: calls already made or sent are never made again."""
    run = ctx.store.get_judge_run(run_id)
    experiment = ctx.store.get_experiment(run.experiment_id)
    ctx = for_project(ctx, run.project_id)
    from engine import judging

    return _execute(
        ctx,
        "judge_runs",
        run_id,
        lambda ctx: judging.execute_judge(run, experiment, ctx, planned),
        lambda: ctx.store.get_judge_run(run_id),
        dedicated,
    )


def _stored(store: Store, run: RunLease) -> Experiment | JudgeRun:
    return store.get_experiment(run.run_id) if run.table == "experiments" else store.get_judge_run(run.run_id)


FlowStates = Callable[[list[str]], dict[str, str]]


def _dead(run: RunLease, settings: Settings, flow_states: dict[str, str]) -> str | None:
    """Why nothing executes ``run`` any more (``None``: something does, or may soon)."""
    if run.lease:
        if lease_is_live(run.lease, run.heartbeat_at, settings.lease_expiry_s):
            return None
        return f"the process executing it ({run.lease}) died"
    if run.flow_run_id is None:
        # Stored and not yet handed to an orchestrator (or that failed): a run is stored before it is started,
        # so only one left so for longer than a lease lasts is orphaned (at start, any is).
        created = run.created_at
        if created is not None and (utcnow() - created).total_seconds() < settings.lease_expiry_s:
            return None
        return "nothing was executing it"
    state = flow_states.get(run.flow_run_id)
    if state in ("CRASHED", "FAILED", "CANCELLED", "COMPLETED"):
        return f"its flow run {run.flow_run_id} ended {state} before it started the run"
    return None  # queued in the orchestrator, or it cannot say now


def recover(
    store: Store,
    settings: Settings,
    relaunch: Callable[[str, str], None],
    flow_states: FlowStates = lambda _: {},
    *,
    at_start: bool = False,
) -> list[str]:
    """Resume every unfinished run that nothing executes any more, or fail it with a reason.

    ``serve`` calls it at start (``at_start``: nothing of an earlier process runs, so a queued run not
    yet claimed is started again) and then every ``run_watch_s``, so a run whose process crashed is
    resumed within a minute. ``relaunch(table, run_id)`` starts a run again (it resumes from its
    checkpoint); ``flow_states(flow_run_ids)`` is the orchestrator's state of those flow runs (e.g.
    ``CRASHED``; one it cannot say is left out). A run resumed ``max_recoveries`` times, or whose hard
    timeout passed, is failed. Returns one line per run handled.
    """
    runs = [run for table in RUN_TABLES for run in store.unfinished_runs(table)]
    waiting = [run.flow_run_id for run in runs if not run.lease and run.flow_run_id]
    states = flow_states(waiting) if waiting and not at_start else {}
    lines = []
    for run in runs:
        why = _dead(run, settings, states)
        if why is None and at_start and not run.lease:
            why = "the service stopped before it started"
        if why is None:
            continue
        line = _recover_one(store, settings, run, why, relaunch)
        if line:
            lines.append(line)
    return lines


def _recover_one(
    store: Store, settings: Settings, run: RunLease, why: str, relaunch: Callable[[str, str], None]
) -> str | None:
    stored = _stored(store, run)
    started = stored.started_at or stored.created_at
    if utcnow() - started > dt.timedelta(seconds=settings.run_timeout_s):
        reason = (
            f"interrupted: {why} while it was {run.status}, and its hard timeout "
            f"({settings.run_timeout_s / 60:g} min) passed before it could resume"
        )
    elif run.recoveries >= settings.max_recoveries:
        reason = f"interrupted: {why}, after {run.recoveries} resumes already; it is not resumed again"
    else:
        if not store.release_lease(run.table, run.run_id, run.lease):
            return None  # another watcher took it first
        try:
            relaunch(run.table, run.run_id)
        except Exception as exc:  # the orchestrator is unreachable: say so on the run, do not leave it hanging
            reason = f"interrupted: {why} while it was {run.status}, and it could not be resumed: {exc}"
        else:
            return f"{run.run_id}: {'resumed' if run.status == 'running' else 'started'} ({why})"
    store.fail_run(run.table, run.run_id, reason)
    return f"{run.run_id}: failed ({reason})"
