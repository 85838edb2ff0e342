"""``/manage/v1/webhooks``: signed event deliveries with retries, a delivery log and replays."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from engine.webhooks import CreatedWebhook, Delivery, WebhookCreate, WebhookEndpoint
from service import schedules
from service.api._deps import Scope, Svc
from service.api._models import ERRORS, Data, Page, page_of

router = APIRouter(prefix="/manage/v1/webhooks", tags=["webhooks"], responses=ERRORS)
WebhookId = Annotated[str, Path(description="The endpoint's id (wh_…).")]


@router.post("", status_code=201, response_model=Data[CreatedWebhook])
def create(spec: WebhookCreate, svc: Svc, scope: Scope) -> dict[str, Any]:
    """An endpoint for a project's events; store the `secret` now, it is never shown again."""
    return {"data": schedules.create_webhook(svc, spec.model_dump(), project_ids=scope)}


@router.get("", response_model=Page[WebhookEndpoint])
def list_webhooks(
    svc: Svc, scope: Scope, project_id: Annotated[str | None, Query(alias="projectId")] = None
) -> dict[str, Any]:
    """Endpoints (never their secrets)."""
    return page_of(schedules.list_webhooks(svc, project_ids=scope, project_id=project_id))


@router.delete("/{webhook_id}", response_model=Data[WebhookEndpoint])
def delete(webhook_id: WebhookId, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Remove an endpoint (its delivery log stays)."""
    return {"data": schedules.delete_webhook(svc, webhook_id, project_ids=scope)}


@router.get("/{webhook_id}/deliveries", response_model=Page[Delivery])
def deliveries(
    webhook_id: WebhookId, svc: Svc, scope: Scope, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict[str, Any]:
    """The delivery log: attempts, last status, next retry."""
    return page_of(schedules.list_deliveries(svc, webhook_id, project_ids=scope, limit=limit))


@router.post("/{webhook_id}/deliveries/{delivery_id}/replay", response_model=Data[Delivery])
def replay(webhook_id: WebhookId, delivery_id: str, svc: Svc, scope: Scope) -> dict[str, Any]:
    """Send a past delivery's event again, now."""
    return {"data": schedules.replay_delivery(svc, webhook_id, delivery_id, project_ids=scope)}
