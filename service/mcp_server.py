"""``rehearsal mcp``: experiments, judge runs and scheduled experiments as MCP tools, over stdio.

Every tool calls one method of an *API*: either :class:`LocalApi`, which calls
the service layer (``service.core``, ``service.schedules``) with the key's
project scope exactly as the REST routes do, or (``--server URL``) the
:class:`~service.client.RestClient` of a running ``rehearsal serve``. Both
answer the REST API's ``data`` objects, so a tool has one body whichever is
behind it. A tool answers that object as structured content, plus a short
readable summary and the same object as JSON text (for clients that show the
model only text); a failure is a tool error naming its type and field.

Runs are asynchronous, as over REST: ``create_*`` answers ``queued`` and the
run executes as a Prefect flow run on the runner of ``rehearsal serve``, so
locally the tools that start runs (and the schedule tools) need
``PREFECT_API_URL`` pointing at that server, and the same ``REHEARSAL_HOME``.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from engine.errors import ConfigError, RehearsalError, Unauthorized
from engine.results import SORTS
from engine.schedules import ScheduledExperiment, ScheduledExperimentCreate, ScheduledExperimentUpdate
from engine.schema import (
    Experiment,
    ExperimentCreate,
    JudgeCreate,
    JudgePreflight,
    JudgeRun,
    LoggedRequest,
    PairDetail,
    Preflight,
    RoutingConfigVersion,
    Status,
    VerdictRow,
)
from engine.settings import get_settings
from engine.similarity import Histogram
from service import core
from service.client import KEY_ENV, UNFINISHED, RestClient
from service.local_api import LocalApi
from service.serve import discover_prefect_api

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Page = tuple[list[dict[str, Any]], str | None]

ExperimentId = Annotated[str, Field(min_length=1, description="The experiment's id (exp_…).")]
JudgeRunId = Annotated[str, Field(min_length=1, description="The judge run's id (jr_…).")]
ScheduleId = Annotated[str, Field(min_length=1, description="The scheduled experiment's id (sched_…).")]
ProjectFilter = Annotated[str | None, Field(description="Only this project's (default: every project of the key).")]
Limit = Annotated[int, Field(ge=1, le=100, description="Items per page.")]
RowLimit = Annotated[int, Field(ge=1, le=500, description="Rows per page.")]
Cursor = Annotated[str | None, Field(description="`next_cursor` of the previous page, for the next one.")]
MinSimilarity = Annotated[float | None, Field(ge=0, le=1, description="Only pairs at or above this similarity.")]
MaxSimilarity = Annotated[float | None, Field(ge=0, le=1, description="Only pairs at or below this similarity.")]
Sort = Literal[
    "similarity_asc", "similarity_desc", "cost_delta_desc", "cost_delta_asc", "timestamp_desc", "timestamp_asc"
]
assert set(Sort.__args__) == set(SORTS)  # type: ignore[attr-defined]


class BodyOf:
    """Metadata for a request-body parameter: a plain object, advertised with the JSON schema of ``model``.

    The service layer validates the body (``parse_body``) exactly as it does a REST body, so a bad body answers
    the same one-line error naming the field. The schema has camelCase names (snake_case is accepted too) and
    its references inlined; it is built when a server lists its tools, not when this module is imported.
    """

    def __init__(self, model: type[BaseModel], description: str) -> None:
        self.model = model
        self.description = description

    def __get_pydantic_json_schema__(self, _: Any, __: Any) -> dict[str, Any]:
        schema = self.model.model_json_schema(by_alias=True)
        defs = schema.pop("$defs", {})

        def inline(node: Any) -> Any:
            if isinstance(node, list):
                return [inline(item) for item in node]
            if not isinstance(node, dict):
                return node
            if "$ref" in node:
                target = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
                return inline({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            return {key: inline(value) for key, value in node.items()}

        return {**inline(schema), "description": self.description}


ExperimentBody = Annotated[dict[str, Any], BodyOf(ExperimentCreate, "The body of POST /manage/v1/experiments.")]
JudgeBody = Annotated[
    dict[str, Any] | None,
    BodyOf(JudgeCreate, "The body of POST /manage/v1/experiments/{id}/judge; all optional."),
]
ScheduleBody = Annotated[
    dict[str, Any], BodyOf(ScheduledExperimentCreate, "The body of POST /manage/v1/scheduled_experiments.")
]
ScheduleChanges = Annotated[
    dict[str, Any], BodyOf(ScheduledExperimentUpdate, "The fields to change; the others stay as they are.")
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
#: Starts work that may call providers (with-responses runs, judge runs).
STARTS_RUN = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
ENDS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


class PageOf(BaseModel, Generic[T]):
    """A page of objects, as the REST API answers lists; pass ``next_cursor`` as ``cursor`` for the next one."""

    data: list[T]
    next_cursor: str | None = None
    has_more: bool = False


class Promotion(BaseModel):
    """A promoted experiment and the routing-config version it wrote."""

    experiment: Experiment
    routing_config: RoutingConfigVersion


Api = LocalApi | RestClient


# summaries -------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def experiment_summary(e: Experiment) -> str:
    """One line: status, then deltas, similarity headline, spend and reason as far as they exist."""
    head = f"experiment {e.id} ({e.name or e.candidate_policy}, {e.mode}) {e.status}"
    if e.status in UNFINISHED:
        done = f", {e.progress.done:,}/{e.progress.total:,} pairs" if e.progress.total else ""
        return f"{head}{done}; poll get_experiment until it has ended"
    parts = []
    if e.deltas is not None:
        d = e.deltas
        usd = f"{'-' if d.cost_delta_usd < 0 else '+'}${abs(d.cost_delta_usd):,.4f}"
        parts.append(
            f"cost {_pct(d.cost_delta_pct)} ({usd}), latency p50 {_pct(d.latency_p50_delta_pct)}, "
            f"p95 {_pct(d.latency_p95_delta_pct)}, error rate {_pct(d.error_rate_delta_pct)}"
        )
    if e.similarity_summary is not None:
        parts.append(e.similarity_summary.headline)
    if e.mode == "with_responses":
        parts.append(f"spent ${e.spend_usd:,.4f}" + (f" of a ${e.spend_cap_usd:g} cap" if e.spend_cap_usd else ""))
    if e.verdict:
        parts.append(f"verdict: {e.verdict.get('summary') or e.verdict.get('verdict')}")
    if e.promoted_version is not None:
        parts.append(f"promoted as production v{e.promoted_version}")
    if e.status_reason:
        parts.append(e.status_reason)
    return head + (": " + "; ".join(parts) if parts else "")


def _list_summary(noun: str, order: str, lines: list[str], page: PageOf[Any]) -> str:
    head = f"{len(lines)} {noun}{'' if len(lines) == 1 else 's'}{order}"
    more = f"\nmore: cursor={page.next_cursor}" if page.next_cursor else ""
    return head + "".join(f"\n- {line}" for line in lines) + more


def experiments_summary(page: PageOf[Experiment]) -> str:
    """One line per experiment."""
    return _list_summary("experiment", ", newest first", [experiment_summary(e) for e in page.data], page)


def _failure(p: PairDetail) -> str:
    """`` (invalid_request, 404: The model … does not exist)``: why a candidate call failed, when it did."""
    parts = [p.error_type] if p.error_type else []
    said = p.candidate_error_message and p.candidate_error_message[:200]
    if p.candidate_status_code is not None and p.candidate_status != "ok":
        parts.append(f"{p.candidate_status_code}: {said}" if said else str(p.candidate_status_code))
    elif said:
        parts.append(said)
    return f" ({', '.join(parts)})" if parts else ""


def pairs_summary(page: PageOf[PairDetail]) -> str:
    """One line per pair."""
    lines = [
        f"{p.request_id}: similarity {'n/a' if p.similarity is None else f'{p.similarity:.3f}'}, candidate "
        f"{p.candidate_status}{_failure(p)}, {p.baseline_model} -> {p.candidate_model}"
        for p in page.data
    ]
    return _list_summary("pair", "", lines, page)


def pair_summary(pair: PairDetail) -> str:
    """The pair's similarity and models (both answers are in the structured content)."""
    return pairs_summary(PageOf[PairDetail](data=[pair])).split("\n- ", 1)[1]


