"""``/manage/v1/logs``: one logged request and its answer, as the project's gateway wrote them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from engine.schema import LoggedRequest
from service import core
from service.api._deps import Scope, Svc
from service.api._models import ERRORS, Data

router = APIRouter(prefix="/manage/v1/logs", tags=["logs"], responses=ERRORS)


@router.get("/{request_id}", response_model=Data[LoggedRequest])
def get(
    request_id: Annotated[str, Path(description="The logged request's id (a pair's `request_id`).")],
    svc: Svc,
    scope: Scope,
    project_id: Annotated[str | None, Query(alias="projectId", description="Look in this project only.")] = None,
) -> dict[str, Any]:
    """The logged request (its chat messages) and answer behind a pair: what the baseline was asked and said."""
    return {"data": core.get_logged_request(svc, request_id, project_id=project_id, project_ids=scope)}
