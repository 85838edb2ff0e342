"""Response envelopes: ``{"data": …}``, pages with ``next_cursor`` and ``has_more``, and the error shape."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from engine.schema import Experiment, RoutingConfigVersion

T = TypeVar("T")


class Data(BaseModel, Generic[T]):
    """One object."""

    data: T


class Page(BaseModel, Generic[T]):
    """A page of objects; pass ``next_cursor`` as ``cursor`` for the next one."""

    data: list[T]
    next_cursor: str | None = None
    has_more: bool = False


def page_of(items: list[Any], next_cursor: str | None = None) -> dict[str, Any]:
    """The page envelope of ``items``."""
    return {"data": items, "next_cursor": next_cursor, "has_more": next_cursor is not None}


class ErrorDetail(BaseModel):
    """What went wrong, and which field when one is to blame."""

    message: str
    type: str = Field(description="e.g. invalid_request_error, authentication_error, not_found, conflict.")
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class Promotion(BaseModel):
    """A promoted experiment and the routing-config version it wrote."""

    experiment: Experiment
    routing_config: RoutingConfigVersion


#: The error answers every authenticated route may give.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Invalid request: the message names the field.",
        401: "Missing or unknown management key.",
        403: "The key may not do this.",
        404: "No such object (or not in the key's projects).",
        409: "Conflicts with the object's state, or an Idempotency-Key reused with another body.",
        413: "The request body is larger than 1 MiB.",
        503: "The orchestrator could not be reached.",
    }.items()
}