def logged_summary(entry: LoggedRequest) -> str:
    """Which model answered, how, and whether the texts were logged (they are in the structured content)."""
    texts = "prompt and answer in the structured content" if entry.request_json else "metadata only, no texts"
    return (
        f"request {entry.request_id} of {entry.project_id} at {entry.timestamp:%Y-%m-%d %H:%M}Z: {entry.model} "
        f"({entry.provider}) {entry.status}, {entry.input_tokens:,} in / {entry.output_tokens:,} out tokens; {texts}"
    )


def histogram_summary(h: Histogram) -> str:
    """The headline, the mean and the counts per bucket."""
    mean = "n/a" if h.mean_similarity is None else f"{h.mean_similarity:.3f}"
    counts = ", ".join(f"[{b.lower:.1f}, {b.upper:.1f}): {b.count}" for b in h.buckets)
    return f"{h.headline}; mean similarity {mean}, {h.unscored_count:,} unscored. Pairs per bucket: {counts}"


def preflight_summary(p: Preflight) -> str:
    """The estimate and the cap to pass."""
    e = p.estimate
    notes = "".join(f"\n- {n}" for n in e.notes)
    return (
        f"{e.effective_sample_size:,} pairs ({e.row_count_in_window:,} replayable rows in the window): estimated "
        f"${e.estimated_cost_usd:,.4f}; suggested spendCapUsd ${p.suggested_spend_cap_usd:,.4f} "
        f"(project cap ${p.spend_cap_usd:g}){'; needs confirmation' if p.requires_confirmation else ''}{notes}"
    )


