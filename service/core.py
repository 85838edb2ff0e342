"""The service layer every face calls: CLI, REST, MCP and dashboard share these functions.

No face re-implements validation or business rules; they translate their
inputs into these calls and render what comes back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from pydantic import ValidationError

from engine import execution, judging, responses, runs, scheduled_runs
from engine.credentials import Credentials, check_base_url, load_credentials
from engine.crypto import load_cipher
from engine.errors import ConfigError, Conflict, Forbidden, NotFound, Unavailable
from engine.experiment import ref_resolver
from engine.logs import find_request, store_projects
from engine.pricing import Catalog, load_catalog
from engine.results import ROW_COLUMNS, PairStore, page, query_pairs
from engine.routing import build_policy
from engine.schedules import ScheduledExperiment
from engine.schema import (
    ApiKey,
    CreatedApiKey,
    CredentialCreate,
    Experiment,
    ExperimentCreate,
    JudgeCreate,
    JudgePreflight,
    JudgeRun,
    KeyRole,
    LoggedRequest,
    LoggingMode,
    Preflight,
    Project,
    ProjectCreate,
    ProjectUpdate,
    ProviderCredential,
    RoutingConfigCreate,
    RoutingConfigVersion,
    parse_body,
)
from engine.settings import Settings
from engine.similarity import Histogram, histogram
from engine.store import Store, descendants, new_id, utcnow

log = logging.getLogger("rehearsal.service")
ProgressFn = Callable[[int, int, float], None]

#: Ended experiments whose pairs stay in memory for paging and histograms.
PAIR_CACHE_RUNS = 4
#: The slug that ``promote`` writes new versions under.
PRODUCTION_SLUG = "production"


@dataclass
class Services:
    """Resolved settings plus the store they point at."""

    settings: Settings
    logs_root: str
    pricing_path: Path
    credentials_path: Path
    store: Store = field(init=False)
    pair_cache: dict[tuple[str, int], pl.DataFrame] = field(default_factory=dict, init=False, repr=False)
    pair_cache_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = Store(self.settings.db_path, load_cipher(self.settings.secret_key, self.settings.home))

    @cached_property
    def catalog(self) -> Catalog:
        """The pricing catalog (read once)."""
        return load_catalog(self.pricing_path)

    @cached_property
    def credentials(self) -> Credentials:
        """The provider credentials (read once)."""
        return load_credentials(self.credentials_path)

    def run_context(self, on_progress: ProgressFn | None = None) -> runs.RunContext:
        """What a with-responses run needs."""
        return runs.RunContext(self.store, self.catalog, self.credentials, self.logs_root, self.settings, on_progress)


def open_services(
    settings: Settings, *, logs: str | None = None, pricing: Path | None = None, credentials: Path | None = None
) -> Services:
    """Services over ``settings``, with flag overrides for the log store, catalog and credentials."""
    return Services(
        settings,
        logs_root=logs or settings.logs_root,
        pricing_path=pricing or settings.pricing,
        credentials_path=credentials or settings.credentials,
    )


def _in_scope(project_id: str, project_ids: list[str] | None, what: str, param: str) -> None:
    if project_ids is not None and project_id not in project_ids:
        raise NotFound(f"{what} {project_id!r} does not exist", param=param)


def require_admin(caller: ApiKey | None) -> None:
    """Caps, keys and credentials need an admin key (``None``: the local operator, who may do anything)."""
    if caller is not None and caller.role != "admin":
        raise Forbidden(
            "this key may run experiments but not manage caps, keys or credentials; use an admin key "
            "(rehearsal keys create --admin --project ID)",
            param="Authorization",
        )


def _check_caps(svc: Services, project: Project) -> Project:
    ceiling = svc.settings.max_spend_cap_usd
    caps = {"experimentSpendCapUsd": project.experiment_spend_cap_usd, "judgeSpendCapUsd": project.judge_spend_cap_usd}
    for alias, cap in caps.items():
        if cap > ceiling:
            raise ConfigError(
                f"{alias} {cap:g} is above the ceiling of ${ceiling:g} (REHEARSAL_MAX_SPEND_CAP_USD)", param=alias
            )
    return project


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
    values = {
        "id": project_id,
        "logging_mode": logging_mode,
        "experiment_spend_cap_usd": experiment_spend_cap_usd,
        "judge_spend_cap_usd": judge_spend_cap_usd,
    }
    parse_body(ProjectCreate, values)
    project = Project.model_validate(values | {"created_at": utcnow()})
    return svc.store.put_project(_check_caps(svc, project), create=True)


def update_project(svc: Services, project_id: str, *, project_ids: list[str] | None = None, **changes: Any) -> Project:
    """Change a project's settings (``None`` values are left as they are).

    The stored fields are merged as they are, so an update also repairs a damaged project.
    """
    _in_scope(project_id, project_ids, "project", "id")
    given = {k: v for k, v in changes.items() if v is not None}
    parse_body(ProjectUpdate, given)
    values = svc.store.get_project_fields(project_id) | given
    try:
        project = Project.model_validate(values)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ConfigError(f"the stored project is damaged ({field}); send {field} to repair it", param=field) from None
    return svc.store.put_project(_check_caps(svc, project), create=False)


def ensure_project(svc: Services, project_id: str) -> Project:
    """The project, created with defaults when unseen (local CLI runs only)."""
    try:
        return svc.store.get_project(project_id)
    except NotFound:
        return create_project(svc, project_id)


def get_project(svc: Services, project_id: str, *, project_ids: list[str] | None = None) -> Project:
    """One project; one outside ``project_ids`` is ``NotFound``."""
    _in_scope(project_id, project_ids, "project", "id")
    return svc.store.get_project(project_id)


def list_projects(svc: Services, *, project_ids: list[str] | None = None) -> list[Project]:
    """The projects in scope, by id."""
    return svc.store.list_projects(project_ids)


# logs -------------------------------------------------------------------------------
def get_logged_request(
    svc: Services, request_id: str, *, project_id: str | None = None, project_ids: list[str] | None = None
) -> LoggedRequest:
    """The logged request and answer of ``request_id``, in ``project_id``'s logs or any project in scope's."""
    # Every project in scope; for the operator and all-projects keys also the log store's other folders.
    projects = [p.id for p in list_projects(svc, project_ids=project_ids)]
    if project_ids is None:
        projects += [p for p in store_projects(svc.logs_root) if p not in projects]
    if project_id is not None:
        if project_id not in projects:
            raise NotFound(f"project {project_id!r} does not exist", param="projectId")
        projects = [project_id]
    for project in projects:
        row = find_request(svc.logs_root, project, request_id)
        if row is not None:
            return LoggedRequest.model_validate(row)
    where = (
        f"project {project_id!r}'s logs"
        if project_id is not None
        else "the logs of any project" + (" this key may see" if project_ids is not None else "")
    )
    raise NotFound(f"request {request_id!r} is not in {where}", param="request_id")


# provider credentials ---------------------------------------------------------------
def create_credential(
    svc: Services, body: Any, *, project_ids: list[str] | None = None, caller: ApiKey | None = None
) -> ProviderCredential:
    """Store a provider credential for a project; its API key is kept and never shown again (admin keys only)."""
    require_admin(caller)
    spec: CredentialCreate = parse_body(CredentialCreate, body)
    get_project(svc, spec.project_id, project_ids=project_ids)
    check_base_url(spec.base_url, svc.settings.provider_allow_hosts)
    credential = ProviderCredential(
        id=new_id("pc"),
        project_id=spec.project_id,
        vendor=spec.vendor,
        base_url=spec.base_url,
        rate_limit_rps=spec.rate_limit_rps,
        cost_source=spec.cost_source,
        has_api_key=spec.api_key is not None,
        created_at=utcnow(),
    )
    return svc.store.put_credential(credential, spec.api_key)


def get_credential(svc: Services, credential_id: str, *, project_ids: list[str] | None = None) -> ProviderCredential:
    """One stored credential (never its key)."""
    credential = svc.store.get_credential(credential_id)
    if project_ids is not None and credential.project_id not in project_ids:
        raise NotFound(f"provider credential {credential_id!r} does not exist", param="id")
    return credential


def list_credentials(
    svc: Services, *, project_ids: list[str] | None = None, project_id: str | None = None
) -> list[ProviderCredential]:
    """Stored credentials in scope (never their keys)."""
    if project_id is not None:
        _in_scope(project_id, project_ids, "project", "projectId")
        project_ids = [project_id]
    return svc.store.list_credentials(project_ids)


def delete_credential(
    svc: Services, credential_id: str, *, project_ids: list[str] | None = None, caller: ApiKey | None = None
) -> None:
    """Forget a stored credential and its key (admin keys only)."""
    require_admin(caller)
    svc.store.delete_credential(get_credential(svc, credential_id, project_ids=project_ids).id)


# routing configs --------------------------------------------------------------------
def save_routing_config(
    svc: Services, project_id: str, body: Any, *, project_ids: list[str] | None = None
) -> RoutingConfigVersion:
    """Validate a routing config and save it as the next version of its slug."""
    spec: RoutingConfigCreate = parse_body(RoutingConfigCreate, body)
    get_project(svc, project_id, project_ids=project_ids)
    policy = build_policy(spec.policy, spec.config, resolve=ref_resolver(svc.store, project_id), param="config")
    for model in sorted(policy.models()):
        svc.catalog.price(model, param=policy.param)
    return svc.store.add_routing_config(project_id, spec.slug, spec.policy, spec.config)


def list_routing_configs(
    svc: Services, project_id: str, *, project_ids: list[str] | None = None
) -> list[RoutingConfigVersion]:
    """Every version of a project's routing configs."""
    get_project(svc, project_id, project_ids=project_ids)
    return svc.store.list_routing_configs(project_id)


