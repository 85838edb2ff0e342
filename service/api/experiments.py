"""``/manage/v1/experiments``: create (queued, run as a flow run), preflight, fetch, list, results, cancel, promote."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from engine.results import SORTS
from engine.schema import Experiment, ExperimentCreate, PairDetail, PairRow, Preflight, Status
from engine.similarity import Histogram
from service import core
from service.api._deps import Launch, Scope, Svc
from service.api._models import ERRORS, Data, Page, Promotion, page_of

router = APIRouter(prefix="/manage/v1/experiments", tags=["experiments"], responses=ERRORS)
ExperimentId = Annotated[str, Path(description="The experiment's id (exp_…).")]
Sort = Literal[
    "similarity_asc", "similarity_desc", "cost_delta_desc", "cost_delta_asc", "timestamp_desc", "timestamp_asc"
]
assert set(Sort.__args__) == set(SORTS)  # type: ignore[attr-defined]


@router.post("", status_code=201, response_model=Data[Experiment])
def create_experiment(spec: ExperimentCreate, svc: Svc, launcher: Launch, scope: Scope) -> dict[str, Any]:
    """Validate and queue an experiment; it runs as a Prefect flow run. Poll it until it has ended."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": core.submit_experiment(svc, body, launcher, project_ids=scope)}


@router.post("/preflight", response_model=Data[Preflight])
def preflight(spec: ExperimentCreate, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Estimate a with-responses run: effective sample, cost, and a suggested spend cap."""
    body = spec.model_dump(exclude_unset=True)
    return {"data": core.preflight_experiment(svc, body, project_ids=scope)}


@router.get("", response_model=Page[Experiment])
def list_experiments(
    svc: Svc,
    scope: Scope,
    project_id: Annotated[str | None, Query(alias="projectId")] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Experiments, newest first."""
    items, next_cursor = core.list_experiments(
        svc, project_ids=scope, project_id=project_id, status=status, limit=limit, cursor=cursor
    )
    return page_of(items, next_cursor)


@router.get("/{experiment_id}", response_model=Data[Experiment])
def get_experiment(experiment_id: ExperimentId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """One experiment: status, progress, spend, summaries and deltas."""
    return {"data": core.get_experiment(svc, experiment_id, project_ids=scope)}


@router.get("/{experiment_id}/results", response_model=Page[PairRow])
def results(
    experiment_id: ExperimentId,
    svc: Svc,
    scope: Scope,
    sort: Sort = "timestamp_desc",
    candidate_status: Literal["ok", "error", "any"] = "any",
    min_similarity: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_similarity: Annotated[float | None, Query(ge=0, le=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Per-pair rows of a with-responses experiment; any similarity filter excludes unscored rows."""
    rows, next_cursor = core.experiment_results(
        svc,
        experiment_id,
        project_ids=scope,
        sort=sort,
        candidate_status=candidate_status,
        min_similarity=min_similarity,
        max_similarity=max_similarity,
        limit=limit,
        cursor=cursor,
    )
    return page_of(rows, next_cursor)


@router.get("/{experiment_id}/results/{request_id}", response_model=Data[PairDetail])
def pair(experiment_id: ExperimentId, request_id: str, svc: Svc, scope: Scope) -> dict[str, Any]:
    """One pair with the baseline's and the candidate's answers."""
    return {"data": core.experiment_pair(svc, experiment_id, request_id, project_ids=scope)}


@router.get("/{experiment_id}/similarity-histogram", response_model=Data[Histogram])
def similarity_histogram(
    experiment_id: ExperimentId,
    svc: Svc,
    scope: Scope,
    threshold: Annotated[float, Query(ge=0, le=1)] = 0.85,
) -> dict[str, Any]:
    """Ten fixed buckets over [0, 1], mean similarity, agreement at ``threshold`` and the headline."""
    return {"data": core.experiment_histogram(svc, experiment_id, threshold=threshold, project_ids=scope)}


@router.post("/{experiment_id}/cancel", response_model=Data[Experiment])
def cancel(experiment_id: ExperimentId, svc: Svc, scope: Scope, launcher: Launch) -> dict[str, Any]:
    """Stop a queued or running experiment; calls in flight finish and are recorded."""
    return {"data": core.cancel_experiment(svc, experiment_id, project_ids=scope, launcher=launcher)}


@router.post("/{experiment_id}/promote", response_model=Data[Promotion])
def promote(experiment_id: ExperimentId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Write a completed experiment's candidate as the project's next ``production`` routing-config version."""
    experiment, version = core.promote_experiment(svc, experiment_id, project_ids=scope)
    return {"data": {"experiment": experiment, "routing_config": version}}
