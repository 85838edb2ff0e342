"""One mapping from errors to HTTP answers: ``{"error": {message, type, code, param}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from engine.errors import RehearsalError


def error_response(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """The error envelope."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"message": message, "type": kind, "code": code or kind, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _rehearsal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RehearsalError)
    return error_response(exc.status_code, exc.message, exc.error_type, exc.param, exc.code)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return error_response(400, f"the request body is not valid JSON ({detail})", "invalid_request_error")
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return error_response(400, f"{param}: {message}" if param else message, "invalid_request_error", param)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kinds = {404: "not_found", 405: "method_not_allowed"}
    return error_response(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "invalid_request_error"))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RehearsalError, _rehearsal)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
