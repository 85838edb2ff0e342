"""``/manage/v1/projects``: logging mode and spend caps per project."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from engine.errors import Forbidden
from engine.schema import Project, ProjectCreate, ProjectUpdate
from service import core
from service.api._deps import Caller, Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/projects", tags=["projects"], responses=ERRORS)
ProjectId = Annotated[str, Path(description="The project's id.")]


@router.post("", status_code=201, response_model=Data[Project])
def create(spec: ProjectCreate, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Create a project (keys made with `rehearsal keys create --all-projects` only)."""
    if not caller.all_projects:
        raise Forbidden("this key is scoped to projects and cannot create new ones", param="Authorization")
    project = core.create_project(
        svc,
        spec.id,
        logging_mode=spec.logging_mode,
        experiment_spend_cap_usd=spec.experiment_spend_cap_usd,
        judge_spend_cap_usd=spec.judge_spend_cap_usd,
    )
    return {"data": project}


@router.get("", response_model=Page[Project])
def list_projects(svc: Svc, scope: Scope) -> dict[str, Any]:
    """The projects this key may see."""
    return page_of(core.list_projects(svc, project_ids=scope))


@router.get("/{project_id}", response_model=Data[Project])
def get(project_id: ProjectId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """One project."""
    return {"data": core.get_project(svc, project_id, project_ids=scope)}


@router.patch("/{project_id}", response_model=Data[Project])
def update(project_id: ProjectId, spec: ProjectUpdate, svc: Svc, scope: Scope, caller: Caller) -> dict[str, Any]:
    """Change the logging mode or a spend cap (admin keys; caps up to the configured ceiling); others stay."""
    core.require_admin(caller)
    return {"data": core.update_project(svc, project_id, project_ids=scope, **spec.model_dump())}
