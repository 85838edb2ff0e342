"""Run one experiment end to end over the log store, the routing policies and the replay."""

from __future__ import annotations

from typing import Any

from engine.errors import ConfigError, NotFound
from engine.logs import Filters, Window, load_window
from engine.pricing import Catalog
from engine.replay import REPLAY_COLUMNS, ReplayResult, replay
from engine.routing import Policy, RefResolver, build_policy
from engine.schema import Experiment, ExperimentCreate, Progress
from engine.store import Store, new_id, utcnow

#: Versions count up from 1; one with more digits than this cannot exist (and would overflow SQLite's integers).
VERSION_DIGITS = 15


def ref_resolver(store: Store, project_id: str) -> RefResolver:
    """Resolve ``@slug`` / ``@slug:version`` against the project's saved routing configs."""

    def resolve(ref: str) -> tuple[str, dict[str, Any]]:
        slug, _, version = ref.partition(":")
        if version and not (version.isascii() and version.isdigit()):
            raise ConfigError(f"'@{ref[:120]}': the version after ':' must be a number", param="candidateConfig")
        if len(slug) > 100 or len(version) > VERSION_DIGITS:
            raise ConfigError(f"'@{ref[:120]}' names no saved routing config", param="candidateConfig")
        try:
            saved = store.get_routing_config(project_id, slug, int(version) if version else None)
        except NotFound as exc:
            raise ConfigError(exc.message, param="candidateConfig") from None
        return saved.policy, saved.config

    return resolve


def candidate_policy(spec: ExperimentCreate, store: Store) -> Policy:
    """Validate the spec's candidate into a policy (``ensemble`` and unknown names refused)."""
    return build_policy(spec.candidate_policy, spec.candidate_config, resolve=ref_resolver(store, spec.project_id))


def window_of(spec: ExperimentCreate) -> Window:
    """The spec's window and filters."""
    f = spec.filters
    return Window(spec.project_id, spec.window_start, spec.window_end, Filters(f.models, f.end_user_ids, f.tags))


def replay_spec(spec: ExperimentCreate, *, store: Store, catalog: Catalog, logs_root: str) -> ReplayResult:
    """Load the spec's window and replay it through the candidate."""
    policy = candidate_policy(spec, store)
    columns = [*REPLAY_COLUMNS, *sorted(policy.columns() | window_of(spec).filters.columns)]
    frame = load_window(logs_root, window_of(spec), columns)
    return replay(frame, policy, catalog)


def new_experiment(spec: ExperimentCreate) -> Experiment:
    """A queued experiment for ``spec`` (its summaries come when it runs)."""
    label = "replay" if spec.mode == "routing_only" else "with responses"
    return Experiment(
        id=new_id("exp"),
        name=spec.name or f"{spec.candidate_policy} {label}",
        project_id=spec.project_id,
        mode=spec.mode,
        status="queued",
        candidate_policy=spec.candidate_policy,
        candidate_config=spec.candidate_config,
        window_start=spec.window_start,
        window_end=spec.window_end,
        filters=spec.filters,
        hypothesis=spec.hypothesis,
        sample=spec.sample,
        spend_cap_usd=spec.spend_cap_usd,
        embedding_model=spec.embedding_model,
        created_at=utcnow(),
    )


def spec_of(experiment: Experiment) -> ExperimentCreate:
    """The create body an experiment was made from."""
    return ExperimentCreate.model_validate(experiment.model_dump(include=set(ExperimentCreate.model_fields)))


def check_candidate(spec: ExperimentCreate, *, store: Store, catalog: Catalog) -> Policy:
    """The spec's candidate policy, refused when invalid (e.g. ``ensemble``) or when it routes to unpriced models."""
    policy = candidate_policy(spec, store)
    for model in sorted(policy.models()):
        catalog.price(model, param=policy.param)
    return policy


def check_routing_only(spec: ExperimentCreate, *, store: Store, catalog: Catalog, logs_root: str) -> None:
    """Refuse a routing-only spec that cannot run: a bad or unpriced candidate, or an empty window."""
    check_candidate(spec, store=store, catalog=catalog)
    load_window(logs_root, window_of(spec), ["request_id"])


def replay_into(experiment: Experiment, *, store: Store, catalog: Catalog, logs_root: str) -> Experiment:
    """The routing-only ``experiment``, completed with its replay's summaries (not stored)."""
    result = replay_spec(spec_of(experiment), store=store, catalog=catalog, logs_root=logs_root)
    rows = result.baseline.request_count
    return experiment.model_copy(
        update={
            "status": "completed",
            "progress": Progress(done=rows, total=rows),
            "baseline_summary": result.baseline,
            "candidate_summary": result.candidate,
            "deltas": result.deltas,
            "notes": result.notes,
            "started_at": experiment.started_at or experiment.created_at,
            "completed_at": utcnow(),
        }
    )


def run_routing_only(spec: ExperimentCreate, *, store: Store, catalog: Catalog, logs_root: str) -> Experiment:
    """Replay the spec and store the completed experiment; nothing is stored if any step fails."""
    if spec.mode != "routing_only":
        raise ConfigError(
            f"mode {spec.mode!r} cannot run here: this build replays routing only (mode 'routing_only')",
            param="mode",
        )
    return store.put_experiment(replay_into(new_experiment(spec), store=store, catalog=catalog, logs_root=logs_root))
