"""With-responses experiments: sample real prompts, call the candidate under a hard cap, score similarity.

``plan`` reads the window and draws the sample; ``preflight`` prices it;
``execute`` fans the calls out on Ray, checkpoints every batch, stops on the
cap, a projected overrun, a cancel or the hard timeout, then embeds and
scores the pairs. Re-running an interrupted experiment skips every pair that
is already recorded, so no pair is paid for twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from engine.calibration import Calibration, Move, observe
from engine.credentials import Credentials
from engine.errors import ConfigError, EmptyWindowError
from engine.experiment import candidate_policy, spec_of, window_of
from engine.fanout import Endpoint, Job, Outcome, Price
from engine.logs import check_prompts, load_window
from engine.pricing import Catalog, piecewise
from engine.providers import ChatCall
from engine.replay import REPLAY_COLUMNS, candidate_rows, deltas, move_of, scaled_cost
from engine.results import INTERRUPTED, PairStore
from engine.routing import Policy, RoutingContext
from engine.runs import (
    AUTO_CANCEL_RATIO,
    RunContext,
    RunWatch,
    call_and_record,
    check_spend_cap,
    endpoint,
    estimate_error,
    final_status,
    interrupted_note,
    reported_cost_note,
    suggested_cap,
    unrecorded_calls,
)
from engine.schema import (
    Deltas,
    EstimateError,
    Experiment,
    ExperimentCreate,
    Preflight,
    PreflightEstimate,
    Progress,
    Project,
    Summary,
)
from engine.settings import Settings
from engine.similarity import EmbeddingCache, get_embedder, histogram, score_pairs
from engine.store import Store, utcnow

if TYPE_CHECKING:
    from engine.fanout import FanoutReport

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
#: Characters per token, for estimating embedding tokens from text length.
CHARS_PER_TOKEN = 4.0
#: A pair whose provider-reported prompt tokens are more than this many times off its logged input tokens
#: (either way) has suspicious usage.
USAGE_MISMATCH_FACTOR = 2.0
#: The share of answered pairs with suspicious usage above which the run carries a note.
USAGE_MISMATCH_SHARE = 0.5
#: How the suspicious-usage note begins, so faces can show it as a warning.
USAGE_NOTE_PREFIX = "Suspicious usage:"


@dataclass(frozen=True)
class Plan:
    """The sampled pairs of a with-responses run and what they should cost."""

    sample: pl.DataFrame
    row_count: int
    per_call_estimate_usd: float
    embedding_cost_usd: float
    notes: list[str]

    @property
    def effective(self) -> int:
        """Pairs the run will make."""
        return self.sample.height

    @property
    def estimated_cost_usd(self) -> float:
        """Every pair at the per-call estimate, plus the embeddings (the preflight's estimate)."""
        return self.per_call_estimate_usd * self.effective + self.embedding_cost_usd


def validate(spec: ExperimentCreate, project: Project, settings: Settings) -> None:
    """The create-time rules of with-responses runs; a ``ConfigError`` names the field."""
    if project.logging_mode == "metadata_only":
        raise ConfigError(
            f"project {project.id!r} logs metadata only: with_responses needs logged prompts and answers "
            "(logging mode 'full')",
            param="mode",
        )
    check_spend_cap(
        spec.spend_cap_usd, project.experiment_spend_cap_usd, "experiment_spend_cap_usd", "with_responses experiments"
    )
    size = spec.sample.size if spec.sample else settings.sample_min
    if not settings.sample_min <= size <= settings.sample_max:
        raise ConfigError(
            f"sample.size must be between {settings.sample_min:,} and {settings.sample_max:,} (got {size:,})",
            param="sample.size",
        )


def _credential_of(config: Any, model: str) -> str | None:
    """The ``provider_credential_id`` the candidate config gives ``model``, if any."""
    if isinstance(config, Mapping):
        if config.get("model") == model and config.get("provider_credential_id"):
            return str(config["provider_credential_id"])
        children: Any = config.values()
    elif isinstance(config, list):
        children = config
    else:
        return None
    for child in children:
        found = _credential_of(child, model)
        if found:
            return found
    return None


def endpoints_for(
    spec: ExperimentCreate, models: list[str], catalog: Catalog, credentials: Credentials
) -> tuple[dict[str, str], dict[str, Endpoint]]:
    """Credential id per model (from the config, else ``pc_<vendor>_default``) and the endpoints they name."""
    by_model: dict[str, str] = {}
    endpoints: dict[str, Endpoint] = {}
    for model in models:
        credential_id = _credential_of(spec.candidate_config, model)
        default = credential_id is None
        if credential_id is None:
            credential_id = f"pc_{catalog.price(model).provider}_default"
        by_model[model] = credential_id
        try:
            endpoints[credential_id] = endpoint(credentials, credential_id)
        except ConfigError as exc:
            if not default:
                raise
            raise ConfigError(
                f"candidate model {model!r} is called through the default credential {credential_id!r}: "
                f"{exc.message}; or give the model a provider_credential_id",
                param=exc.param,
            ) from None
    return by_model, endpoints


def _stable_key(seed: int) -> pl.Expr:
    return pl.col("request_id").hash(seed)


def draw_sample(rows: pl.DataFrame, size: int, method: str, seed: int) -> pl.DataFrame:
    """A seeded sample: ``random``, or ``stratified`` (proportional by baseline model, largest remainder)."""
    ordered = rows.with_columns(_key=_stable_key(seed)).sort("_key", "request_id")
    if size >= rows.height:
        return ordered.drop("_key")
    if method == "random":
        return ordered.head(size).drop("_key")
    counts = rows.group_by("model").len().sort("model")
    exact = counts.get_column("len").to_numpy() * size / rows.height
    quota = np.floor(exact).astype(int)
    remainder = size - int(quota.sum())
    order = np.lexsort((np.arange(len(exact)), -(exact - quota)))  # largest remainders first, then by name
    quota[order[:remainder]] += 1
    quotas = dict(zip(counts.get_column("model").to_list(), quota.tolist(), strict=True))
    return (
        ordered.with_columns(_rank=pl.int_range(pl.len()).over("model"))
        .filter(pl.col("_rank") < pl.col("model").replace_strict(quotas, return_dtype=pl.Int64))
        .drop("_key", "_rank")
    )


def _learned_moves(policy: Policy, ctx: RoutingContext, calibration: Calibration) -> list[Move]:
    """The moves whose token multipliers the project's runs taught.

    From each of the window's models to each of the policy's, and to itself: a row that stays is re-run too.
    """
    priced = ctx.catalog.models
    moves = (
        calibration.move(b, c)
        for b in sorted(ctx.stats)
        for c in sorted(policy.models() | ({b} if b in priced else set()))
    )
    return [m for m in moves if m.input.info.source == "learned"]


def _estimated_costs(policy: Policy, ctx: RoutingContext, learned: list[Move]) -> pl.Expr:
    """Each row's cost at its route model's list prices (actual cost where the model is not priced).

    Rows of a ``learned`` move have their tokens scaled by its multipliers.
    """
    branches: list[pl.Expr] = [
        pl.when(pl.col("route_model") == m).then(ctx.estimated_cost(m)) for m in sorted(policy.models())
    ]
    listed = pl.coalesce([*branches, pl.col("cost_usd")])
    return piecewise([(move_of(m), scaled_cost(ctx, m)) for m in learned], listed)


def _learned_note(learned: list[Move]) -> str:
    moves = "; ".join(
        f"{m.baseline} -> {m.candidate}: input x{m.input.point:.2f}, output x{m.output.point:.2f}" for m in learned
    )
    runs = sorted({r for m in learned for r in m.input.info.runs})
    return (
        f"perCallEstimateUsd scales the logged tokens by what the project's runs ({', '.join(runs)}) showed: {moves}."
    )


def plan(spec: ExperimentCreate, *, store: Store, catalog: Catalog, logs_root: str) -> Plan:
    """Read the window, route it, keep replayable rows and draw the sample."""
    policy = candidate_policy(spec, store)
    window = window_of(spec)
    columns = [*REPLAY_COLUMNS, "request_json", "response_text", *sorted(policy.columns() | window.filters.columns)]
    frame = load_window(logs_root, window, columns)
    ctx = RoutingContext(catalog, frame)
    learned = _learned_moves(policy, ctx, Calibration(store.list_observations(spec.project_id), catalog))
    replayable = (
        candidate_rows(frame, policy, ctx)
        .with_columns(estimated_cost_usd=_estimated_costs(policy, ctx, learned))
        .filter(
            pl.col("request_json").is_not_null() & pl.col("response_text").is_not_null() & (pl.col("status") == "ok")
        )
        .collect()
    )
    if replayable.height == 0:
        raise EmptyWindowError(
            f"the window has {frame.height:,} rows but none is replayable (prompt and answer logged, status ok)",
            param="windowStart",
        )
    sample_spec = spec.sample
    size = sample_spec.size if sample_spec else 1000
    sample = draw_sample(
        replayable, size, sample_spec.method if sample_spec else "random", sample_spec.seed if sample_spec else 0
    )
    check_prompts(sample)
    notes = [_learned_note(learned)] if learned else []
    if sample.height < size:
        notes.append(
            f"The window has {replayable.height:,} replayable rows, so the run makes {sample.height:,} pairs, "
            f"not {size:,}."
        )
    per_call = _mean(replayable.get_column("estimated_cost_usd"))
    embedding_cost = 0.0
    embedder = spec.embedding_model or DEFAULT_EMBEDDER
    if embedder.startswith("openai:"):
        price = catalog.embeddings.get(embedder.removeprefix("openai:"))
        if price is None:
            raise ConfigError(f"no price for embedding model {embedder!r} in the catalog", param="embeddingModel")
        chars = _mean(replayable.get_column("response_text").str.len_chars())
        embedding_cost = price.input_per_mtok * (2 * chars / CHARS_PER_TOKEN) * sample.height / 1e6
    return Plan(sample, replayable.height, per_call, embedding_cost, notes)


def _mean(series: pl.Series) -> float:
    value = series.mean()
    return float(value) if isinstance(value, int | float) else 0.0


def preflight(spec: ExperimentCreate, project: Project, *, store: Store, catalog: Catalog, logs_root: str) -> Preflight:
    """Price a with-responses run before it is created (DESIGN §6 formulas)."""
    planned = plan(spec, store=store, catalog=catalog, logs_root=logs_root)
    estimated = planned.estimated_cost_usd
    cap = project.experiment_spend_cap_usd
    return Preflight(
        estimate=PreflightEstimate(
            estimated_cost_usd=estimated,
            effective_sample_size=planned.effective,
            row_count_in_window=planned.row_count,
            per_call_estimate_usd=planned.per_call_estimate_usd,
            embedding_cost_usd=planned.embedding_cost_usd,
            notes=planned.notes,
        ),
        spend_cap_usd=cap,
        suggested_spend_cap_usd=suggested_cap(estimated, cap),
        requires_confirmation=estimated > cap,
        auto_cancel_ratio=AUTO_CANCEL_RATIO,
    )


def _call_body(request_json: str) -> dict[str, Any]:
    body = json.loads(request_json)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("request_json is not a chat request")
    return body


def _reservation(row: Mapping[str, Any], body: Mapping[str, Any], price: Price) -> float:
    """A call's estimate to reserve: its prompt and a generous answer (``max_tokens`` when the request sets one)."""
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    output = int(max_tokens) if max_tokens else 2 * int(row["output_tokens"]) + 256
    return price.cost(int(row["input_tokens"]), int(row["cached_input_tokens"]), output)


def build_jobs(sample: pl.DataFrame, catalog: Catalog, credential_of: dict[str, str], skip: set[str]) -> Iterator[Job]:
    """One job per sampled row not yet recorded."""
    for row in sample.iter_rows(named=True):
        if row["request_id"] in skip:
            continue
        model = row["route_model"]
        p = catalog.price(model)
        price = Price(p.input_per_mtok, p.cached_rate, p.output_per_mtok)
        body = _call_body(row["request_json"])
        call = ChatCall(pair_id=row["request_id"], model=model, body=body)
        yield Job(call, credential_of[model], _reservation(row, body, price), price)


def pair_row(outcome: Outcome, base: Mapping[str, Any]) -> dict[str, Any]:
    """A results row from a call's outcome and its log row."""
    result = outcome.result
    assert result is not None
    return {
        "request_id": base["request_id"],
        "timestamp": base["timestamp"],
        "baseline_model": base["model"],
        "candidate_model": outcome.job.call.model,
        "baseline_cost_usd": base["cost_usd"],
        "candidate_cost_usd": outcome.cost_usd,
        "cost_delta_usd": outcome.cost_usd - base["cost_usd"],
        "baseline_latency_ms": base["latency_ms"],
        "candidate_latency_ms": result.latency_ms,
        "candidate_status": result.status,
        "error_type": result.error_type,
        "candidate_status_code": result.status_code,
        "candidate_error_message": result.error_message if result.status == "error" else None,
        "candidate_input_tokens": result.input_tokens,
        "candidate_output_tokens": result.output_tokens,
        "candidate_reported_cost_usd": result.reported_cost_usd,
        "attempts": result.attempts,
        "request_json": base["request_json"],
        "baseline_text": base["response_text"],
        "candidate_text": result.text,
        "similarity": None,
    }


def interrupted_row(base: Mapping[str, Any], reserved_usd: float) -> dict[str, Any]:
    """A results row for a pair whose call was sent but never recorded before a crash: it costs its reservation."""
    return {
        "request_id": base["request_id"],
        "timestamp": base["timestamp"],
        "baseline_model": base["model"],
        "candidate_model": base["route_model"],
        "baseline_cost_usd": base["cost_usd"],
        "candidate_cost_usd": reserved_usd,
        "cost_delta_usd": reserved_usd - base["cost_usd"],
        "baseline_latency_ms": base["latency_ms"],
        "candidate_latency_ms": None,
        "candidate_status": "error",
        "error_type": INTERRUPTED,
        "candidate_status_code": None,
        "candidate_error_message": "sent before the run was interrupted, never recorded: its answer is unknown",
        "candidate_input_tokens": 0,
        "candidate_output_tokens": 0,
        "candidate_reported_cost_usd": None,
        "attempts": 1,
        "request_json": base["request_json"],
        "baseline_text": base["response_text"],
        "candidate_text": None,
        "similarity": None,
    }


def _side_summary(
    n: int, cost: pl.Series, latency: pl.Series, errors: int, routes: pl.Series, in_tok: int, out_tok: int
) -> Summary:
    measured = latency.drop_nulls()
    p50, p95 = np.percentile(measured.to_numpy(), [50, 95]) if measured.len() else (0.0, 0.0)
    shares = routes.value_counts(normalize=True, name="share").sort("share", descending=True)
    total = float(cost.sum())
    return Summary(
        request_count=n,
        cost_usd=total,
        cost_per_request_usd=total / n if n else 0.0,
        latency_p50_ms=float(p50),
        latency_p95_ms=float(p95),
        error_rate=errors / n if n else 0.0,
        input_tokens=in_tok,
        output_tokens=out_tok,
        route_distribution={str(k): float(v) for k, v in shares.iter_rows()},
    )


def summaries(pairs: pl.DataFrame, sample: pl.DataFrame, notes: list[str]) -> tuple[Summary, Summary, Deltas]:
    """Baseline vs candidate over the pairs actually made, with real candidate cost and latency."""
    base = pairs.join(
        sample.select("request_id", "provider", "route_provider", "input_tokens", "output_tokens"), on="request_id"
    )
    n = base.height
    baseline = _side_summary(
        n,
        base.get_column("baseline_cost_usd"),
        base.get_column("baseline_latency_ms"),
        0,
        base.select(pl.concat_str("baseline_model", "provider", separator=":")).to_series(),
        int(base.get_column("input_tokens").sum()),
        int(base.get_column("output_tokens").sum()),
    )
    candidate = _side_summary(
        n,
        base.get_column("candidate_cost_usd"),
        base.get_column("candidate_latency_ms"),
        int((base.get_column("candidate_status") != "ok").sum()),
        base.select(
            pl.concat_str("candidate_model", pl.col("route_provider").fill_null("unknown"), separator=":")
        ).to_series(),
        int(base.get_column("candidate_input_tokens").sum()),
        int(base.get_column("candidate_output_tokens").sum()),
    )
    return baseline, candidate, deltas(baseline, candidate, notes)


def usage_mismatch_note(candidate_input_tokens: np.ndarray, logged_input_tokens: np.ndarray) -> str | None:
    """The suspicious-usage note, when most answered pairs' prompt tokens are far off their logged input tokens.

    The arrays are aligned, one entry per answered pair: the provider's reported prompt tokens and the
    log's ``input_tokens``. A pair is off when the ratio (candidate ÷ logged) is above
    ``USAGE_MISMATCH_FACTOR`` or below its inverse; pairs logged with no input tokens are left out.
    Returns ``None`` unless more than ``USAGE_MISMATCH_SHARE`` of the pairs are off.
    """
    candidate = np.asarray(candidate_input_tokens, dtype=float)
    logged = np.asarray(logged_input_tokens, dtype=float)
    known = logged > 0
    ratio = candidate[known] / logged[known]
    if ratio.size == 0:
        return None
    off = int(np.count_nonzero((ratio > USAGE_MISMATCH_FACTOR) | (ratio < 1 / USAGE_MISMATCH_FACTOR)))
    if off <= USAGE_MISMATCH_SHARE * ratio.size:
        return None
    return (
        f"{USAGE_NOTE_PREFIX} on {off:,} of {ratio.size:,} answered pairs the provider's reported prompt tokens "
        f"differ from the logged input tokens by more than {USAGE_MISMATCH_FACTOR:g}x (median ratio "
        f"{float(np.median(ratio)):.2f}, candidate ÷ logged): the provider's usage or its tokenizer differs from "
        "the logs', and the candidate's cost and the cost delta rest on that usage."
    )


def execute(experiment: Experiment, ctx: RunContext, planned: Plan | None = None) -> Experiment:
    """Run (or resume) a with-responses experiment to its end and store the outcome."""
    spec = spec_of(experiment)
    assert spec.spend_cap_usd is not None
    planned = planned or plan(spec, store=ctx.store, catalog=ctx.catalog, logs_root=ctx.logs_root)
    results = PairStore(ctx.settings.home, experiment.id)
    base_rows = {r["request_id"]: r for r in planned.sample.iter_rows(named=True)}
    notes = list(experiment.notes) or list(planned.notes)
    interrupted = {k: usd for k, usd in unrecorded_calls(results, experiment.id).items() if k in base_rows}
    if interrupted:
        # Sent before a crash but never recorded: the provider may have billed them, so they are not called
        # again, and what they may have cost (their reservation) is spent.
        results.append([interrupted_row(base_rows[k], usd) for k, usd in sorted(interrupted.items())])
        notes.append(interrupted_note(interrupted, "calls"))
    recorded = results.frame()
    spent_before = float(recorded.get_column("candidate_cost_usd").sum() or 0.0)
    models = sorted(set(planned.sample.get_column("route_model").to_list()))
    credential_of, endpoints = endpoints_for(spec, models, ctx.catalog, ctx.credentials)
    every_job = list(build_jobs(planned.sample, ctx.catalog, credential_of, set()))
    reserved = {j.call.pair_id: j.estimate_usd for j in every_job}
    done_ids = set(recorded.get_column("request_id").to_list())
    jobs = [j for j in every_job if j.call.pair_id not in done_ids]
    total = planned.effective
    running = experiment.model_copy(
        update={
            "status": "running",
            "started_at": experiment.started_at or utcnow(),
            "notes": notes,
            "progress": Progress(done=recorded.height, total=total),
            "spend_usd": spent_before,
        }
    )
    ctx.store.put_experiment(running)
    watch = RunWatch(
        lambda: ctx.store.experiment_status(experiment.id),
        spec.spend_cap_usd,
        total,
        ctx.settings.run_timeout_s,
        done=recorded.height,
        spent=spent_before,
        checked_at=recorded.height,
    )

    report = call_and_record(
        jobs,
        run_id=experiment.id,
        cap_usd=spec.spend_cap_usd - spent_before,
        endpoints=endpoints,
        files=results,
        rows_of=lambda outcomes: [pair_row(o, base_rows[o.job.call.pair_id]) for o in outcomes],
        watch=watch,
        save_progress=lambda done, total, spent: ctx.store.update_progress(
            experiment.id, done=done, total=total, spend_usd=spent
        ),
        ctx=ctx,
    )
    reported = {m for m, c in credential_of.items() if endpoints[c].cost_source == "provider"}
    return _finish(running, planned, results, watch, report, spec, ctx, reported, reserved)


def _calibration(
    ok: pl.DataFrame, reserved: dict[str, float], spent: float, estimated: float
) -> tuple[str | None, EstimateError]:
    """The suspicious-usage note (if any) and the estimate error, over the pairs the candidate answered (``ok``)."""
    reservations = pl.DataFrame(
        {"request_id": list(reserved), "reserved_usd": list(reserved.values())},
        schema={"request_id": pl.String, "reserved_usd": pl.Float64},
    )
    ok = ok.join(reservations, on="request_id", how="left")
    note = usage_mismatch_note(
        ok.get_column("candidate_input_tokens").fill_null(0).to_numpy(), ok.get_column("input_tokens").to_numpy()
    )
    error = estimate_error(
        spent,
        estimated,
        ok.get_column("candidate_cost_usd").to_numpy(),
        ok.get_column("reserved_usd").fill_null(0.0).to_numpy(),
    )
    return note, error


def _finish(
    running: Experiment,
    planned: Plan,
    results: PairStore,
    watch: RunWatch,
    report: FanoutReport | None,
    spec: ExperimentCreate,
    ctx: RunContext,
    reported_models: set[str],
    reserved: dict[str, float],
) -> Experiment:
    pairs = results.frame()
    notes = list(running.notes)
    if reported_models:
        # These models' credentials count the cost the endpoint reports: say how many calls reported none.
        answered = pairs.filter(
            pl.col("candidate_model").is_in(sorted(reported_models)) & (pl.col("candidate_status") == "ok")
        )
        notes.append(
            reported_cost_note(answered.height, answered.get_column("candidate_reported_cost_usd").null_count())
        )
    embedder_name = spec.embedding_model or ctx.settings.embedding_model
    api_key = base_url = None
    if embedder_name.startswith("openai:"):
        credential = ctx.credentials.get("pc_openai_default")
        api_key, base_url = credential.api_key("pc_openai_default"), credential.base_url
    embedder = get_embedder(embedder_name, catalog=ctx.catalog, api_key=api_key, base_url=base_url)
    cache = EmbeddingCache(ctx.settings.home / "embeddings.sqlite")
    ok = pairs.get_column("candidate_status") == "ok"
    baseline_texts = pairs.get_column("baseline_text").to_list()
    candidate_texts = [
        t if good else None for t, good in zip(pairs.get_column("candidate_text").to_list(), ok.to_list(), strict=True)
    ]
    calls_spent = float(pairs.get_column("candidate_cost_usd").sum() or 0.0)
    # A paid embedder is checked against the cap before it is called, like any other spend.
    chars = sum(len(t) for t in (*baseline_texts, *candidate_texts) if t)
    embedding_estimate = chars / CHARS_PER_TOKEN * embedder.price_per_mtok / 1e6
    cap = spec.spend_cap_usd or 0.0
    if embedding_estimate and calls_spent + embedding_estimate > cap:
        notes.append(
            f"Similarity was not scored: embedding with {embedder.name} (about ${embedding_estimate:.4f}) would "
            f"pass spendCapUsd ${spec.spend_cap_usd:g} after ${calls_spent:.4f} of calls."
        )
        candidate_texts = [None] * len(candidate_texts)
    scored = score_pairs(embedder, baseline_texts, candidate_texts, cache)
    embedding_spend = scored.tokens * embedder.price_per_mtok / 1e6
    pairs = pairs.with_columns(similarity=pl.Series(scored.similarity).fill_nan(None))
    results.write_final(pairs)
    hist = histogram(pairs.get_column("similarity").fill_null(np.nan).to_numpy())
    spent = calls_spent + embedding_spend
    status, reason = final_status(
        report,
        watch,
        f"spend cap reached: the next calls would pass spendCapUsd ${spec.spend_cap_usd:g}; spent "
        f"${spent:.4f} with {pairs.height:,} of {planned.effective:,} pairs done",
        ctx.store.experiment_status(running.id) == "cancelled",
    )
    baseline: Summary | None = None
    candidate: Summary | None = None
    change: Deltas | None = None
    # Interrupted calls count in the spend, but their answers are unknown: the comparison leaves them out.
    answered = pairs.filter(pl.col("error_type").ne_missing(INTERRUPTED))
    ok_pairs = answered.filter(pl.col("candidate_status") == "ok").join(
        planned.sample.select("request_id", "input_tokens", "output_tokens"), on="request_id"
    )
    usage_note, error = _calibration(ok_pairs, reserved, spent, planned.estimated_cost_usd)
    if status == "completed":
        # What later replays and preflights of the project learn their token multipliers from.
        ctx.store.put_observations(observe(running.id, running.project_id, utcnow(), ok_pairs))
    if usage_note is not None:
        notes.append(usage_note)
    if answered.height:
        baseline, candidate, change = summaries(answered, planned.sample, notes)
    finished = running.model_copy(
        update={
            "status": status,
            "status_reason": reason,
            "progress": Progress(done=pairs.height, total=planned.effective),
            "spend_usd": spent,
            "baseline_summary": baseline,
            "candidate_summary": candidate,
            "deltas": change,
            "notes": notes,
            "embedding_model": embedder.name,
            "similarity_summary": hist.summary(),
            # Only a finished run's spend is comparable with the estimate of all its pairs.
            "estimate_error": error if status == "completed" else None,
            "completed_at": utcnow(),
        }
    )
    return ctx.store.put_experiment(finished)