def get_routing_config(
    svc: Services, project_id: str, slug: str, version: int | None = None, *, project_ids: list[str] | None = None
) -> RoutingConfigVersion:
    """One version of a routing config (the latest when ``version`` is ``None``)."""
    get_project(svc, project_id, project_ids=project_ids)
    return svc.store.get_routing_config(project_id, slug, version)


# management keys --------------------------------------------------------------------
def create_key(
    svc: Services,
    project_ids_wanted: list[str],
    *,
    name: str = "",
    role: KeyRole = "member",
    project_ids: list[str] | None = None,
    caller: ApiKey | None = None,
) -> CreatedApiKey:
    """A new key for existing projects within the caller's scope; the secret is in the answer only.

    Only admin keys mint keys; the new key is the caller's child, so revoking the caller revokes it.
    """
    require_admin(caller)
    for project_id in project_ids_wanted:
        get_project(svc, project_id, project_ids=project_ids)
    return svc.store.create_api_key(
        project_ids_wanted, name=name, role=role, parent_id=caller.id if caller is not None else None
    )


def _key_in_scope(key: ApiKey, project_ids: list[str] | None) -> bool:
    return project_ids is None or (not key.all_projects and set(key.project_ids) <= set(project_ids))


def list_keys(svc: Services, *, project_ids: list[str] | None = None, caller: ApiKey | None = None) -> list[ApiKey]:
    """The keys whose projects are all within the caller's scope (admin keys only)."""
    require_admin(caller)
    return [k for k in svc.store.list_api_keys() if _key_in_scope(k, project_ids)]