def judge_preflight_summary(p: JudgePreflight) -> str:
    """The pairs per bucket, the estimate and the cap to pass."""
    buckets = ", ".join(f"{k} {v}" for k, v in p.effective_by_bucket.items())
    notes = "".join(f"\n- {n}" for n in p.notes)
    return (
        f"{p.effective_pair_count:,} pairs to judge ({buckets}): estimated ${p.estimated_cost_usd:,.4f}; "
        f"suggested spendCapUsd ${p.suggested_spend_cap_usd:,.4f} (project cap ${p.spend_cap_usd:g}){notes}"
    )


def judge_run_summary(run: JudgeRun) -> str:
    """Status, then the verdict shares with their 95% intervals."""
    head = f"judge run {run.id} of {run.experiment_id} ({run.judge_model}) {run.status}"
    if run.status in UNFINISHED:
        return f"{head}, {run.progress.done:,}/{run.progress.total:,} pairs; poll get_judge_run until it has ended"
    parts = []
    summary = run.summary or {}
    if summary:
        cis = summary.get("verdict_breakdown_ci_95", {})
        shares = [
            f"{verdict} {_share(share)} [{_share(cis.get(verdict, {}).get('lower'))}, "
            f"{_share(cis.get(verdict, {}).get('upper'))}]"
            for verdict, share in summary.get("verdict_breakdown", {}).items()
        ]
        parts.append(f"{summary.get('judged_count', 0):,} judged: " + ", ".join(shares))
        parts.append(f"{summary.get('parse_errors', 0)} parse errors")
        if summary.get("position_bias_warning"):
            parts.append(f"WARNING {summary['position_bias_warning']}")
    parts.append(f"spent ${run.spend_usd:,.4f} of a ${run.spend_cap_usd:g} cap")
    if run.status_reason:
        parts.append(run.status_reason)
    return f"{head}: " + "; ".join(parts)


def judge_runs_summary(page: PageOf[JudgeRun]) -> str:
    """One line per judge run."""
    return _list_summary("judge run", ", newest first", [judge_run_summary(r) for r in page.data], page)


