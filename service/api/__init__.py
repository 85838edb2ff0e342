"""The REST service: the guides' ``/manage/v1`` API on FastAPI, over the shared service layer."""

from __future__ import annotations

from fastapi import FastAPI

from service.api import credentials, experiments, judge, keys, projects, routing_configs
from service.api._errors import install
from service.api._idempotency import IdempotencyMiddleware
from service.core import Launcher, Services

API_DESCRIPTION = """Rehearse a routing change on real traffic before production sees it.

Authenticate with `Authorization: Bearer <management key>` (`rehearsal keys create --project ID`).
Mutating calls accept an `Idempotency-Key` header. Experiment and judge runs are asynchronous:
create answers `queued` and the run executes as a Prefect flow run.
"""


def create_app(services: Services, launcher: Launcher) -> FastAPI:
    """The API over ``services``; runs are started through ``launcher``."""
    app = FastAPI(title="rehearsal", version="0.1.0", description=API_DESCRIPTION)
    app.state.services = services
    app.state.launcher = launcher
    install(app)
    for module in (experiments, judge, projects, routing_configs, credentials, keys):
        app.include_router(module.router)
    app.add_middleware(IdempotencyMiddleware, store=lambda: services.store)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness (no key needed)."""
        return {"status": "ok"}

    return app