def revoke_key(
    svc: Services, key_id: str, *, project_ids: list[str] | None = None, caller: ApiKey | None = None
) -> ApiKey:
    """Revoke a key for good, with every key minted from it.

    A key may revoke itself and the keys minted from it; an all-projects key (or the operator) any key.
    """
    keys = svc.store.list_api_keys()
    if not any(k.id == key_id and _key_in_scope(k, project_ids) for k in keys) and (
        caller is None or key_id != caller.id
    ):
        raise NotFound(f"key {key_id!r} does not exist", param="id")
    if caller is not None and not caller.all_projects and key_id not in descendants(keys, caller.id, include_self=True):
        raise Forbidden("a key may revoke only itself and the keys minted from it", param="id")
    return svc.store.revoke_api_key(key_id)


# experiments ----------------------------------------------------------------------
class Launcher(Protocol):
    """Starts stored runs somewhere else (a Prefect flow run) and says which flow run took them."""

    def launch(self, table: str, run_id: str) -> str:
        """Start run ``run_id`` of ``table`` (``experiments`` or ``judge_runs``); return the flow run id."""
        ...

    def cancel(self, flow_run_id: str) -> None:
        """Cancel a flow run that has not started its run."""
        ...

    def flow_states(self, flow_run_ids: list[str]) -> dict[str, str]:
        """The state type of each flow run (``SCHEDULED``, ``RUNNING``, ``CRASHED``, …); unknown ones left out."""
        ...


