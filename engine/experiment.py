"""Run one experiment end to end over the log store, the routing policies and the replay."""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.calibration import Calibration
from engine.errors import ConfigError, NotFound
from engine.logs import Filters, Window, load_window
from engine.pricing import AsOf, Catalog, today
from engine.replay import REPLAY_COLUMNS, ReplayResult, replay
from engine.routing import Policy, RefResolver, build_policy
from engine.schema import Experiment, ExperimentCreate, ExperimentPricing, Progress
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


def pricing_of(spec: ExperimentCreate, catalog: Catalog) -> ExperimentPricing:
    """The list prices ``spec`` asks for: the catalog's source and version, and the price date.

    ``now`` is fixed here, so a resumed or repeated replay of the experiment prices the same.
    """
    as_of = spec.pricing.as_of
    day = None if as_of == "row" else today() if as_of == "now" else dt.date.fromisoformat(as_of)
    described = catalog.describe()
    return ExperimentPricing(
        source=str(described["source"]),
        version=str(described["version"]),
        overrides=described["overrides"],
        as_of=as_of,
        price_date=day,
    )


def as_of(pricing: ExperimentPricing) -> AsOf:
    """The replay's price date: ``"row"`` or the recorded date."""
    if pricing.as_of == "row" or pricing.price_date is None:
        return "row"
    return pricing.price_date


def replay_spec(
    spec: ExperimentCreate, *, store: Store, catalog: Catalog, logs_root: str, pricing: ExperimentPricing | None = None
) -> ReplayResult:
    """Load the spec's window and replay it through the candidate at the prices of ``pricing`` (default: the spec's)."""
    policy = candidate_policy(spec, store)
    columns = [*REPLAY_COLUMNS, *sorted(policy.columns() | window_of(spec).filters.columns)]
    frame = load_window(logs_root, window_of(spec), columns)
    calibration = Calibration(store.list_observations(spec.project_id), catalog)
    return replay(frame, policy, catalog, as_of=as_of(pricing or pricing_of(spec, catalog)), calibration=calibration)


def new_experiment(spec: ExperimentCreate, catalog: Catalog | None = None) -> Experiment:
    """A queued experiment for ``spec`` (its summaries come when it runs); with ``catalog``, its prices recorded."""
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
        pricing=pricing_of(spec, catalog) if catalog is not None else None,
        created_at=utcnow(),
    )


def spec_of(experiment: Experiment) -> ExperimentCreate:
    """The create body an experiment was made from."""
    body = experiment.model_dump(include=set(ExperimentCreate.model_fields) - {"pricing"})
    if experiment.pricing is not None:
        body["pricing"] = {"as_of": experiment.pricing.as_of}
    return ExperimentCreate.model_validate(body)


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
    spec = spec_of(experiment)
    pricing = experiment.pricing or pricing_of(spec, catalog)
    result = replay_spec(spec, store=store, catalog=catalog, logs_root=logs_root, pricing=pricing)
    rows = result.baseline.request_count
    return experiment.model_copy(
        update={
            "status": "completed",
            "progress": Progress(done=rows, total=rows),
            "baseline_summary": result.baseline,
            "candidate_summary": result.candidate,
            "deltas": result.deltas,
            "notes": result.notes,
            "token_multipliers": result.multipliers,
            "pricing": pricing,
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
    experiment = new_experiment(spec, catalog)
    return store.put_experiment(replay_into(experiment, store=store, catalog=catalog, logs_root=logs_root))