def verdicts_summary(page: PageOf[VerdictRow]) -> str:
    """One line per judged pair, worst first."""
    lines = [
        f"{v.request_id}: {v.verdict or 'parse error'} ({v.bucket}, similarity "
        f"{'n/a' if v.similarity is None else f'{v.similarity:.3f}'}): {(v.reason or '')[:160]}"
        for v in page.data
    ]
    return _list_summary("judged pair", ", worst first", lines, page)


def schedule_summary(s: ScheduledExperiment) -> str:
    """State, cron, window, next fire, last verdict and cost projection."""
    parts = [f"cron '{s.cron_expression}' (UTC) over the last {s.window_hours} h"]
    if s.next_run_at is not None:
        parts.append(f"next run {s.next_run_at:%Y-%m-%d %H:%M}Z")
    if s.last_experiment_id:
        parts.append(f"last run {s.last_experiment_id}")
    if s.last_verdict is not None:
        parts.append(f"last verdict: {s.last_verdict.summary}")
    cost = "" if s.monthly_cost_projection_usd is None else f", up to ${s.monthly_cost_projection_usd:,.2f}/month"
    parts.append(f"{s.runs_per_month} runs/month{cost}")
    return f"scheduled experiment {s.id} ({s.name}) {s.status}: " + "; ".join(parts)


def schedules_summary(page: PageOf[ScheduledExperiment]) -> str:
    """One line per schedule."""
    return _list_summary("scheduled experiment", ", newest first", [schedule_summary(s) for s in page.data], page)


def promotion_summary(p: Promotion) -> str:
    """What was written where."""
    v = p.routing_config
    return (
        f"experiment {p.experiment.id} promoted: its candidate ({v.policy}) is now version {v.version} of "
        f'project {v.project_id}\'s \'{v.slug}\' routing config (use it as "@{v.slug}" or "@{v.slug}:{v.version}")'
    )


# answers ---------------------------------------------------------------------------------------
def error_result(exc: RehearsalError) -> CallToolResult:
    """A tool error: ``type [field]: message``, the REST error's parts on one line."""
    where = f" [{exc.param}]" if exc.param else ""
    return CallToolResult(
        content=[TextContent(type="text", text=f"{exc.error_type}{where}: {exc.message}")], is_error=True
    )


def answer(call: Callable[[], Any], model: type[M], summarize: Callable[[M], str]) -> CallToolResult:
    """Run ``call`` (an API call answering a REST ``data`` object): the object, its summary, or the tool error."""
    try:
        data = call()
    except RehearsalError as exc:
        return error_result(exc)
    text = [
        TextContent(type="text", text=summarize(model.model_validate(data))),
        TextContent(type="text", text=json.dumps(data)),
    ]
    return CallToolResult(content=text, structured_content=data)


def answer_page(
    call: Callable[[], Page | list[dict[str, Any]]], item: type[M], summarize: Callable[[PageOf[M]], str]
) -> CallToolResult:
    """``answer`` for a list: the REST page envelope ``{data, next_cursor, has_more}``."""

    def page() -> dict[str, Any]:
        found = call()
        items, next_cursor = found if isinstance(found, tuple) else (found, None)
        return {"data": items, "next_cursor": next_cursor, "has_more": next_cursor is not None}

    return answer(page, PageOf[item], summarize)  # type: ignore[valid-type]


INSTRUCTIONS = """\
rehearsal answers "what would have happened" for a routing change, by replaying a project's logged LLM traffic
through a candidate routing config. Routing-only experiments are free (cost, latency, errors, route mix); with-responses
experiments re-send a sample of the logged prompts to the candidate for real, under a spend cap, and score how similar
the answers are; a judge run then asks a third model whether divergent answers are worse or just different.
Typical flow: estimate_experiment -> create_experiment -> get_experiment until it has ended ->
get_experiment_similarity_histogram and get_experiment_results -> estimate_judge_run -> create_judge_run ->
get_judge_run -> promote_experiment. Scheduled experiments ask the same question on a cron with success criteria.
Runs are asynchronous: create answers "queued"; poll. Times are UTC, ISO 8601."""