class Scheduler(Protocol):
    """Where schedules live (Prefect deployments); see ``flows.scheduling.PrefectScheduler``."""

    def create(self, schedule: ScheduledExperiment) -> str:
        """Create the schedule's deployment; return its id."""
        ...

    def set_cron(self, deployment_id: str, cron: str) -> None:
        """Change the cron."""
        ...

    def pause(self, deployment_id: str) -> None:
        """Stop fires."""
        ...

    def resume(self, deployment_id: str) -> None:
        """Fire again."""
        ...

    def delete(self, deployment_id: str) -> None:
        """Remove the deployment."""
        ...

    def run_now(self, deployment_id: str, experiment_id: str | None = None) -> str:
        """Start a flow run now; return its id."""
        ...

    def state(self, deployment_id: str) -> tuple[str, bool] | None:
        """``(cron, paused)``, or ``None`` when the deployment is gone."""
        ...


def _admit_experiment(
    svc: Services, body: Any, project_ids: list[str] | None, create_missing_project: bool
) -> tuple[Experiment, responses.Plan | None]:
    """Validate ``body`` fully (window read, sample drawn) and store the queued experiment; bad input stores nothing."""
    spec: ExperimentCreate = parse_body(ExperimentCreate, body)
    _in_scope(spec.project_id, project_ids, "project", "projectId")
    project = ensure_project(svc, spec.project_id) if create_missing_project else svc.store.get_project(spec.project_id)
    return execution.admit_experiment(svc.run_context(), spec, project)


def start_run(svc: Services, table: str, run_id: str, start: Callable[[], str]) -> None:
    """Hand a stored run to the orchestrator (``start`` answers the flow run id) and record the flow run.

    When the orchestrator refuses, the run is failed with the reason and ``Unavailable`` is raised.
    """
    try:
        flow_run_id = start()
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        svc.store.fail_run(table, run_id, f"could not be started: the orchestrator refused it ({why})")
        raise Unavailable(f"the run was stored but could not be started ({why})") from exc
    svc.store.set_flow_run(table, run_id, flow_run_id)


def create_experiment(
    svc: Services,
    body: Any,
    *,
    create_missing_project: bool = False,
    on_progress: ProgressFn | None = None,
    dedicated: bool = False,
) -> Experiment:
    """Validate ``body`` (the ``POST /manage/v1/experiments`` shape) and run it here, to its end.

    ``dedicated``: this process exists for the run (the CLI), so a cancel or the hard timeout may end it.
    """
    experiment, planned = _admit_experiment(svc, body, None, create_missing_project)
    return execution.run_experiment(svc.run_context(on_progress), experiment.id, planned, dedicated=dedicated)


def submit_experiment(
    svc: Services, body: Any, launcher: Launcher, *, project_ids: list[str] | None = None
) -> Experiment:
    """Validate and store ``body`` as a queued experiment and hand it to ``launcher``; returns at once."""
    experiment, _ = _admit_experiment(svc, body, project_ids, False)
    start_run(svc, "experiments", experiment.id, lambda: launcher.launch("experiments", experiment.id))
    return svc.store.get_experiment(experiment.id)


