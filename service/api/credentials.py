"""``/manage/v1/provider-credentials``: provider endpoints and keys per project; keys are write-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from engine.schema import CredentialCreate, ProviderCredential
from service import core
from service.api._deps import Caller, Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/provider-credentials", tags=["provider credentials"], responses=ERRORS)
CredentialId = Annotated[str, Path(description="The credential's id (pc_…).")]


@router.post("", status_code=201, response_model=Data[ProviderCredential])
def create(spec: CredentialCreate, svc: Svc, scope: Scope, caller: Caller) -> dict[str, Any]:
    """Store an OpenAI-compatible endpoint and its key (admin keys); runs name it as ``provider_credential_id``."""
    return {"data": core.create_credential(svc, spec.model_dump(), project_ids=scope, caller=caller)}


@router.get("", response_model=Page[ProviderCredential])
def list_credentials(
    svc: Svc, scope: Scope, project_id: Annotated[str | None, Query(alias="projectId")] = None
) -> dict[str, Any]:
    """Stored credentials (never their keys)."""
    return page_of(core.list_credentials(svc, project_ids=scope, project_id=project_id))


@router.get("/{credential_id}", response_model=Data[ProviderCredential])
def get(credential_id: CredentialId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """One credential (never its key)."""
    return {"data": core.get_credential(svc, credential_id, project_ids=scope)}


@router.delete("/{credential_id}", status_code=204, response_class=Response)
def delete(credential_id: CredentialId, svc: Svc, scope: Scope, caller: Caller) -> Response:
    """Forget a credential and its key (admin keys)."""
    core.delete_credential(svc, credential_id, project_ids=scope, caller=caller)
    return Response(status_code=204)
