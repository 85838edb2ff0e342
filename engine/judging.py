"""Judge runs end to end: stratify an experiment's scored pairs, call the judge under its own cap, summarise.

Judge calls go through the same Ray fan-out and spend-tracking actor as
candidate calls. Each run is immutable: a different rubric, model or sample
is a new run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine import judge
from engine.calibration import JUDGE_ESTIMATE, Calibration, observe
from engine.errors import ConfigError, Conflict
from engine.fanout import Job, Outcome, Price
from engine.pricing import Catalog
from engine.providers import ChatCall
from engine.results import INTERRUPTED, PairStore, ResultFiles
from engine.runs import (
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
from engine.schema import Experiment, JudgeCreate, JudgePreflight, JudgeRun, Observations, Progress, Project
from engine.similarity import bucket_of
from engine.store import new_id, utcnow

CALL_SCHEMA: dict[str, pl.DataType] = {
    "call_id": pl.String(),
    "request_id": pl.String(),
    "call": pl.Int64(),
    "candidate_is_a": pl.Boolean(),
    "status": pl.String(),
    "error_type": pl.String(),
    # Why a call failed, as the provider put it (call files written before these columns read them as null).
    "status_code": pl.Int64(),
    "error_message": pl.String(),
    "winner": pl.String(),
    "reason": pl.String(),
    "reply": pl.String(),
    "cost_usd": pl.Float64(),
    "reported_cost_usd": pl.Float64(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
}
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "bucket": pl.String(),
    "similarity": pl.Float64(),
    "verdict": pl.String(),
    "reason": pl.String(),
    "position_flip": pl.Boolean(),
    "parse_error": pl.Boolean(),
    "cost_usd": pl.Float64(),
}
#: The judge's reply budget per call (the JSON verdict and a one-sentence reason).
JUDGE_MAX_TOKENS = 200


class CallStore(ResultFiles):
    """The judge calls of one run."""

    def __init__(self, home: Any, experiment_id: str, run_id: str) -> None:
        super().__init__(home / "results" / experiment_id / "judge" / run_id, CALL_SCHEMA, "calls.parquet", "call_id")


@dataclass(frozen=True)
class JudgePlan:
    """The pairs to judge (with bucket and order) and what the calls should cost."""

    pairs: pl.DataFrame
    allocation: judge.Allocation
    rubric: str
    per_call_estimate_usd: float
    calls_per_pair: int
    notes: list[str]

    @property
    def estimated_cost_usd(self) -> float:
        """All calls at the per-call estimate."""
        return self.per_call_estimate_usd * self.calls_per_pair * self.pairs.height


def _judgeable(experiment: Experiment, home: Any) -> pl.DataFrame:
    if experiment.mode != "with_responses":
        raise ConfigError(f"experiment {experiment.id!r} is routing-only: there are no answers to judge", param="id")
    if experiment.status in ("queued", "running"):
        raise Conflict(f"experiment {experiment.id!r} is still {experiment.status}; judge it once it ends", param="id")
    pairs = PairStore(home, experiment.id).frame().filter(pl.col("similarity").is_not_null())
    if pairs.height == 0:
        raise ConfigError(f"experiment {experiment.id!r} has no scored pairs to judge", param="id")
    return pairs


def plan_judge(experiment: Experiment, spec: JudgeCreate, ctx: RunContext) -> JudgePlan:
    """Bucket the scored pairs, allocate the stratification, draw the sample and price the calls."""
    price = ctx.catalog.price(spec.judge_model, param="judgeModel")
    pairs = _judgeable(experiment, ctx.settings.home)
    buckets = bucket_of(pairs.get_column("similarity").to_numpy(), (spec.boundaries.mild, spec.boundaries.high))
    pairs = pairs.with_columns(bucket=pl.Series(buckets.tolist(), dtype=pl.String))
    available = dict(pairs.group_by("bucket").len().iter_rows())
    allocation = judge.allocate(spec.stratification.model_dump(), available)
    sample = judge.draw_pairs(pairs, allocation, spec.seed)
    rubric = spec.rubric or judge.DEFAULT_RUBRIC
    notes = allocation.notes()
    if spec.judge_model == experiment.candidate_config.get("model") or spec.judge_model in set(
        sample.get_column("baseline_model").to_list()
    ):
        notes.append(
            f"The judge model {spec.judge_model} also wrote one side of these pairs; judges tend to favour "
            "their own answers, so consider another judge model."
        )
    if spec.order == "both":
        notes.append("order 'both' asks the judge twice per pair (A/B and B/A): twice the calls and cost.")
    prompt_tokens = [
        judge.estimate_tokens(rubric, judge.request_text(r["request_json"]), r["baseline_text"], r["candidate_text"])
        for r in sample.iter_rows(named=True)
    ]
    sample = sample.with_columns(estimated_prompt_tokens=pl.Series(prompt_tokens, dtype=pl.Int64))
    mean_prompt = float(np.mean(prompt_tokens)) if prompt_tokens else 0.0
    mean_reply = float(judge.VERDICT_TOKENS)
    learned = Calibration(ctx.store.list_observations(experiment.project_id), ctx.catalog).move(
        JUDGE_ESTIMATE, spec.judge_model
    )
    if learned.input.info.source == "learned":
        mean_prompt *= learned.input.point
        mean_reply *= learned.output.point
        notes.append(
            f"perCallEstimateUsd scales the estimated prompt and reply tokens by what the project's judge runs "
            f"({', '.join(learned.input.info.runs)}) showed for {spec.judge_model}: prompt x{learned.input.point:.2f}, "
            f"reply x{learned.output.point:.2f}."
        )
    per_call = (mean_prompt * price.input_per_mtok + mean_reply * price.output_per_mtok) / 1e6
    return JudgePlan(sample, allocation, rubric, per_call, 2 if spec.order == "both" else 1, notes)


def judge_observations(run: JudgeRun, made: pl.DataFrame, pairs: pl.DataFrame) -> Observations:
    """A completed judge run's answered calls: estimated vs reported tokens (what later judge preflights learn)."""
    answered = (
        made.filter(pl.col("status") == "ok")
        .join(pairs.select("request_id", "estimated_prompt_tokens"), on="request_id")
        .select(
            pl.lit(JUDGE_ESTIMATE).alias("baseline_model"),
            pl.lit(run.judge_model).alias("candidate_model"),
            pl.col("call_id").alias("request_id"),
            pl.col("estimated_prompt_tokens").alias("input_tokens"),
            pl.lit(judge.VERDICT_TOKENS, pl.Int64).alias("output_tokens"),
            pl.col("input_tokens").alias("candidate_input_tokens"),
            pl.col("output_tokens").alias("candidate_output_tokens"),
        )
    )
    return observe(run.id, run.project_id, utcnow(), answered)