def preflight_experiment(
    svc: Services, body: Any, *, create_missing_project: bool = False, project_ids: list[str] | None = None
) -> Preflight:
    """Estimate a with-responses run (the body of ``POST /manage/v1/experiments/preflight``)."""
    raw = dict(body) if isinstance(body, dict) else body
    if isinstance(raw, dict):
        raw.setdefault("mode", "with_responses")
    spec: ExperimentCreate = parse_body(ExperimentCreate, raw)
    _in_scope(spec.project_id, project_ids, "project", "projectId")
    project = ensure_project(svc, spec.project_id) if create_missing_project else svc.store.get_project(spec.project_id)
    return responses.preflight(spec, project, store=svc.store, catalog=svc.catalog, logs_root=svc.logs_root)


def resume_experiment(
    svc: Services, experiment_id: str, *, on_progress: ProgressFn | None = None, dedicated: bool = False
) -> Experiment:
    """Finish an interrupted run here: recorded pairs are kept and never called again."""
    experiment = svc.store.get_experiment(experiment_id)
    if experiment.status not in ("queued", "running"):
        raise Conflict(f"experiment {experiment_id!r} is {experiment.status}; only unfinished runs resume", param="id")
    return execution.run_experiment(svc.run_context(on_progress), experiment_id, dedicated=dedicated)


def recover_runs(
    svc: Services, launcher: Launcher, scheduler: Scheduler | None = None, *, at_start: bool = False
) -> list[str]:
    """Relaunch unfinished runs that nothing executes any more (or fail them with a reason).

    At a (re)start (``at_start``) and then periodically, so a crashed flow run is resumed without a
    restart. A scheduled fire goes back to its schedule's deployment, so its verdict, signal and
    webhooks follow.
    """

    def relaunch(table: str, run_id: str) -> None:
        if table == "experiments" and scheduler is not None:
            schedule_id = svc.store.get_experiment(run_id).scheduled_experiment_id
            if schedule_id is not None:
                schedule = scheduled_runs.get_schedule(svc.store, schedule_id)
                deployment_id = schedule.deployment_id
                if deployment_id is not None:
                    start_run(svc, table, run_id, lambda: scheduler.run_now(deployment_id, run_id))
                    return
        start_run(svc, table, run_id, lambda: launcher.launch(table, run_id))

    return execution.recover(svc.store, svc.settings, relaunch, launcher.flow_states, at_start=at_start)


def _withdraw(launcher: Launcher | None, run: Experiment | JudgeRun) -> None:
    """A run cancelled while queued: its flow run need not start a process only to find it cancelled."""
    if launcher is None or run.status != "queued" or run.flow_run_id is None:
        return
    try:
        launcher.cancel(run.flow_run_id)
    except Exception as exc:  # best effort: the flow run then starts, sees the cancel and ends
        log.info("could not cancel flow run %s of %s: %s", run.flow_run_id, run.id, exc)


def cancel_experiment(
    svc: Services, experiment_id: str, *, project_ids: list[str] | None = None, launcher: Launcher | None = None
) -> Experiment:
    """Ask a queued or running experiment to stop; calls in flight finish and are recorded.

    A queued one's flow run is cancelled too (through ``launcher``, when given), so it starts nothing.
    """
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    if not svc.store.cancel_experiment(experiment.id, "cancelled on request"):
        raise Conflict(f"experiment {experiment_id!r} is {experiment.status}; it cannot be cancelled", param="id")
    _withdraw(launcher, experiment)
    return svc.store.get_experiment(experiment.id)