def build_server(api: Api, *, projects: list[str] | None = None) -> MCPServer:
    """The MCP server with every tool over ``api``; ``projects`` (the key's, when known) go into its instructions."""
    from mcp.server.mcpserver import MCPServer

    scope = "" if projects is None else f"\nThis key may use the projects: {', '.join(projects) or 'none'}."
    server = MCPServer(name="rehearsal", instructions=INSTRUCTIONS + scope, version=_version(), log_level="WARNING")
    for register in (_experiment_tools, _judge_tools, _schedule_tools):
        register(server, api)
    return server


def _registrar(server: MCPServer, annotations: ToolAnnotations) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding a function as a tool: its name, its (dedented) docstring, its typed parameters."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
        return fn

    return register


def _experiment_tools(server: MCPServer, api: Api) -> None:
    tool = partial(_registrar, server)

    @tool(STARTS_RUN)
    def create_experiment(experiment: ExperimentBody) -> Annotated[CallToolResult, Experiment]:
        """Start an experiment: replay a window of a project's logged traffic through a candidate routing config.

        `experiment` is the body of POST /manage/v1/experiments (camelCase or snake_case names). It answers at once
        with status "queued"; call get_experiment until the status is completed, failed or cancelled.
        - mode "routing_only" (default) is free: cost, latency p50/p95, error rate and route mix, baseline vs candidate.
        - mode "with_responses" re-sends `sample.size` logged prompts (1,000-50,000; fewer when the window has fewer)
          to the candidate for real and scores answer similarity; it needs `spendCapUsd` (call estimate_experiment
          first for the cost and a suggested cap).
        candidatePolicy and candidateConfig: single {model, provider_credential_id?}; ab_test {variants: [{weight,
        config}]}; fallback {attempts: [{model, timeout_ms?}], retry_on?}; cost_optimized {allowed_models,
        quality_tier?}; latency_optimized {allowed_models}; cascade {steps: [{model, escalate_if}]}; custom_rules
        {rules: [{if, then}, ..., {else}]}. A nested config is {model}, {policy, config} or a saved config "@slug".
        ensemble is refused. The window is [windowStart, windowEnd) in UTC.
        """
        return answer(partial(api.create_experiment, experiment), Experiment, experiment_summary)

    @tool(READ)
    def estimate_experiment(experiment: ExperimentBody) -> Annotated[CallToolResult, Preflight]:
        """Estimate a with-responses experiment before running it: pairs it would send, cost, and a spendCapUsd.

        Takes the same body as create_experiment (mode defaults to with_responses here). Nothing is stored or called.
        """
        return answer(partial(api.preflight_experiment, experiment), Preflight, preflight_summary)

    @tool(READ)
    def get_experiment(experiment_id: ExperimentId) -> Annotated[CallToolResult, Experiment]:
        """One experiment: status, progress, spend, baseline and candidate summaries, deltas, notes and similarity.

        Deltas are candidate minus baseline; percentages are relative to the baseline (negative cost = cheaper).
        """
        return answer(partial(api.get_experiment, experiment_id), Experiment, experiment_summary)

    @tool(READ)
    def list_experiments(
        project_id: ProjectFilter = None, status: Status | None = None, limit: Limit = 20, cursor: Cursor = None
    ) -> Annotated[CallToolResult, PageOf[Experiment]]:
        """List experiments, newest first, optionally of one project and in one status; pages with a cursor."""
        page = partial(api.list_experiments, project_id=project_id, status=status, limit=limit, cursor=cursor)
        return answer_page(page, Experiment, experiments_summary)

    @tool(READ)
    def get_experiment_results(
        experiment_id: ExperimentId,
        sort: Sort = "timestamp_desc",
        candidate_status: Literal["ok", "error", "any"] = "any",
        min_similarity: MinSimilarity = None,
        max_similarity: MaxSimilarity = None,
        limit: RowLimit = 50,
        cursor: Cursor = None,
    ) -> Annotated[CallToolResult, PageOf[PairDetail]]:
        """Per-pair results of a with-responses experiment: models, cost, latency, status and similarity per request.

        sort similarity_asc lists the most divergent answers first. Any similarity filter leaves out unscored pairs
        (candidate errors, empty answers). The answers themselves: get_experiment_pair with a row's request_id.
        """
        query: dict[str, Any] = {
            "sort": sort,
            "candidate_status": candidate_status,
            "min_similarity": min_similarity,
            "max_similarity": max_similarity,
            "limit": limit,
            "cursor": cursor,
        }
        return answer_page(partial(api.experiment_results, experiment_id, **query), PairDetail, pairs_summary)

    @tool(READ)
    def get_experiment_pair(
        experiment_id: ExperimentId, request_id: Annotated[str, Field(min_length=1)]
    ) -> Annotated[CallToolResult, PairDetail]:
        """One pair of a with-responses experiment with both answers: the logged (baseline) one and the candidate's."""
        return answer(partial(api.experiment_pair, experiment_id, request_id), PairDetail, pair_summary)

    @tool(READ)
    def get_logged_request(
        request_id: Annotated[str, Field(min_length=1, description="The logged request's id (a pair's request_id).")],
        project_id: ProjectFilter = None,
    ) -> Annotated[CallToolResult, LoggedRequest]:
        """One request as the gateway logged it: model, tokens, cost, latency, the chat request and the answer."""
        return answer(partial(api.get_logged_request, request_id, project_id=project_id), LoggedRequest, logged_summary)

    @tool(READ)
    def get_experiment_similarity_histogram(
        experiment_id: ExperimentId,
        threshold: Annotated[float, Field(ge=0, le=1, description="Agreement threshold.")] = 0.85,
    ) -> Annotated[CallToolResult, Histogram]:
        """Similarity of a with-responses experiment's answers: ten buckets over [0, 1], mean, agreement headline.

        Agreement is the share of scored pairs at or above `threshold`. Rough reading of a similarity: >= 0.95
        near-identical, 0.80-0.95 same content in other words, 0.60-0.80 worth a look, < 0.60 a different answer.
        """
        histogram = partial(api.experiment_histogram, experiment_id, threshold=threshold)
        return answer(histogram, Histogram, histogram_summary)

    @tool(ENDS)
    def cancel_experiment(experiment_id: ExperimentId) -> Annotated[CallToolResult, Experiment]:
        """Stop a queued or running experiment; calls in flight finish and are recorded (and paid)."""
        return answer(partial(api.cancel_experiment, experiment_id), Experiment, experiment_summary)

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False))
    def promote_experiment(experiment_id: ExperimentId) -> Annotated[CallToolResult, Promotion]:
        """Adopt a completed experiment's candidate: save it as the next version of the project's "production" config.

        Only do this when the user asked to promote. Earlier versions are kept.
        """
        return answer(partial(api.promote_experiment, experiment_id), Promotion, promotion_summary)


