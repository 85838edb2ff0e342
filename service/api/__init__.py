"""The REST service: the guides' ``/manage/v1`` API on FastAPI, over the shared service layer."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.api import (
    credentials,
    experiments,
    judge,
    keys,
    logs,
    projects,
    routing_configs,
    scheduled_experiments,
    signals,
    webhooks,
)
from service.api._errors import install
from service.api._idempotency import IdempotencyMiddleware
from service.api._limits import BodyLimits, CatchAll
from service.core import Launcher, Services
from service.schedules import Scheduler

log = logging.getLogger("rehearsal.webhooks")
runs_log = logging.getLogger("rehearsal.runs")

API_DESCRIPTION = """Rehearse a routing change on real traffic before production sees it.

Authenticate with `Authorization: Bearer <management key>` (`rehearsal keys create --project ID`).
Mutating calls accept an `Idempotency-Key` header. Experiment and judge runs are asynchronous:
create answers `queued` and the run executes as a Prefect flow run.
"""


def _dispatch(services: Services, stop: threading.Event) -> None:
    from service.schedules import deliver_due

    while not stop.wait(services.settings.webhook_dispatch_s):
        try:
            for delivery in deliver_due(services):
                log.info("webhook delivery %s: %s after %d attempts", delivery.id, delivery.status, delivery.attempts)
        except Exception:
            log.exception("webhook dispatch failed; retrying")


def _watch_runs(services: Services, launcher: Launcher, app: FastAPI, stop: threading.Event) -> None:
    """Resume (or fail) runs whose process died, e.g. a crashed flow run, without waiting for a restart."""
    from service.core import recover_runs

    while not stop.wait(services.settings.run_watch_s):
        try:
            for line in recover_runs(services, launcher, getattr(app.state, "scheduler", None)):
                runs_log.warning("recovered %s", line)
        except Exception:
            runs_log.exception("watching runs failed; retrying")


def _document_errors_as_answered(app: FastAPI) -> None:
    """Validation errors answer 400 with the error shape (documented per router), never FastAPI's 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(services: Services, launcher: Launcher, scheduler: Scheduler | None = None) -> FastAPI:
    """The API over ``services``; runs start through ``launcher``, schedules live in ``scheduler`` (Prefect).

    While the app runs, background threads send webhook deliveries when they are due, so retries
    survive restarts (their schedule is in the store), and watch the runs' leases, so a run whose
    process died is resumed (or failed with a reason) within ``run_watch_s`` plus a lease check.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        threads = [
            threading.Thread(target=_dispatch, args=(services, stop), name="webhooks", daemon=True),
            threading.Thread(target=_watch_runs, args=(services, launcher, app, stop), name="runs", daemon=True),
        ]
        for thread in threads:
            thread.start()
        yield
        stop.set()
        for thread in threads:
            thread.join(10)

    app = FastAPI(title="rehearsal", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.state.launcher = launcher
    app.state.scheduler = scheduler
    install(app)
    for module in (
        experiments,
        judge,
        logs,
        projects,
        routing_configs,
        credentials,
        keys,
        scheduled_experiments,
        signals,
        webhooks,
    ):
        app.include_router(module.router)
    from service.web import STATIC_DIR, router  # here: service.web builds on service.api's dependencies

    app.include_router(router)  # the dashboard's pages under /
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(IdempotencyMiddleware, store=lambda: services.store)
    app.add_middleware(BodyLimits)  # outside idempotency: nothing unbounded is fingerprinted or stored
    app.add_middleware(CatchAll)  # outermost of ours
    _document_errors_as_answered(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness (no key needed)."""
        return {"status": "ok"}

    return app