def preflight_judge(experiment: Experiment, spec: JudgeCreate, project: Project, ctx: RunContext) -> JudgePreflight:
    """Price a judge run (DESIGN §7)."""
    planned = plan_judge(experiment, spec, ctx)
    estimated = planned.estimated_cost_usd
    cap = project.judge_spend_cap_usd
    return JudgePreflight(
        effective_pair_count=planned.allocation.total,
        effective_by_bucket=planned.allocation.effective,
        estimated_cost_usd=estimated,
        per_call_estimate_usd=planned.per_call_estimate_usd,
        spend_cap_usd=cap,
        suggested_spend_cap_usd=suggested_cap(estimated, cap),
        requires_confirmation=estimated > cap,
        notes=planned.notes,
        rubric=planned.rubric,
        rubric_hash=judge.rubric_hash(planned.rubric),
    )


def judge_credential(spec: JudgeCreate, catalog: Catalog) -> str:
    """The credential the judge is called through: ``judgeCredentialId``, else its vendor's ``pc_<vendor>_default``."""
    if spec.judge_credential_id is not None:
        return spec.judge_credential_id
    return f"pc_{catalog.price(spec.judge_model, param='judgeModel').provider}_default"


def validate_judge(spec: JudgeCreate, project: Project) -> float:
    """The run's cap: required and at most the project's ``judge_spend_cap_usd``."""
    return check_spend_cap(spec.spend_cap_usd, project.judge_spend_cap_usd, "judge_spend_cap_usd", "a judge run")


def new_judge_run(experiment: Experiment, spec: JudgeCreate, planned: JudgePlan, cap: float) -> JudgeRun:
    """A queued judge run."""
    return JudgeRun(
        id=new_id("jr"),
        experiment_id=experiment.id,
        project_id=experiment.project_id,
        status="queued",
        judge_model=spec.judge_model,
        judge_credential_id=spec.judge_credential_id,
        rubric=planned.rubric,
        rubric_hash=judge.rubric_hash(planned.rubric),
        order=spec.order,
        stratification=spec.stratification,
        boundaries=spec.boundaries,
        seed=spec.seed,
        effective_by_bucket=planned.allocation.effective,
        spend_cap_usd=cap,
        progress=Progress(done=0, total=planned.pairs.height),
        notes=planned.notes,
        created_at=utcnow(),
    )