def _pairs(svc: Services, experiment: Experiment) -> pl.DataFrame:
    """The experiment's pair rows (without the texts); an ended run's stay in memory (a few runs) for paging."""
    if experiment.mode != "with_responses":
        raise ConfigError(f"experiment {experiment.id!r} is routing-only: it has no per-pair results", param="id")
    files = PairStore(svc.settings.home, experiment.id)
    if experiment.status in ("queued", "running") or not files.final.exists():
        return files.frame().select(ROW_COLUMNS)
    key = (experiment.id, files.final.stat().st_mtime_ns)
    with svc.pair_cache_lock:
        frame = svc.pair_cache.pop(key, None)
        if frame is None:
            frame = files.read_final(ROW_COLUMNS)
        svc.pair_cache[key] = frame  # most recent last
        while len(svc.pair_cache) > PAIR_CACHE_RUNS:
            svc.pair_cache.pop(next(iter(svc.pair_cache)))
    return frame


def _with_texts(svc: Services, experiment: Experiment, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with both answers, read for those rows only."""
    files = PairStore(svc.settings.home, experiment.id)
    wanted = pl.col("request_id").is_in(rows.get_column("request_id").implode())
    source = pl.scan_parquet(files.final) if files.final.exists() else files.frame().lazy()
    texts = source.filter(wanted).select("request_id", "baseline_text", "candidate_text").collect()
    return rows.join(texts, on="request_id", how="left", maintain_order="left")


def experiment_results(
    svc: Services,
    experiment_id: str,
    *,
    project_ids: list[str] | None = None,
    include_texts: bool = False,
    **query: Any,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of per-pair rows.

    ``query`` takes ``sort``, ``candidate_status``, ``min_similarity``,
    ``max_similarity``, ``limit`` and ``cursor`` (see ``engine.results.query_pairs``).
    """
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    page, cursor = query_pairs(_pairs(svc, experiment), **query)
    return (_with_texts(svc, experiment, page) if include_texts else page).to_dicts(), cursor


def experiment_pair(
    svc: Services, experiment_id: str, request_id: str, *, project_ids: list[str] | None = None
) -> dict[str, Any]:
    """One pair with both answers (the single-pair view)."""
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    rows = _pairs(svc, experiment).filter(pl.col("request_id") == request_id)
    if rows.height == 0:
        raise NotFound(f"experiment {experiment_id!r} has no pair for request {request_id!r}", param="request_id")
    return _with_texts(svc, experiment, rows).row(0, named=True)


def experiment_histogram(
    svc: Services, experiment_id: str, *, threshold: float = 0.85, project_ids: list[str] | None = None
) -> Histogram:
    """The similarity histogram and headline at ``threshold``."""
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    similarity = _pairs(svc, experiment).get_column("similarity").cast(pl.Float64).fill_null(float("nan"))
    return histogram(similarity.to_numpy(), threshold)


def get_experiment(svc: Services, experiment_id: str, *, project_ids: list[str] | None = None) -> Experiment:
    """One experiment; another project's experiment is ``NotFound``."""
    experiment = svc.store.get_experiment(experiment_id)
    if project_ids is not None and experiment.project_id not in project_ids:
        raise NotFound(f"experiment {experiment_id!r} does not exist", param="id")
    return experiment


def list_experiments(
    svc: Services,
    *,
    project_ids: list[str] | None = None,
    project_id: str | None = None,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Experiment], str | None]:
    """A page of experiments (optionally of one project, in one status), newest first, and the next cursor."""
    if project_id is not None:
        _in_scope(project_id, project_ids, "project", "projectId")
        project_ids = [project_id]
    return svc.store.list_experiments(project_ids=project_ids, status=status, limit=limit, cursor=cursor)


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


# judge runs -----------------------------------------------------------------------
def preflight_judge(
    svc: Services, experiment_id: str, body: Any, *, project_ids: list[str] | None = None
) -> JudgePreflight:
    """Estimate a judge run over an experiment's pairs (``POST …/judge/preflight``)."""
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    spec: JudgeCreate = parse_body(JudgeCreate, body if body is not None else {})
    project = svc.store.get_project(experiment.project_id)
    return judging.preflight_judge(experiment, spec, project, svc.run_context())


