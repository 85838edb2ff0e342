"""``/manage/v1/experiments/{id}/judge``: judge evals of an experiment's pairs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from engine.schema import JudgeCreate, JudgePreflight, JudgeRun, VerdictRow
from service import core
from service.api._deps import Launch, Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/experiments/{experiment_id}/judge", tags=["judge runs"], responses=ERRORS)
ExperimentId = Annotated[str, Path(description="The experiment's id (exp_…).")]
RunId = Annotated[str, Path(description="The judge run's id (jr_…).")]


def _run(svc: Svc, experiment_id: str, run_id: str, scope: list[str] | None) -> JudgeRun:
    return core.get_judge_run(svc, run_id, project_ids=scope, experiment_id=experiment_id)


@router.post("", status_code=201, response_model=Data[JudgeRun])
def create(experiment_id: ExperimentId, spec: JudgeCreate, svc: Svc, launcher: Launch, scope: Scope) -> dict[str, Any]:
    """Queue a judge run over a stratified sample of the experiment's pairs."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": core.submit_judge_run(svc, experiment_id, body, launcher, project_ids=scope)}


@router.post("/preflight", response_model=Data[JudgePreflight])
def preflight(experiment_id: ExperimentId, spec: JudgeCreate, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Effective pairs per bucket, the cost estimate and a suggested cap."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": core.preflight_judge(svc, experiment_id, body, project_ids=scope)}


@router.get("", response_model=Page[JudgeRun])
def list_runs(
    experiment_id: ExperimentId,
    svc: Svc,
    scope: Scope,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The experiment's judge runs, newest first."""
    runs, next_cursor = core.list_judge_runs(svc, experiment_id, project_ids=scope, limit=limit, cursor=cursor)
    return page_of(runs, next_cursor)


@router.get("/{judge_run_id}", response_model=Data[JudgeRun])
def get_run(experiment_id: ExperimentId, judge_run_id: RunId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """One judge run; its summary holds the verdict breakdown with Wilson 95% intervals."""
    return {"data": _run(svc, experiment_id, judge_run_id, scope)}


@router.get("/{judge_run_id}/results", response_model=Page[VerdictRow])
def results(
    experiment_id: ExperimentId,
    judge_run_id: RunId,
    svc: Svc,
    scope: Scope,
    verdict: Literal["better", "equivalent", "worse"] | None = None,
    bucket: Literal["high", "mild", "major"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Per-pair verdicts, worst first."""
    run = _run(svc, experiment_id, judge_run_id, scope)
    rows, next_cursor = core.judge_results(
        svc, run.id, verdict=verdict, bucket=bucket, limit=limit, cursor=cursor, project_ids=scope
    )
    return page_of(rows, next_cursor)


@router.post("/{judge_run_id}/cancel", response_model=Data[JudgeRun])
def cancel(
    experiment_id: ExperimentId, judge_run_id: RunId, svc: Svc, scope: Scope, launcher: Launch
) -> dict[str, Any]:
    """Stop a queued or running judge run."""
    run = _run(svc, experiment_id, judge_run_id, scope)
    return {"data": core.cancel_judge_run(svc, run.id, project_ids=scope, launcher=launcher)}