def spec_of(run: JudgeRun) -> JudgeCreate:
    """The create body a judge run was made from."""
    return JudgeCreate(
        judge_model=run.judge_model,
        judge_credential_id=run.judge_credential_id,
        rubric=run.rubric,
        stratification=run.stratification,
        order=run.order,
        boundaries=run.boundaries,
        seed=run.seed,
        spend_cap_usd=run.spend_cap_usd,
    )


def _jobs(
    planned: JudgePlan, spec: JudgeCreate, credential_id: str, price: Price, skip: set[str]
) -> tuple[list[Job], dict[str, bool]]:
    """The judge calls still to make, and for every call whether the candidate is answer A."""
    rows = planned.pairs.to_dicts()
    first = judge.candidate_first([r["request_id"] for r in rows], spec.seed)
    jobs = []
    orientation: dict[str, bool] = {}
    for row, cand_a in zip(rows, first.tolist(), strict=True):
        orders = [cand_a, not cand_a] if spec.order == "both" else [cand_a]
        request = judge.request_text(row["request_json"])
        for n, candidate_is_a in enumerate(orders, start=1):
            call_id = f"{row['request_id']}#{n}"
            orientation[call_id] = candidate_is_a
            if call_id in skip:
                continue
            a, b = (
                (row["candidate_text"], row["baseline_text"])
                if candidate_is_a
                else (row["baseline_text"], row["candidate_text"])
            )
            body = {
                "messages": judge.judge_messages(planned.rubric, request, a, b),
                "temperature": 0,
                "max_tokens": JUDGE_MAX_TOKENS,
                "response_format": {"type": "json_object"},
            }
            estimate = price.cost(judge.estimate_tokens(planned.rubric, request, a, b), 0, JUDGE_MAX_TOKENS)
            jobs.append(Job(ChatCall(call_id, spec.judge_model, body), credential_id, estimate, price))
    return jobs, orientation


def _call_row(outcome: Outcome, candidate_is_a: bool) -> dict[str, Any]:
    result = outcome.result
    assert result is not None
    request_id, _, n = outcome.job.call.pair_id.rpartition("#")
    winner, reason = judge.parse_winner(result.text) if result.status == "ok" else (None, None)
    return {
        "call_id": outcome.job.call.pair_id,
        "request_id": request_id,
        "call": int(n),
        "candidate_is_a": candidate_is_a,
        "status": result.status,
        "error_type": result.error_type,
        "status_code": result.status_code,
        "error_message": result.error_message if result.status == "error" else None,
        "winner": winner,
        "reason": reason,
        "reply": result.text,
        "cost_usd": outcome.cost_usd,
        "reported_cost_usd": result.reported_cost_usd,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
    }


def interrupted_call(call_id: str, reserved_usd: float) -> dict[str, Any]:
    """A call row for a judge call sent but never recorded before a crash: no verdict, its reservation spent."""
    request_id, _, n = call_id.rpartition("#")
    return {
        "call_id": call_id,
        "request_id": request_id,
        "call": int(n) if n.isdigit() else 1,
        "candidate_is_a": None,
        "status": "error",
        "error_type": INTERRUPTED,
        "status_code": None,
        "error_message": "sent before the run was interrupted, never recorded: its answer is unknown",
        "winner": None,
        "reason": None,
        "reply": None,
        "cost_usd": reserved_usd,
        "reported_cost_usd": None,
        "input_tokens": 0,
        "output_tokens": 0,
    }


def verdict_rows(calls: pl.DataFrame, pairs: pl.DataFrame, both: bool) -> list[dict[str, Any]]:
    """One verdict per judged pair from its call(s); a call that broke the contract makes a parse error."""
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for call in calls.filter(pl.col("error_type").ne_missing(INTERRUPTED)).sort("call").iter_rows(named=True):
        by_pair.setdefault(call["request_id"], []).append(call)
    rows = []
    for pair in pairs.iter_rows(named=True):
        made = by_pair.get(pair["request_id"])
        if not made or (both and len(made) < 2):
            continue  # not judged (cap, cancel): neither a verdict nor a parse error
        verdicts = [judge.to_verdict(c["winner"], c["candidate_is_a"]) for c in made]
        if both:
            verdict, flip = judge.combine_orders(verdicts[0], verdicts[1])
        else:
            verdict, flip = verdicts[0], None
        rows.append(
            {
                "request_id": pair["request_id"],
                "bucket": pair["bucket"],
                "similarity": pair["similarity"],
                "verdict": verdict,
                "reason": next((c["reason"] for c in made if c["reason"]), None),
                "position_flip": flip,
                "parse_error": verdict is None,
                "cost_usd": sum(c["cost_usd"] for c in made),
            }
        )
    return rows


