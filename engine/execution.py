"""Execute stored runs by id: what a flow run, a local CLI run and restart recovery all call.

A run is executed by at most one live process at a time: it first takes the
run's lease in the store. Any failure ends the run ``failed`` with a reason,
so a run is never left ``running`` by an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
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
from engine.store import RUN_TABLES, Store, lease_is_live, utcnow

if TYPE_CHECKING:  # with-responses and judge runs bring the fan-out (Ray, openai): routing-only runs skip them
    from engine.judging import JudgePlan
    from engine.responses import Plan

ProgressFn = Callable[[int, int, float], None]
R = TypeVar("R", Experiment, JudgeRun)


def project_credentials(base: Credentials, store: Store, project_id: str) -> Credentials:
    """The credentials file plus the credentials stored for ``project_id`` through the API."""
    extra = {
        cred.id: Credential(
            vendor=cred.vendor,
            base_url=cred.base_url,
            rate_limit_rps=cred.rate_limit_rps,
            secret=SecretStr(secret) if secret else None,
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
    creds = project_credentials(ctx.credentials, ctx.store, project_id)
    if creds is ctx.credentials:
        return ctx
    return RunContext(ctx.store, ctx.catalog, creds, ctx.logs_root, ctx.settings, ctx.on_progress)


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
        credentials = project_credentials(ctx.credentials, ctx.store, project.id)
        responses.endpoints_for(spec, models, ctx.catalog, credentials)  # unknown credential / missing key: refuse now
    experiment = new_experiment(spec).model_copy(update=fields)
    return ctx.store.put_experiment(experiment), planned


def admit_judge_run(ctx: RunContext, experiment: Experiment, spec: JudgeCreate) -> tuple[JudgeRun, JudgePlan]:
    """Check a judge run (cap, pairs to judge) and store it queued; bad input stores nothing."""
    project = ctx.store.get_project(experiment.project_id)
    from engine import judging
    from engine.runs import endpoint

    cap = judging.validate_judge(spec, project)
    if spec.judge_credential_id is not None:  # an unknown credential or a missing key: refuse before storing
        try:
            endpoint(project_credentials(ctx.credentials, ctx.store, project.id), spec.judge_credential_id)
        except ConfigError as exc:
            raise ConfigError(exc.message, param="judgeCredentialId") from None
    planned = judging.plan_judge(experiment, spec, ctx)
    return ctx.store.put_judge_run(judging.new_judge_run(experiment, spec, planned, cap)), planned


def _failing(ctx: RunContext, table: str, run_id: str, work: Callable[[], R], current: Callable[[], R]) -> R:
    if not ctx.store.claim_run(table, run_id):
        return current()  # ended, or another live process runs it
    try:
        return work()
    except RehearsalError as exc:
        ctx.store.fail_run(table, run_id, f"{exc.error_type}: {exc.message}")
        raise
    except Exception as exc:
        ctx.store.fail_run(table, run_id, f"internal error: {type(exc).__name__}: {exc}")
        raise


def run_experiment(ctx: RunContext, experiment_id: str, planned: Plan | None = None) -> Experiment:
    """Run (or resume) a stored experiment to its end; an experiment that has ended is returned as it is."""
    experiment = ctx.store.get_experiment(experiment_id)
    ctx = for_project(ctx, experiment.project_id)

    def work() -> Experiment:
        if experiment.mode == "routing_only":
            running = ctx.store.put_experiment(
                experiment.model_copy(update={"status": "running", "started_at": utcnow()})
            )
            return ctx.store.put_experiment(
                replay_into(running, store=ctx.store, catalog=ctx.catalog, logs_root=ctx.logs_root)
            )
        from engine import responses

        return responses.execute(experiment, ctx, planned)

    return _failing(ctx, "experiments", experiment_id, work, lambda: ctx.store.get_experiment(experiment_id))


def run_judge_run(ctx: RunContext, run_id: str, planned: JudgePlan | None = None) -> JudgeRun:
    """Run (or resume) a stored judge run: calls already made or sent are never made again."""
    run = ctx.store.get_judge_run(run_id)
    experiment = ctx.store.get_experiment(run.experiment_id)
    ctx = for_project(ctx, run.project_id)
    from engine import judging

    return _failing(
        ctx,
        "judge_runs",
        run_id,
        lambda: judging.execute_judge(run, experiment, ctx, planned),
        lambda: ctx.store.get_judge_run(run_id),
    )


def recover(store: Store, run_timeout_s: float, relaunch: Callable[[str, str], None]) -> list[str]:
    """After a restart: relaunch every unfinished run nobody is executing, or fail it with a reason.

    ``relaunch(table, run_id)`` starts a run again (it resumes from its checkpoint).
    A run whose hard timeout passed while nothing executed it is failed instead.
    Returns one line per run handled.
    """
    lines = []
    now = utcnow()
    for table in RUN_TABLES:
        for run_id, status, lease in store.unfinished_runs(table):
            if lease_is_live(lease):
                continue
            run: Experiment | JudgeRun = (
                store.get_experiment(run_id) if table == "experiments" else store.get_judge_run(run_id)
            )
            started = run.started_at or run.created_at
            if now - started > dt.timedelta(seconds=run_timeout_s):
                reason = (
                    f"interrupted: the service stopped while this run was {status}, and its hard timeout "
                    f"({run_timeout_s / 60:g} min) passed before it could resume"
                )
                store.fail_run(table, run_id, reason)
                lines.append(f"{run_id}: failed ({reason})")
                continue
            try:
                relaunch(table, run_id)
            except Exception as exc:  # the orchestrator is unreachable: say so on the run, do not leave it hanging
                reason = (
                    f"interrupted: the service stopped while this run was {status} and it could not be resumed: {exc}"
                )
                store.fail_run(table, run_id, reason)
                lines.append(f"{run_id}: failed ({reason})")
                continue
            lines.append(f"{run_id}: {'resumed' if status == 'running' else 'started'}")
    return lines
