"""One fire of a scheduled experiment: replay the rolling window, chain a judge run, judge the verdict, notify.

``start_fire`` stores the fire's experiment; ``run_fire`` executes it (and the
chained judge run), computes the verdict, updates the schedule, raises or
resolves its signal and queues webhook deliveries; ``deliver_due`` sends the
deliveries whose time has come (first attempts and retries).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from engine import execution
from engine.criteria import Verdict, breaches, evaluate
from engine.errors import EmptyWindowError, NotFound, RehearsalError
from engine.experiment import new_experiment
from engine.results import PairStore
from engine.runs import RunContext
from engine.schedules import ScheduledExperiment, Signal, experiment_body, signal_key
from engine.schema import Experiment, ExperimentCreate, JudgeCreate, JudgeRun, parse_body
from engine.store import Store, new_id, utcnow
from engine.webhooks import RETRY_WINDOW_S, Delivery, WebhookEndpoint, backoff_s, check_target, event, send


def get_schedule(store: Store, schedule_id: str) -> ScheduledExperiment:
    """A stored scheduled experiment, or ``NotFound``."""
    return store.get_doc("scheduled_experiments", schedule_id, ScheduledExperiment, "scheduled experiment")


def put_schedule(store: Store, schedule: ScheduledExperiment) -> ScheduledExperiment:
    """Save a scheduled experiment."""
    store.put_doc(
        "scheduled_experiments",
        schedule.id,
        schedule.project_id,
        schedule.model_dump_json(),
        created_at=schedule.created_at.isoformat(),
    )
    return schedule


def start_fire(
    ctx: RunContext, schedule: ScheduledExperiment, fire_time: dt.datetime, *, flow_run_id: str | None = None
) -> Experiment:
    """Store the experiment of one fire (queued); a window without traffic is stored as a failed run.

    ``flow_run_id``: the fire's flow run, which executes the experiment next (the run watch then knows
    something is about to).
    """
    body = experiment_body(schedule, fire_time)
    spec: ExperimentCreate = parse_body(ExperimentCreate, body)
    fields: dict[str, Any] = {
        "scheduled_experiment_id": schedule.id,
        "scheduled_for": fire_time.astimezone(dt.UTC),
        "flow_run_id": flow_run_id,
    }
    project = ctx.store.get_project(schedule.project_id)
    try:
        experiment, _ = execution.admit_experiment(ctx, spec, project, **fields)
    except RehearsalError as exc:
        # The schedule was valid when saved; what changed since (no traffic, a removed credential…) is this
        # fire's outcome, kept on a failed run rather than lost.
        kind = "no traffic in the window" if isinstance(exc, EmptyWindowError) else exc.error_type
        failed = new_experiment(spec).model_copy(
            update={**fields, "status": "failed", "status_reason": f"{kind}: {exc.message}", "completed_at": utcnow()}
        )
        experiment = ctx.store.put_experiment(failed)
    return experiment


def _similarities(ctx: RunContext, experiment: Experiment) -> np.ndarray | None:
    if experiment.mode != "with_responses":
        return None
    frame = PairStore(ctx.settings.home, experiment.id).frame()
    return frame.get_column("similarity").cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _chain_judge(
    ctx: RunContext, schedule: ScheduledExperiment, experiment: Experiment, dedicated: bool
) -> JudgeRun | None:
    if schedule.judge_rubric is None or experiment.mode != "with_responses" or experiment.status != "completed":
        return None
    project = ctx.store.get_project(schedule.project_id)
    spec: JudgeCreate = parse_body(
        JudgeCreate,
        {
            "judgeModel": schedule.judge_model,
            "rubric": schedule.judge_rubric,
            "spendCapUsd": project.judge_spend_cap_usd,
        },
    )
    try:
        run, planned = execution.admit_judge_run(ctx, experiment, spec)
    except RehearsalError:
        return None  # e.g. no scored pairs: the judge metrics are then unavailable
    ctx.store.put_experiment(ctx.store.get_experiment(experiment.id).model_copy(update={"judge_run_id": run.id}))
    return execution.run_judge_run(ctx, run.id, planned, dedicated=dedicated)


def run_fire(ctx: RunContext, schedule_id: str, experiment_id: str, *, dedicated: bool = False) -> Experiment:
    """Execute a fire's experiment (and chained judge run), then verdict, signal and webhooks.

    ``dedicated``: the process exists for this fire (a flow run), see ``execution.RunGuard``.
    """
    experiment = ctx.store.get_experiment(experiment_id)
    if experiment.status in ("queued", "running"):
        experiment = execution.run_experiment(ctx, experiment_id, dedicated=dedicated)
    judge_run = _chain_judge(ctx, get_schedule(ctx.store, schedule_id), experiment, dedicated)
    return finish_fire(ctx, schedule_id, ctx.store.get_experiment(experiment_id), judge_run)


def finish_fire(
    ctx: RunContext, schedule_id: str, experiment: Experiment, judge_run: JudgeRun | None = None
) -> Experiment:
    """Verdict of an ended fire, stored on the run and the schedule; signal and webhooks follow."""
    schedule = get_schedule(ctx.store, schedule_id)
    verdict: Verdict | None = None
    if schedule.success_criteria is not None:
        verdict = evaluate(schedule.success_criteria, experiment, judge_run, _similarities(ctx, experiment))
        experiment = ctx.store.put_experiment(
            experiment.model_copy(update={"verdict": verdict.model_dump(mode="json")})
        )
    events: list[dict[str, Any]] = []
    state = schedule.breached
    if verdict is not None and experiment.status == "completed":
        newly, state = breaches(schedule.breached, verdict)
        events = [
            event("experiment.regression_detected", {**breach, **_run_refs(schedule, experiment)}) for breach in newly
        ]
        _update_signal(ctx.store, schedule, experiment, verdict)
    if experiment.status == "completed":
        events.insert(0, event("experiment.completed", _completed_data(schedule, experiment, verdict)))
    put_schedule(
        ctx.store,
        schedule.model_copy(
            update={
                "last_run_at": experiment.scheduled_for or experiment.created_at,
                "last_experiment_id": experiment.id,
                "last_verdict": verdict,
                "breached": state,
                "updated_at": utcnow(),
            }
        ),
    )
    for item in events:
        enqueue(ctx.store, schedule.project_id, item)
    return experiment


def _run_refs(schedule: ScheduledExperiment, experiment: Experiment) -> dict[str, Any]:
    return {
        "scheduled_experiment_id": schedule.id,
        "experiment_id": experiment.id,
        "project_id": schedule.project_id,
        "signal_key": signal_key(schedule.id),
    }


def _completed_data(schedule: ScheduledExperiment, experiment: Experiment, verdict: Verdict | None) -> dict[str, Any]:
    base, cand, deltas = experiment.baseline_summary, experiment.candidate_summary, experiment.deltas
    return {
        **_run_refs(schedule, experiment),
        "name": schedule.name,
        "window_start": experiment.window_start.isoformat(),
        "window_end": experiment.window_end.isoformat(),
        "request_count": base.request_count if base else 0,
        "baseline": base.model_dump() if base else None,
        "candidate": cand.model_dump() if cand else None,
        "deltas": deltas.model_dump() if deltas else None,
        "verdict": verdict.verdict if verdict else None,
        "severity": verdict.severity if verdict else None,
        "predicates": [p.model_dump() for p in verdict.predicates] if verdict else [],
    }


def _update_signal(store: Store, schedule: ScheduledExperiment, experiment: Experiment, verdict: Verdict) -> None:
    key = signal_key(schedule.id)
    now = utcnow()
    try:
        signal: Signal | None = store.get_doc("signals", key, Signal, "signal")
    except NotFound:
        signal = None
    if verdict.verdict == "pass":
        if signal is not None and signal.state == "open":
            signal = signal.model_copy(update={"state": "resolved", "resolved_at": now, "dismissed": False})
            store.put_doc("signals", key, schedule.project_id, signal.model_dump_json())
        return
    if verdict.verdict != "fail":
        return  # inconclusive: neither raises nor resolves
    failing = [p.metric for p in verdict.predicates if p.status == "fail"]
    message = f"{schedule.name or schedule.id}: {verdict.summary}"
    if signal is None or signal.state == "resolved":
        signal = Signal(
            key=key,
            project_id=schedule.project_id,
            scheduled_experiment_id=schedule.id,
            severity=verdict.severity or "warn",
            message=message,
            experiment_id=experiment.id,
            failing_metrics=failing,
            first_seen_at=now,
            last_seen_at=now,
        )
    else:  # still failing: update it; a dismissal or snooze holds
        signal = signal.model_copy(
            update={
                "severity": verdict.severity or "warn",
                "message": message,
                "experiment_id": experiment.id,
                "failing_metrics": failing,
                "occurrences": signal.occurrences + 1,
                "last_seen_at": now,
            }
        )
    store.put_doc("signals", key, schedule.project_id, signal.model_dump_json())


def webhooks_of(store: Store, project_id: str) -> list[WebhookEndpoint]:
    """A project's webhook endpoints."""
    return store.list_docs("webhooks", WebhookEndpoint, "project_id = ?", (project_id,))


