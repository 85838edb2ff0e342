"""``/manage/v1/scheduled_experiments``: experiments on a cron (Prefect deployments) with verdicts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from engine.schedules import ScheduledExperiment, ScheduledExperimentCreate, ScheduledExperimentUpdate
from engine.schema import Experiment
from service import schedules
from service.api._deps import Schedule, Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/scheduled_experiments", tags=["scheduled experiments"], responses=ERRORS)
ScheduleId = Annotated[str, Path(description="The scheduled experiment's id (sched_…).")]


@router.post("", status_code=201, response_model=Data[ScheduledExperiment])
def create(spec: ScheduledExperimentCreate, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """Save a schedule as a Prefect deployment with its cron, and fire it once at once (`last_experiment_id`)."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": schedules.create_schedule(svc, body, scheduler, project_ids=scope)}


@router.get("", response_model=Page[ScheduledExperiment])
def list_schedules(
    svc: Svc,
    scheduler: Schedule,
    scope: Scope,
    project_id: Annotated[str | None, Query(alias="projectId")] = None,
    status: Literal["active", "paused"] | None = None,
) -> dict[str, Any]:
    """Scheduled experiments, newest first; cron and pause state as Prefect has them."""
    return page_of(schedules.list_schedules(svc, scheduler, project_ids=scope, project_id=project_id, status=status))


@router.get("/{schedule_id}", response_model=Data[ScheduledExperiment])
def get(schedule_id: ScheduleId, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """One schedule with `next_run_at`, `last_run_at`, `last_experiment_id` and the last verdict."""
    return {"data": schedules.get_schedule(svc, schedule_id, scheduler, project_ids=scope)}


@router.patch("/{schedule_id}", response_model=Data[ScheduledExperiment])
def update(
    schedule_id: ScheduleId, spec: ScheduledExperimentUpdate, svc: Svc, scheduler: Schedule, scope: Scope
) -> dict[str, Any]:
    """Change the cron, window, success criteria, rubric, … (only the fields sent)."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": schedules.update_schedule(svc, schedule_id, body, scheduler, project_ids=scope)}


@router.delete("/{schedule_id}", response_model=Data[ScheduledExperiment])
def delete(schedule_id: ScheduleId, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """Delete the schedule and its deployment; past runs stay."""
    return {"data": schedules.delete_schedule(svc, schedule_id, scheduler, project_ids=scope)}


@router.post("/{schedule_id}/pause", response_model=Data[ScheduledExperiment])
def pause(schedule_id: ScheduleId, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """Skip future fires (history is kept)."""
    return {"data": schedules.pause_schedule(svc, schedule_id, scheduler, project_ids=scope)}


@router.post("/{schedule_id}/resume", response_model=Data[ScheduledExperiment])
def resume(schedule_id: ScheduleId, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """Fire on the cron again."""
    return {"data": schedules.resume_schedule(svc, schedule_id, scheduler, project_ids=scope)}


@router.post("/{schedule_id}/run_now", status_code=201, response_model=Data[Experiment])
def run_now(schedule_id: ScheduleId, svc: Svc, scheduler: Schedule, scope: Scope) -> dict[str, Any]:
    """Fire once now without touching the cron; answers the fire's experiment."""
    return {"data": schedules.run_schedule_now(svc, schedule_id, scheduler, project_ids=scope)}


@router.get("/{schedule_id}/runs", response_model=Page[Experiment])
def runs(
    schedule_id: ScheduleId, svc: Svc, scope: Scope, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    """The schedule's past runs with their verdicts, newest first."""
    return page_of(schedules.schedule_runs(svc, schedule_id, project_ids=scope, limit=limit))