def _judge_tools(server: MCPServer, api: Api) -> None:
    tool = partial(_registrar, server)

    @tool(READ)
    def estimate_judge_run(
        experiment_id: ExperimentId, judge: JudgeBody = None
    ) -> Annotated[CallToolResult, JudgePreflight]:
        """Estimate a judge run over a completed with-responses experiment: pairs per bucket, cost, a spendCapUsd.

        Takes the same `judge` body as create_judge_run (all optional). Nothing is stored or called.
        """
        preflight = partial(api.preflight_judge, experiment_id, judge or {})
        return answer(preflight, JudgePreflight, judge_preflight_summary)

    @tool(STARTS_RUN)
    def create_judge_run(experiment_id: ExperimentId, judge: JudgeBody = None) -> Annotated[CallToolResult, JudgeRun]:
        """Start a judge eval: a third model says per pair if the candidate's answer is better, equivalent or worse.

        Runs over a stratified sample of a completed with-responses experiment's pairs, by similarity bucket (high
        >= 0.85, mild, major < 0.60; `stratification` pairs per bucket, 100 each by default, 1,500 at most). `judge`
        is the body of POST /manage/v1/experiments/{id}/judge: judgeModel (default gpt-4o), rubric (criteria only; the
        verdict contract is fixed), order random|both (both: two calls per pair against position bias), spendCapUsd
        (default and maximum: the project's judge cap; estimate_judge_run suggests one). It costs real money. Answers
        "queued"; call get_judge_run until it has ended.
        """
        return answer(partial(api.create_judge_run, experiment_id, judge or {}), JudgeRun, judge_run_summary)

    @tool(READ)
    def get_judge_run(experiment_id: ExperimentId, judge_run_id: JudgeRunId) -> Annotated[CallToolResult, JudgeRun]:
        """One judge run: status, progress, spend and its summary (verdict shares with 95% Wilson intervals, by bucket).

        The `worse` share of the `major` bucket is the headline risk; a wide interval means too few pairs.
        """
        return answer(partial(api.get_judge_run, experiment_id, judge_run_id), JudgeRun, judge_run_summary)

    @tool(READ)
    def list_judge_runs(
        experiment_id: ExperimentId, limit: Limit = 20, cursor: Cursor = None
    ) -> Annotated[CallToolResult, PageOf[JudgeRun]]:
        """List an experiment's judge runs, newest first (runs are immutable: a new rubric or model is a new run)."""
        page = partial(api.list_judge_runs, experiment_id, limit=limit, cursor=cursor)
        return answer_page(page, JudgeRun, judge_runs_summary)

    @tool(READ)
    def get_judge_run_results(
        experiment_id: ExperimentId,
        judge_run_id: JudgeRunId,
        verdict: Literal["better", "equivalent", "worse"] | None = None,
        bucket: Literal["high", "mild", "major"] | None = None,
        limit: RowLimit = 50,
        cursor: Cursor = None,
    ) -> Annotated[CallToolResult, PageOf[VerdictRow]]:
        """Per-pair verdicts of a judge run, worst first, with the judge's reason and both answers."""
        query: dict[str, Any] = {"verdict": verdict, "bucket": bucket, "limit": limit, "cursor": cursor}
        page = partial(api.judge_results, experiment_id, judge_run_id, **query)
        return answer_page(page, VerdictRow, verdicts_summary)

    @tool(ENDS)
    def cancel_judge_run(experiment_id: ExperimentId, judge_run_id: JudgeRunId) -> Annotated[CallToolResult, JudgeRun]:
        """Stop a queued or running judge run; calls in flight finish and are recorded."""
        return answer(partial(api.cancel_judge_run, experiment_id, judge_run_id), JudgeRun, judge_run_summary)


