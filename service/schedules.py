"""Service functions for scheduled experiments, signals and webhooks (shared by REST, CLI and MCP)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine import responses, scheduled_runs
from engine.errors import ConfigError, NotFound, Unavailable
from engine.execution import project_credentials
from engine.experiment import check_candidate
from engine.schedules import (
    ScheduledExperiment,
    ScheduledExperimentCreate,
    ScheduledExperimentUpdate,
    Signal,
    SnoozeBody,
    experiment_body,
    next_fires,
    projection,
)
from engine.schema import Experiment, ExperimentCreate, Project, parse_body
from engine.store import new_id, utcnow
from engine.webhooks import CreatedWebhook, Delivery, WebhookCreate, WebhookEndpoint, check_target, new_secret
from service.core import Scheduler, Services, get_project, start_run


def _orchestrator(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:
        raise Unavailable(f"the Prefect server refused or could not be reached ({type(exc).__name__}: {exc})") from exc


def _check_runnable(svc: Services, schedule: ScheduledExperiment, project: Project) -> None:
    """The rules a fire will meet, checked now (the window itself is only read when a fire happens)."""
    spec: ExperimentCreate = parse_body(ExperimentCreate, experiment_body(schedule, utcnow()))
    policy = check_candidate(spec, store=svc.store, catalog=svc.catalog)
    if schedule.mode == "with_responses":
        responses.validate(spec, project, svc.settings)
        # Every model the candidate may call needs a credential that resolves (and a key, if it reads one).
        credentials = project_credentials(svc.credentials, svc.store, project.id, svc.settings.provider_allow_hosts)
        responses.endpoints_for(spec, sorted(policy.models()), svc.catalog, credentials)


def _fire(svc: Services, scheduler: Scheduler, schedule: ScheduledExperiment) -> Experiment:
    """One fire now: the experiment is stored at once, and executed by a flow run of the schedule's deployment."""
    assert schedule.deployment_id is not None
    ctx = svc.run_context()
    experiment = scheduled_runs.start_fire(ctx, schedule, utcnow())
    if experiment.status != "queued":  # e.g. no traffic in the window: the fire ends here, with its reason
        return scheduled_runs.finish_fire(ctx, schedule.id, experiment)
    scheduled_runs.put_schedule(
        svc.store,
        scheduled_runs.get_schedule(svc.store, schedule.id).model_copy(update={"last_experiment_id": experiment.id}),
    )
    deployment_id = schedule.deployment_id
    start_run(svc, "experiments", experiment.id, lambda: scheduler.run_now(deployment_id, experiment.id))
    return svc.store.get_experiment(experiment.id)


def _project_filter(
    svc: Services, project_ids: list[str] | None, project_id: str | None
) -> tuple[str, tuple[str, ...]]:
    """The SQL filter of the documents a caller may list (narrowed to ``project_id`` when given)."""
    if project_id is not None:
        get_project(svc, project_id, project_ids=project_ids)
        project_ids = [project_id]
    if project_ids is None:
        return "", ()
    return f"project_id IN ({','.join('?' * len(project_ids))})", tuple(project_ids)


def _stored(svc: Services, schedule_id: str, project_ids: list[str] | None) -> ScheduledExperiment:
    schedule = scheduled_runs.get_schedule(svc.store, schedule_id)
    if project_ids is not None and schedule.project_id not in project_ids:
        raise NotFound(f"scheduled experiment {schedule_id!r} does not exist", param="id")
    return schedule


def _live(schedule: ScheduledExperiment, scheduler: Scheduler) -> ScheduledExperiment:
    """The stored schedule with Prefect's cron and pause state, the next fire and the cost projection."""
    state = None if schedule.deployment_id is None else _orchestrator(scheduler.state, schedule.deployment_id)
    update: dict[str, Any] = {"status": "paused", "next_run_at": None}
    if state is not None:
        cron, paused = state
        update["cron_expression"] = cron or schedule.cron_expression
        update["status"] = "paused" if paused else "active"
        if not paused and cron:
            update["next_run_at"] = next_fires(cron, utcnow())[0]
    return projection(schedule.model_copy(update=update))