def _admit_judge_run(
    svc: Services, experiment_id: str, body: Any, project_ids: list[str] | None
) -> tuple[JudgeRun, judging.JudgePlan]:
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    spec: JudgeCreate = parse_body(JudgeCreate, body)
    return execution.admit_judge_run(svc.run_context(), experiment, spec)


def create_judge_run(
    svc: Services,
    experiment_id: str,
    body: Any,
    *,
    project_ids: list[str] | None = None,
    on_progress: ProgressFn | None = None,
    dedicated: bool = False,
) -> JudgeRun:
    """Validate and run a judge eval here, to its end (``POST …/judge``); bad input stores nothing."""
    run, planned = _admit_judge_run(svc, experiment_id, body, project_ids)
    return execution.run_judge_run(svc.run_context(on_progress), run.id, planned, dedicated=dedicated)


def submit_judge_run(
    svc: Services, experiment_id: str, body: Any, launcher: Launcher, *, project_ids: list[str] | None = None
) -> JudgeRun:
    """Validate and store a queued judge run and hand it to ``launcher``; returns at once."""
    run, _ = _admit_judge_run(svc, experiment_id, body, project_ids)
    start_run(svc, "judge_runs", run.id, lambda: launcher.launch("judge_runs", run.id))
    return svc.store.get_judge_run(run.id)


def get_judge_run(
    svc: Services, run_id: str, *, project_ids: list[str] | None = None, experiment_id: str | None = None
) -> JudgeRun:
    """One judge run; another project's run is ``NotFound``, and so is one of another experiment than given."""
    run = svc.store.get_judge_run(run_id)
    if project_ids is not None and run.project_id not in project_ids:
        raise NotFound(f"judge run {run_id!r} does not exist", param="id")
    if experiment_id is not None and run.experiment_id != experiment_id:
        raise NotFound(f"experiment {experiment_id!r} has no judge run {run_id!r}", param="judgeRunId")
    return run


def list_judge_runs(
    svc: Services,
    experiment_id: str,
    *,
    project_ids: list[str] | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[JudgeRun], str | None]:
    """An experiment's judge runs, newest first."""
    experiment = get_experiment(svc, experiment_id, project_ids=project_ids)
    return svc.store.list_judge_runs(experiment.id, limit=limit, cursor=cursor)


def cancel_judge_run(
    svc: Services, run_id: str, *, project_ids: list[str] | None = None, launcher: Launcher | None = None
) -> JudgeRun:
    """Ask a queued or running judge run to stop (a queued one's flow run is cancelled too)."""
    run = get_judge_run(svc, run_id, project_ids=project_ids)
    if not svc.store.cancel_judge_run(run.id, "cancelled on request"):
        raise Conflict(f"judge run {run_id!r} is {run.status}; it cannot be cancelled", param="id")
    _withdraw(launcher, run)
    return svc.store.get_judge_run(run.id)


def judge_results(
    svc: Services,
    run_id: str,
    *,
    verdict: str | None = None,
    bucket: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    project_ids: list[str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Per-pair verdicts, worst first (``worse``, then parse errors, ``equivalent``, ``better``)."""
    if verdict is not None and verdict not in ("better", "equivalent", "worse"):
        raise ConfigError("verdict must be better, equivalent or worse", param="verdict")
    if bucket is not None and bucket not in ("high", "mild", "major"):
        raise ConfigError("bucket must be high, mild or major", param="bucket")
    run = get_judge_run(svc, run_id, project_ids=project_ids)
    rows = judging.verdicts(svc.run_context(), run)
    if verdict is not None:
        rows = rows.filter(pl.col("verdict") == verdict)
    if bucket is not None:
        rows = rows.filter(pl.col("bucket") == bucket)
    rank = pl.col("verdict").replace_strict(
        {"worse": 0, "equivalent": 2, "better": 3}, default=1, return_dtype=pl.Int64
    )
    rows, next_cursor = page(rows.sort([rank, "similarity", "request_id"], nulls_last=True), limit, cursor)
    return _with_texts(svc, get_experiment(svc, run.experiment_id), rows).to_dicts(), next_cursor
