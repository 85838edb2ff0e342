"""``/manage/v1/signals``: alerts raised by failing scheduled runs; dismiss and snooze hold across reruns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from engine.schedules import Signal, SnoozeBody
from service import schedules
from service.api._deps import Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/signals", tags=["signals"], responses=ERRORS)
SignalKey = Annotated[str, Path(description="e.g. experiment-verdict:sched_…")]


@router.get("", response_model=Page[Signal])
def list_signals(
    svc: Svc,
    scope: Scope,
    project_id: Annotated[str | None, Query(alias="projectId")] = None,
    state: Literal["open", "resolved", "all"] = "open",
) -> dict[str, Any]:
    """Signals of the key's projects (open ones by default; dismissed and snoozed ones are flagged)."""
    return page_of(schedules.list_signals(svc, project_ids=scope, project_id=project_id, state=state))


@router.post("/{signal_key}/dismiss", response_model=Data[Signal])
def dismiss(signal_key: SignalKey, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Quiet the signal until a passing run resolves it."""
    return {"data": schedules.dismiss_signal(svc, signal_key, project_ids=scope)}


@router.post("/{signal_key}/snooze", response_model=Data[Signal])
def snooze(signal_key: SignalKey, spec: SnoozeBody, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Quiet the signal until `until`."""
    return {"data": schedules.snooze_signal(svc, signal_key, spec.model_dump(), project_ids=scope)}