def _schedule_tools(server: MCPServer, api: Api) -> None:
    tool = partial(_registrar, server)

    @tool(STARTS_RUN)
    def create_scheduled_experiment(
        schedule: ScheduleBody,
    ) -> Annotated[CallToolResult, ScheduledExperiment]:
        """Ask an experiment's question again on a cron, with success criteria, as a regression alarm.

        `schedule` is the body of POST /manage/v1/scheduled_experiments. Each fire replays the rolling window
        [fire time - windowHours, fire time) (1-720 h, default 24) and checks successCriteria {logic: and|or,
        min_sample_size, predicates: [{metric, op: lt|lte|gt|gte|eq|ne, value}]}, e.g. cost_delta_pct lte 20,
        latency_p95_delta_pct lte 25; a failing run raises a signal and webhooks, never changes routing.
        cronExpression is 5 fields in UTC. with_responses schedules need sampleSize, sampleMethod and spendCapUsd
        (per run); judgeRubric adds a judge run to each. It fires once right away (last_experiment_id).
        """
        create = partial(api.create_schedule, schedule)
        return answer(create, ScheduledExperiment, schedule_summary)

    @tool(READ)
    def list_scheduled_experiments(
        project_id: ProjectFilter = None, status: Literal["active", "paused"] | None = None
    ) -> Annotated[CallToolResult, PageOf[ScheduledExperiment]]:
        """List scheduled experiments, newest first, with their cron, pause state, next run and last verdict."""
        page = partial(api.list_schedules, project_id=project_id, status=status)
        return answer_page(page, ScheduledExperiment, schedules_summary)

    @tool(READ)
    def get_scheduled_experiment(scheduled_experiment_id: ScheduleId) -> Annotated[CallToolResult, ScheduledExperiment]:
        """One scheduled experiment: cron, window, criteria, next run, last run and verdict, monthly cost projection."""
        return answer(partial(api.get_schedule, scheduled_experiment_id), ScheduledExperiment, schedule_summary)

    @tool(CHANGES)
    def update_scheduled_experiment(
        scheduled_experiment_id: ScheduleId, changes: ScheduleChanges
    ) -> Annotated[CallToolResult, ScheduledExperiment]:
        """Change a scheduled experiment's cron, window, success criteria, cap, rubric, ... (only the fields sent)."""
        update = partial(api.update_schedule, scheduled_experiment_id, changes)
        return answer(update, ScheduledExperiment, schedule_summary)

    @tool(ENDS)
    def delete_scheduled_experiment(
        scheduled_experiment_id: ScheduleId,
    ) -> Annotated[CallToolResult, ScheduledExperiment]:
        """Delete a scheduled experiment and its cron; its past runs stay. Prefer pause when it may come back."""
        return answer(partial(api.delete_schedule, scheduled_experiment_id), ScheduledExperiment, schedule_summary)

    @tool(CHANGES)
    def pause_scheduled_experiment(
        scheduled_experiment_id: ScheduleId,
    ) -> Annotated[CallToolResult, ScheduledExperiment]:
        """Skip a scheduled experiment's future fires (its history is kept)."""
        pause = partial(api.schedule_action, scheduled_experiment_id, "pause")
        return answer(pause, ScheduledExperiment, schedule_summary)

    @tool(CHANGES)
    def resume_scheduled_experiment(
        scheduled_experiment_id: ScheduleId,
    ) -> Annotated[CallToolResult, ScheduledExperiment]:
        """Fire a paused scheduled experiment on its cron again."""
        resume = partial(api.schedule_action, scheduled_experiment_id, "resume")
        return answer(resume, ScheduledExperiment, schedule_summary)

    @tool(STARTS_RUN)
    def run_scheduled_experiment_now(scheduled_experiment_id: ScheduleId) -> Annotated[CallToolResult, Experiment]:
        """Fire a scheduled experiment once now, without touching its cron; answers the fire's experiment (queued)."""
        fire = partial(api.schedule_action, scheduled_experiment_id, "run_now")
        return answer(fire, Experiment, experiment_summary)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rehearsal")
    except PackageNotFoundError:
        return "0.0.0"


