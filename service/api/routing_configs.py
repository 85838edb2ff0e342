"""``/manage/v1/projects/{id}/routing-configs``: versioned routing configs (promote writes ``production``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from engine.schema import RoutingConfigCreate, RoutingConfigVersion
from service import core
from service.api._deps import Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(
    prefix="/manage/v1/projects/{project_id}/routing-configs", tags=["routing configs"], responses=ERRORS
)
ProjectId = Annotated[str, Path(description="The project's id.")]


@router.post("", status_code=201, response_model=Data[RoutingConfigVersion])
def create(project_id: ProjectId, spec: RoutingConfigCreate, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Validate a policy and its config and save them as the next version of ``slug``."""
    body = spec.model_dump()
    return {"data": core.save_routing_config(svc, project_id, body, project_ids=scope)}


@router.get("", response_model=Page[RoutingConfigVersion])
def list_versions(project_id: ProjectId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Every version of every routing config of the project, newest version first per slug."""
    return page_of(core.list_routing_configs(svc, project_id, project_ids=scope))


@router.get("/{slug}", response_model=Data[RoutingConfigVersion])
def get(
    project_id: ProjectId,
    slug: str,
    svc: Svc,
    scope: Scope,
    version: Annotated[int | None, Query(ge=1, le=2**53, description="A version; the latest when omitted.")] = None,
) -> dict[str, Any]:
    """One version of a routing config; candidates can refer to it as ``@slug`` or ``@slug:version``."""
    return {"data": core.get_routing_config(svc, project_id, slug, version, project_ids=scope)}