def execute_judge(run: JudgeRun, experiment: Experiment, ctx: RunContext, planned: JudgePlan | None = None) -> JudgeRun:
    """Make the run's calls under its cap and store the summary."""
    spec = spec_of(run)
    planned = planned or plan_judge(experiment, spec, ctx)
    price_entry = ctx.catalog.price(spec.judge_model, param="judgeModel")
    price = Price(price_entry.input_per_mtok, price_entry.cached_rate, price_entry.output_per_mtok)
    credential_id = judge_credential(spec, ctx.catalog)
    judge_endpoint = endpoint(ctx.credentials, credential_id)
    calls = CallStore(ctx.settings.home, experiment.id, run.id)
    notes = list(run.notes)
    interrupted = unrecorded_calls(calls, run.id)
    if interrupted:
        # Sent before a crash, never recorded: not made again, and their reservations are spent.
        calls.append([interrupted_call(key, usd) for key, usd in sorted(interrupted.items())])
        notes.append(interrupted_note(interrupted, "judge calls"))
    done_calls = calls.done_ids()
    every_job, orientation = _jobs(planned, spec, credential_id, price, set())
    reserved = {j.call.pair_id: j.estimate_usd for j in every_job}
    jobs = [j for j in every_job if j.call.pair_id not in done_calls]
    spent_before = float(calls.frame().get_column("cost_usd").sum() or 0.0)
    total = len(jobs) + len(done_calls)
    running = run.model_copy(
        update={
            "status": "running",
            "started_at": run.started_at or utcnow(),
            "notes": notes,
            "spend_usd": spent_before,
        }
    )
    ctx.store.put_judge_run(running)
    watch = RunWatch(
        lambda: ctx.store.judge_run_status(run.id),
        run.spend_cap_usd,
        total,
        ctx.settings.run_timeout_s,
        done=len(done_calls),
        spent=spent_before,
        checked_at=len(done_calls),
    )

    report = call_and_record(
        jobs,
        run_id=run.id,
        cap_usd=run.spend_cap_usd - spent_before,
        endpoints={credential_id: judge_endpoint},
        files=calls,
        rows_of=lambda outcomes: [_call_row(o, orientation[o.job.call.pair_id]) for o in outcomes],
        watch=watch,
        save_progress=lambda done, total, spent: ctx.store.update_judge_progress(
            run.id, done=done, total=total, spend_usd=spent
        ),
        ctx=ctx,
        caller="judge",
    )
    made = calls.frame()
    calls.write_final(made)
    if judge_endpoint.cost_source == "provider":
        answered = made.filter(pl.col("status") == "ok")
        notes.append(reported_cost_note(answered.height, answered.get_column("reported_cost_usd").null_count()))
    rows = verdict_rows(made, planned.pairs, spec.order == "both")
    spent = float(made.get_column("cost_usd").sum() or 0.0)
    status, reason = final_status(
        report,
        watch,
        f"spend cap reached: the next judge calls would pass spendCapUsd ${run.spend_cap_usd:g}; spent "
        f"${spent:.4f} with {len(rows):,} of {planned.pairs.height:,} pairs judged",
        ctx.store.judge_run_status(run.id) == "cancelled",
    )
    status = "complete" if status == "completed" else status  # the guide's word for a judge run that ended well
    calls.dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=VERDICT_SCHEMA).write_parquet(calls.dir / "verdicts.parquet")
    answered = made.filter(pl.col("status") == "ok")
    error = estimate_error(
        spent,
        planned.estimated_cost_usd,
        answered.get_column("cost_usd").to_numpy(),
        answered.get_column("call_id").replace_strict(reserved, default=0.0, return_dtype=pl.Float64).to_numpy(),
    )
    if status == "complete":
        ctx.store.put_observations(judge_observations(run, made, planned.pairs))
    finished = running.model_copy(
        update={
            "status": status,
            "status_reason": reason,
            "spend_usd": spent,
            "progress": Progress(done=len(made), total=total),
            "summary": judge.summarize(rows, spent, both_orders=spec.order == "both"),
            # Only a finished run's spend is comparable with the estimate of all its calls.
            "estimate_error": error if status == "complete" else None,
            "notes": notes,
            "completed_at": utcnow(),
        }
    )
    return ctx.store.put_judge_run(finished)


def verdicts(ctx: RunContext, run: JudgeRun) -> pl.DataFrame:
    """The run's per-pair verdicts (empty when nothing was judged)."""
    path = CallStore(ctx.settings.home, run.experiment_id, run.id).dir / "verdicts.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=VERDICT_SCHEMA)