# the command -----------------------------------------------------------------------------------
def open_api(server_url: str | None, svc: core.Services | None) -> tuple[Api, list[str] | None]:
    """The API the tools call and the key's projects (local only); a missing or bad key is ``Unauthorized``."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise Unauthorized(f"{KEY_ENV} is not set: export a management key (rehearsal keys create --project ID)")
    if server_url:
        client = RestClient(server_url, key)
        client.list_experiments(limit=1)  # the key is checked here, once, like a local one
        return client, None
    assert svc is not None
    local = LocalApi(svc, key)
    scope = local.scope()
    return local, [p.id for p in core.list_projects(svc, project_ids=scope)]


def run_stdio(server: str | None, logs: str | None, pricing: Path | None) -> None:
    """Serve the tools over stdio, on the REST API at ``server`` or on the local store (``rehearsal mcp``)."""
    if server and (logs or pricing):
        raise ConfigError("--logs and --pricing apply to local use only; the server uses its own", param="--server")
    svc = None if server else core.open_services(get_settings(), logs=logs, pricing=pricing)
    if svc is not None:
        discover_prefect_api(svc.settings.home)  # the Prefect server of a `rehearsal serve` on this home
    api, projects = open_api(server, svc)
    where = f"the REST API at {server}" if server else f"the store under {get_settings().home}"
    print(f"rehearsal MCP server on stdio, over {where}", file=sys.stderr)
    build_server(api, projects=projects).run("stdio")