def create_schedule(
    svc: Services, body: Any, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """Validate and save a scheduled experiment, create its deployment, and fire it once at once."""
    spec: ScheduledExperimentCreate = parse_body(ScheduledExperimentCreate, body)
    project = get_project(svc, spec.project_id, project_ids=project_ids)
    now = utcnow()
    schedule = ScheduledExperiment(
        id=new_id("sched"),
        **spec.model_dump(exclude={"name"}),
        name=spec.name or f"{spec.candidate_policy} on a cron",
        created_at=now,
        updated_at=now,
    )
    _check_runnable(svc, schedule, project)
    scheduled_runs.put_schedule(svc.store, schedule)
    try:
        deployment_id = _orchestrator(scheduler.create, schedule)
    except Unavailable:
        svc.store.delete_doc("scheduled_experiments", schedule.id)
        raise
    schedule = scheduled_runs.put_schedule(svc.store, schedule.model_copy(update={"deployment_id": deployment_id}))
    _fire(svc, scheduler, schedule)
    return _live(scheduled_runs.get_schedule(svc.store, schedule.id), scheduler)


def get_schedule(
    svc: Services, schedule_id: str, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """One scheduled experiment, with its live cron, pause state and next fire."""
    return _live(_stored(svc, schedule_id, project_ids), scheduler)


def list_schedules(
    svc: Services,
    scheduler: Scheduler,
    *,
    project_ids: list[str] | None = None,
    project_id: str | None = None,
    status: str | None = None,
) -> list[ScheduledExperiment]:
    """Scheduled experiments in scope (optionally of one project, ``active`` or ``paused``), newest first."""
    where, args = _project_filter(svc, project_ids, project_id)
    stored = svc.store.list_docs("scheduled_experiments", ScheduledExperiment, where, args, order="created_at DESC")
    schedules = [_live(s, scheduler) for s in stored]
    return [s for s in schedules if status is None or s.status == status]


def update_schedule(
    svc: Services, schedule_id: str, body: Any, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """Change cron, window, criteria, rubric, … (only the fields sent); the cron goes to Prefect."""
    spec: ScheduledExperimentUpdate = parse_body(ScheduledExperimentUpdate, body)
    schedule = _stored(svc, schedule_id, project_ids)
    changes = spec.model_dump(exclude_unset=True)
    if not changes:
        raise ConfigError("nothing to update: send at least one field", param=None)
    updated = ScheduledExperiment.model_validate(schedule.model_dump() | changes | {"updated_at": utcnow()})
    if updated.judge_rubric is not None and updated.mode != "with_responses":
        raise ConfigError("judgeRubric needs mode with_responses", param="judgeRubric")
    _check_runnable(svc, updated, svc.store.get_project(updated.project_id))
    if "cron_expression" in changes and updated.deployment_id:
        _orchestrator(scheduler.set_cron, updated.deployment_id, updated.cron_expression)
    scheduled_runs.put_schedule(svc.store, updated)
    return _live(updated, scheduler)


def delete_schedule(
    svc: Services, schedule_id: str, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """Remove the schedule and its deployment; its past runs stay."""
    schedule = _stored(svc, schedule_id, project_ids)
    if schedule.deployment_id:
        _orchestrator(scheduler.delete, schedule.deployment_id)
    svc.store.delete_doc("scheduled_experiments", schedule.id)
    for status in ("queued", "running"):  # its fires in flight end with it
        unfinished, _ = svc.store.list_experiments(project_ids=[schedule.project_id], status=status, limit=1000)
        for experiment in unfinished:
            if experiment.scheduled_experiment_id == schedule.id:
                svc.store.cancel_experiment(experiment.id, f"its scheduled experiment {schedule.id} was deleted")
    return schedule.model_copy(update={"status": "deleted", "next_run_at": None})


def _set_paused(
    svc: Services, schedule_id: str, scheduler: Scheduler, project_ids: list[str] | None, paused: bool
) -> ScheduledExperiment:
    schedule = _stored(svc, schedule_id, project_ids)
    if schedule.deployment_id:
        _orchestrator(scheduler.pause if paused else scheduler.resume, schedule.deployment_id)
    return _live(schedule, scheduler)


def pause_schedule(
    svc: Services, schedule_id: str, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """Skip future fires (history is kept)."""
    return _set_paused(svc, schedule_id, scheduler, project_ids, paused=True)


def resume_schedule(
    svc: Services, schedule_id: str, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> ScheduledExperiment:
    """Fire on the cron again."""
    return _set_paused(svc, schedule_id, scheduler, project_ids, paused=False)


def run_schedule_now(
    svc: Services, schedule_id: str, scheduler: Scheduler, *, project_ids: list[str] | None = None
) -> Experiment:
    """Fire once now, without touching the cron; returns the fire's experiment."""
    schedule = _stored(svc, schedule_id, project_ids)
    if schedule.deployment_id is None:
        raise ConfigError(f"scheduled experiment {schedule_id!r} has no deployment", param="id")
    return _fire(svc, scheduler, schedule)


def schedule_runs(
    svc: Services, schedule_id: str, *, project_ids: list[str] | None = None, limit: int = 20
) -> list[Experiment]:
    """The schedule's past runs, newest first (with their verdicts)."""
    schedule = _stored(svc, schedule_id, project_ids)
    runs, _ = svc.store.list_experiments(project_ids=[schedule.project_id], limit=1000)
    return [r for r in runs if r.scheduled_experiment_id == schedule.id][:limit]


# signals ----------------------------------------------------------------------------
def list_signals(
    svc: Services, *, project_ids: list[str] | None = None, project_id: str | None = None, state: str = "open"
) -> list[Signal]:
    """Signals in scope: ``open`` (default; dismissed and snoozed ones included, flagged), ``resolved`` or ``all``."""
    if state not in ("open", "resolved", "all"):
        raise ConfigError("state must be open, resolved or all", param="state")
    where, args = _project_filter(svc, project_ids, project_id)
    signals = svc.store.list_docs("signals", Signal, where, args)
    return [s for s in signals if state == "all" or s.state == state]


def _signal(svc: Services, key: str, project_ids: list[str] | None) -> Signal:
    missing = NotFound(f"signal {key!r} does not exist", param="signal_key")
    try:
        signal = svc.store.get_doc("signals", key, Signal, "signal")
    except NotFound:
        raise missing from None
    if project_ids is not None and signal.project_id not in project_ids:
        raise missing
    return signal


def dismiss_signal(svc: Services, key: str, *, project_ids: list[str] | None = None) -> Signal:
    """Quiet a signal until a passing run resolves it (later failing runs keep it dismissed)."""
    signal = _signal(svc, key, project_ids).model_copy(update={"dismissed": True})
    svc.store.put_doc("signals", key, signal.project_id, signal.model_dump_json())
    return signal


def snooze_signal(svc: Services, key: str, body: Any, *, project_ids: list[str] | None = None) -> Signal:
    """Quiet a signal until a time (failing runs meanwhile keep it snoozed)."""
    spec: SnoozeBody = parse_body(SnoozeBody, body)
    if spec.until <= utcnow():
        raise ConfigError("until must be in the future", param="until")
    signal = _signal(svc, key, project_ids).model_copy(update={"snoozed_until": spec.until})
    svc.store.put_doc("signals", key, signal.project_id, signal.model_dump_json())
    return signal


# webhooks -----------------------------------------------------------------------------
def create_webhook(svc: Services, body: Any, *, project_ids: list[str] | None = None) -> CreatedWebhook:
    """An endpoint for a project's events, with a signing secret shown this once."""
    spec: WebhookCreate = parse_body(WebhookCreate, body)
    get_project(svc, spec.project_id, project_ids=project_ids)
    check_target(spec.url, svc.settings.webhook_allow_hosts)
    hook = WebhookEndpoint(
        id=new_id("wh"), project_id=spec.project_id, url=spec.url, events=sorted(set(spec.events)), created_at=utcnow()
    )
    secret = new_secret()
    svc.store.put_doc("webhooks", hook.id, hook.project_id, hook.model_dump_json(), secret=secret)
    return CreatedWebhook(**hook.model_dump(), secret=secret)


def _webhook(svc: Services, webhook_id: str, project_ids: list[str] | None) -> WebhookEndpoint:
    hook = svc.store.get_doc("webhooks", webhook_id, WebhookEndpoint, "webhook")
    if project_ids is not None and hook.project_id not in project_ids:
        raise NotFound(f"webhook {webhook_id!r} does not exist", param="id")
    return hook


def list_webhooks(
    svc: Services, *, project_ids: list[str] | None = None, project_id: str | None = None
) -> list[WebhookEndpoint]:
    """Endpoints in scope (never their secrets)."""
    where, args = _project_filter(svc, project_ids, project_id)
    return svc.store.list_docs("webhooks", WebhookEndpoint, where, args)


def delete_webhook(svc: Services, webhook_id: str, *, project_ids: list[str] | None = None) -> WebhookEndpoint:
    """Remove an endpoint (its delivery log stays)."""
    hook = _webhook(svc, webhook_id, project_ids)
    svc.store.delete_doc("webhooks", hook.id)
    return hook


def list_deliveries(
    svc: Services, webhook_id: str, *, project_ids: list[str] | None = None, limit: int = 50
) -> list[Delivery]:
    """An endpoint's delivery log, newest first."""
    _webhook(svc, webhook_id, project_ids)
    return svc.store.list_docs("deliveries", Delivery, "webhook_id = ?", (webhook_id,), order="created_at DESC")[:limit]


def replay_delivery(
    svc: Services, webhook_id: str, delivery_id: str, *, project_ids: list[str] | None = None
) -> Delivery:
    """Send a past delivery's event again (same event id, so receivers can de-duplicate), now."""
    _webhook(svc, webhook_id, project_ids)
    past = svc.store.get_doc("deliveries", delivery_id, Delivery, "delivery")
    if past.webhook_id != webhook_id:
        raise NotFound(f"webhook {webhook_id!r} has no delivery {delivery_id!r}", param="delivery_id")
    now = utcnow()
    again = past.model_copy(
        update={
            "id": new_id("dlv"),
            "status": "pending",
            "attempts": 0,
            "last_status_code": None,
            "last_error": None,
            "next_attempt_at": now,
            "created_at": now,
            "delivered_at": None,
        }
    )
    scheduled_runs.save_delivery(svc.store, again)
    hold = (now + dt.timedelta(seconds=scheduled_runs.SEND_HOLD_S)).isoformat()
    if not svc.store.claim_delivery(again.id, now.isoformat(), hold):  # the dispatcher took it: it sends it
        return again
    return scheduled_runs.attempt(svc.store, again, svc.settings.webhook_allow_hosts, svc.settings.webhook_backoff_s)


def deliver_due(svc: Services, now: dt.datetime | None = None) -> list[Delivery]:
    """Send every delivery whose (re)try time has come."""
    return scheduled_runs.deliver_due(svc.store, svc.settings.webhook_allow_hosts, svc.settings.webhook_backoff_s, now)
