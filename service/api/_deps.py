"""What every route needs: the services, the launcher, and the caller's key and project scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.errors import Unauthorized
from engine.schema import ApiKey
from service.core import Launcher, Services
from service.schedules import Scheduler

_bearer = HTTPBearer(auto_error=False, description="A management key: `rehearsal keys create --project ID`.")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _launcher(request: Request) -> Launcher:
    launcher: Launcher = request.app.state.launcher
    return launcher


def _scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler | None = getattr(request.app.state, "scheduler", None)
    if scheduler is None:
        from flows.scheduling import PrefectScheduler

        scheduler = request.app.state.scheduler = PrefectScheduler()
    return scheduler


def _caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    if credentials is None:
        raise Unauthorized("missing management key: send 'Authorization: Bearer <key>'")
    key = _services(request).store.authenticate(credentials.credentials)
    if key is None:
        raise Unauthorized("invalid or revoked management key")
    return key


def _scope(key: Annotated[ApiKey, Depends(_caller)]) -> list[str] | None:
    return None if key.all_projects else key.project_ids


Svc = Annotated[Services, Depends(_services)]
Launch = Annotated[Launcher, Depends(_launcher)]
Schedule = Annotated[Scheduler, Depends(_scheduler)]
Caller = Annotated[ApiKey, Depends(_caller)]
#: The project ids the caller's key may see (``None``: every project).
Scope = Annotated[list[str] | None, Depends(_scope)]
