"""``/manage/v1/keys``: management keys, scoped to projects; a secret is shown once, when created."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from engine.schema import ApiKey, CreatedApiKey, KeyCreate
from service import core
from service.api._deps import Caller, Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/keys", tags=["management keys"], responses=ERRORS)
KeyId = Annotated[str, Path(description="The key's id (key_…).")]


@router.post("", status_code=201, response_model=Data[CreatedApiKey])
def create(spec: KeyCreate, svc: Svc, scope: Scope, caller: Caller) -> dict[str, Any]:
    """A new key for some of the caller's projects (admin keys); store its ``key`` now: it is never shown again.

    Revoking the caller's key later revokes this one too.
    """
    key = core.create_key(svc, spec.project_ids, name=spec.name, role=spec.role, project_ids=scope, caller=caller)
    return {"data": key}


@router.get("", response_model=Page[ApiKey])
def list_keys(svc: Svc, scope: Scope, caller: Caller) -> dict[str, Any]:
    """Keys whose projects are all within the caller's (admin keys; never their secrets)."""
    return page_of(core.list_keys(svc, project_ids=scope, caller=caller))


@router.post("/{key_id}/revoke", response_model=Data[ApiKey])
def revoke(key_id: KeyId, svc: Svc, scope: Scope, caller: Caller) -> dict[str, Any]:
    """Revoke a key for good, with every key minted from it (a key may revoke itself and its own keys)."""
    return {"data": core.revoke_key(svc, key_id, project_ids=scope, caller=caller)}
