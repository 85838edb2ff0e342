"""The service layer every face calls: CLI, REST, MCP and dashboard share these functions.

No face re-implements validation or business rules; they translate their
inputs into these calls and render what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.errors import Conflict, NotFound
from engine.experiment import run_routing_only
from engine.pricing import Catalog, load_catalog
from engine.schema import Experiment, ExperimentCreate, LoggingMode, Project, RoutingConfigVersion, parse_body
from engine.settings import Settings
from engine.store import Store, utcnow

#: The slug that ``promote`` writes new versions under.
PRODUCTION_SLUG = "production"


@dataclass
class Services:
    """Resolved settings plus the store they point at."""

    settings: Settings
    logs_root: str
    pricing_path: Path
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.settings.db_path)

    @cached_property
    def catalog(self) -> Catalog:
        """The pricing catalog (read once)."""
        return load_catalog(self.pricing_path)


def open_services(settings: Settings, *, logs: str | None = None, pricing: Path | None = None) -> Services:
    """Services over ``settings``, with flag overrides for the log store and catalog."""
    return Services(settings, logs_root=logs or settings.logs_root, pricing_path=pricing or settings.pricing)


# projects -------------------------------------------------------------------------
def create_project(
    svc: Services,
    project_id: str,
    *,
    logging_mode: LoggingMode = "full",
    experiment_spend_cap_usd: float = 50.0,
    judge_spend_cap_usd: float = 20.0,
) -> Project:
    """Create a project; ``ConfigError`` when it exists or a setting is invalid."""
    project = Project.model_validate(
        {
            "id": project_id,
            "logging_mode": logging_mode,
            "experiment_spend_cap_usd": experiment_spend_cap_usd,
            "judge_spend_cap_usd": judge_spend_cap_usd,
            "created_at": utcnow(),
        }
    )
    return svc.store.put_project(project, create=True)


def update_project(svc: Services, project_id: str, **changes: Any) -> Project:
    """Change a project's settings (``None`` values are left as they are)."""
    project = svc.store.get_project(project_id)
    values = project.model_dump() | {k: v for k, v in changes.items() if v is not None}
    return svc.store.put_project(Project.model_validate(values), create=False)


def ensure_project(svc: Services, project_id: str) -> Project:
    """The project, created with defaults when unseen (local CLI runs only)."""
    try:
        return svc.store.get_project(project_id)
    except NotFound:
        return create_project(svc, project_id)


# experiments ----------------------------------------------------------------------
def create_experiment(svc: Services, body: Any, *, create_missing_project: bool = False) -> Experiment:
    """Validate ``body`` (the ``POST /manage/v1/experiments`` shape) and run it."""
    spec: ExperimentCreate = parse_body(ExperimentCreate, body)
    if create_missing_project:
        ensure_project(svc, spec.project_id)
    else:
        svc.store.get_project(spec.project_id)
    return run_routing_only(spec, store=svc.store, catalog=svc.catalog, logs_root=svc.logs_root)


def get_experiment(svc: Services, experiment_id: str, *, project_ids: list[str] | None = None) -> Experiment:
    """One experiment; another project's experiment is ``NotFound``."""
    experiment = svc.store.get_experiment(experiment_id)
    if project_ids is not None and experiment.project_id not in project_ids:
        raise NotFound(f"experiment {experiment_id!r} does not exist", param="id")
    return experiment


def list_experiments(
    svc: Services, *, project_ids: list[str] | None = None, limit: int = 20, cursor: str | None = None
) -> tuple[list[Experiment], str | None]:
    """A page of experiments, newest first, and the next cursor."""
    return svc.store.list_experiments(project_ids=project_ids, limit=limit, cursor=cursor)


def promote_experiment(
    svc: Services, experiment_id: str, *, project_ids: list[str] | None = None
) -> tuple[Experiment, RoutingConfigVersion]:
    """Write a completed experiment's candidate as the project's next production routing-config version."""
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    if experiment.status != "completed":
        raise Conflict(
            f"experiment {experiment_id!r} is {experiment.status}; only completed experiments can be promoted",
            param="id",
        )
    version = svc.store.add_routing_config(
        experiment.project_id,
        PRODUCTION_SLUG,
        experiment.candidate_policy,
        experiment.candidate_config,
        source_experiment_id=experiment.id,
    )
    experiment = svc.store.put_experiment(experiment.model_copy(update={"promoted_version": version.version}))
    return experiment, version