def enqueue(store: Store, project_id: str, item: dict[str, Any]) -> list[Delivery]:
    """Queue ``item`` for every endpoint of the project subscribed to its type (sent by ``deliver_due``)."""
    now = utcnow()
    queued = []
    for hook in webhooks_of(store, project_id):
        if item["type"] not in hook.events:
            continue
        delivery = Delivery(
            id=new_id("dlv"),
            webhook_id=hook.id,
            project_id=project_id,
            event_id=item["id"],
            type=item["type"],
            next_attempt_at=now,
            payload=item,
            created_at=now,
        )
        save_delivery(store, delivery)
        queued.append(delivery)
    return queued


def save_delivery(store: Store, delivery: Delivery) -> Delivery:
    """Store a delivery and its schedule."""
    store.put_doc(
        "deliveries",
        delivery.id,
        delivery.project_id,
        delivery.model_dump_json(),
        webhook_id=delivery.webhook_id,
        status=delivery.status,
        next_attempt_at=delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        created_at=delivery.created_at.isoformat(),
    )
    return delivery


def attempt(store: Store, delivery: Delivery, allow: list[str], first_backoff_s: float = 30.0) -> Delivery:
    """One attempt at ``delivery``; reschedules it with backoff (for up to 24 h) when it fails."""
    now = utcnow()
    try:
        hook = store.get_doc("webhooks", delivery.webhook_id, WebhookEndpoint, "webhook")
        target = check_target(hook.url, allow)  # resolved once: the send connects to the address checked here
        code, error = send(target, store.webhook_secret(hook.id), delivery.payload)
    except RehearsalError as exc:
        code, error = None, exc.message
    attempts = delivery.attempts + 1
    update: dict[str, Any] = {"attempts": attempts, "last_status_code": code, "last_error": error}
    if error is None:
        update |= {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
    else:
        retry_at = now + dt.timedelta(seconds=backoff_s(attempts, first_backoff_s))
        if (retry_at - delivery.created_at).total_seconds() > RETRY_WINDOW_S:
            update |= {"status": "failed", "next_attempt_at": None}
        else:
            update |= {"status": "pending", "next_attempt_at": retry_at}
    return save_delivery(store, delivery.model_copy(update=update))


#: How long a sender holds a delivery it claimed before another may take it over.
SEND_HOLD_S = 60.0


def deliver_due(
    store: Store, allow: list[str], first_backoff_s: float = 30.0, now: dt.datetime | None = None
) -> list[Delivery]:
    """Attempt every delivery whose time has come (restart-safe: the schedule is in the store).

    Each is claimed first, so two senders (a flow run and the service's dispatcher) never send it twice.
    """
    at = now or utcnow()
    due = store.list_docs(
        "deliveries",
        Delivery,
        "status IN ('pending', 'sending') AND next_attempt_at <= ?",
        (at.isoformat(),),
        order="next_attempt_at",
    )
    hold = (at + dt.timedelta(seconds=SEND_HOLD_S)).isoformat()
    sent = []
    for delivery in due:
        if store.claim_delivery(delivery.id, at.isoformat(), hold):
            sent.append(attempt(store, delivery, allow, first_backoff_s))
    return sent
