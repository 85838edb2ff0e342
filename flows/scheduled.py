"""The scheduled-run flow: one fire of a scheduled experiment (thin tasks over ``engine.scheduled_runs``).

Each scheduled experiment is one deployment of this flow with a cron schedule
and its id as parameter; the fire time is the flow run's scheduled time.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from engine import execution, scheduled_runs
from engine.settings import Settings
from flows.runs import progress_logger

SCHEDULED_FLOW = "rehearsal-scheduled-experiment"


def _fire_time() -> dt.datetime:
    scheduled = flow_run.scheduled_start_time
    return dt.datetime.fromisoformat(str(scheduled)).astimezone(dt.UTC) if scheduled else dt.datetime.now(dt.UTC)


@task(name="start fire", persist_result=False)
def start_fire(scheduled_experiment_id: str, fire_time: dt.datetime) -> str:
    """Store this fire's experiment over ``[fire_time - windowHours, fire_time)``."""
    ctx = execution.context_for(Settings())
    schedule = scheduled_runs.get_schedule(ctx.store, scheduled_experiment_id)
    return scheduled_runs.start_fire(ctx, schedule, fire_time, flow_run_id=flow_run.id).id


@task(name="run fire", persist_result=False)
def run_fire(scheduled_experiment_id: str, experiment_id: str) -> dict[str, object]:
    """Replay (and judge), then verdict, signal and webhooks."""
    ctx = execution.context_for(Settings(), progress_logger(get_run_logger()))
    experiment = scheduled_runs.run_fire(ctx, scheduled_experiment_id, experiment_id, dedicated=True)
    return {"status": experiment.status, "reason": experiment.status_reason, "verdict": experiment.verdict}


@task(name="deliver webhooks", persist_result=False)
def deliver() -> int:
    """Send the deliveries due now (later retries are sent by the service's dispatcher)."""
    settings = Settings()
    store = execution.context_for(settings).store
    return len(scheduled_runs.deliver_due(store, settings.webhook_allow_hosts, settings.webhook_backoff_s))


@flow(name=SCHEDULED_FLOW, persist_result=False)
def scheduled_flow(scheduled_experiment_id: str, experiment_id: str | None = None) -> str:
    """One fire: replay the rolling window through the candidate and check the success criteria."""
    logger = get_run_logger()
    fire_time = _fire_time()
    if experiment_id is None:
        experiment_id = start_fire(scheduled_experiment_id, fire_time)
    outcome = run_fire(scheduled_experiment_id, experiment_id)
    verdict = outcome["verdict"]
    logger.info(
        "fire of %s at %s: experiment %s %s%s",
        scheduled_experiment_id,
        fire_time.isoformat(),
        experiment_id,
        outcome["status"],
        f", verdict {verdict['verdict']}" if isinstance(verdict, dict) else "",
    )
    sent = deliver()
    if sent:
        logger.info("%d webhook deliveries attempted", sent)
    return str(outcome["status"])
