"""Pydantic models of every contract: specs in (camelCase accepted), objects out (snake_case)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from engine.errors import ConfigError

HYPOTHESIS_MAX = 2000
#: Bounds of experiment windows: log timestamps outside them are not plausible.
WINDOW_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
WINDOW_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
WINDOW_LONGEST = dt.timedelta(days=3660)
#: Seeds are unsigned 64-bit hash seeds; JSON clients keep integers exact below 2**53.
SEED_MAX = 2**53
#: The largest amount of money any field may hold (USD); the configured ceiling of caps is usually far lower.
MONEY_MAX = 1_000_000.0
#: The largest count any field may hold (sample sizes, pairs per bucket).
COUNT_MAX = 10_000_000
#: Longest id, model or credential name.
NAME_MAX = 200
#: Most items in one filter list.
FILTER_ITEMS_MAX = 1000
#: The deepest JSON nesting a body or spec file may have (a routing config nests a few levels).
JSON_MAX_DEPTH = 32
Mode = Literal["routing_only", "with_responses"]
Status = Literal["queued", "running", "completed", "cancelled", "failed"]
#: A judge run's: the guide polls it "until status is complete" (an experiment's word is ``completed``).
JudgeStatus = Literal["queued", "running", "complete", "cancelled", "failed"]
LoggingMode = Literal["full", "metadata_only"]


class Body(BaseModel):
    """A request body: camelCase names (as the guides write them) or snake_case both accepted."""

    # Money and counts must be finite: JSON parsers accept Infinity and NaN (and 1e400 overflows to inf).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)


def parse_body(model: type[Body], raw: Any) -> Any:
    """Validate ``raw`` into ``model``; the first problem becomes a ``ConfigError`` naming the field."""
    if not isinstance(raw, dict):
        raise ConfigError("the request body must be a JSON object", param=None)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        field_info = model.model_fields.get(loc[0]) if loc else None
        if field_info is not None and field_info.alias:
            loc[0] = field_info.alias
        where = ".".join(loc)
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {message}" if where else message, param=where or None) from None


def _path(parts: list[str | int]) -> str:
    return ".".join(str(p) for p in parts)


def json_problem(value: Any) -> tuple[str, str | None] | None:
    """The first reason ``value`` (parsed JSON) is refused, with where it is; ``None`` when it is fine.

    Walks iteratively, so depth is measured without recursion.
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, where = stack.pop()
        if len(where) > JSON_MAX_DEPTH:
            return f"the body nests deeper than {JSON_MAX_DEPTH} levels", _path(where[:JSON_MAX_DEPTH]) or None
        if isinstance(item, float) and not math.isfinite(item):
            field = _path(where)
            return f"{field or 'the body'}: numbers must be finite (not Infinity, NaN or beyond 1.8e308)", field or None
        if isinstance(item, dict):
            stack.extend((v, [*where, str(k)]) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, [*where, i]) for i, v in reversed(list(enumerate(item))))
    return None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class FiltersSpec(Body):
    """Narrow the window; each list is any-of."""

    models: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(default_factory=list, max_length=FILTER_ITEMS_MAX)
    end_user_ids: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(
        default_factory=list,
        max_length=FILTER_ITEMS_MAX,
        validation_alias=AliasChoices("endUserIds", "end_user_ids"),
    )
    tags: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(default_factory=list, max_length=FILTER_ITEMS_MAX)


class SampleSpec(Body):
    """How with-responses runs draw their pairs."""

    size: int = Field(1000, gt=0, le=COUNT_MAX, description="Requested pairs; the effective size may be smaller.")
    method: Literal["random", "stratified"] = "random"
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the draw: the same seed draws the same rows.")


AS_OF_WORDS = ("now", "row")


class PricingSpec(Body):
    """Which list prices price the candidate's moved rows."""

    as_of: str = Field(
        "now",
        max_length=NAME_MAX,
        description='"now" (the day the experiment is created), "row" (each request at the prices in force on its own '
        'date: a backtest, where a price change inside the window changes the price from that day), or "YYYY-MM-DD".',
    )

    @field_validator("as_of")
    @classmethod
    def _word_or_date(cls, value: str) -> str:
        if value in AS_OF_WORDS:
            return value
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError('must be "now", "row" or a date YYYY-MM-DD') from None
        if not WINDOW_EARLIEST.date() <= day < WINDOW_LATEST.date():
            raise ValueError(f"must be between {WINDOW_EARLIEST:%Y-%m-%d} and {WINDOW_LATEST:%Y-%m-%d}")
        return day.isoformat()


class ExperimentCreate(Body):
    """The body of ``POST /manage/v1/experiments`` (and of a CLI spec file)."""

    name: str = Field("", max_length=200, description="Label shown in lists.")
    project_id: str = Field(min_length=1, max_length=NAME_MAX)
    candidate_policy: str = Field(min_length=1, max_length=NAME_MAX, description="Routing policy of the candidate.")
    candidate_config: dict[str, Any] = Field(description="That policy's config.")
    window_start: dt.datetime
    window_end: dt.datetime
    mode: Mode = "routing_only"
    filters: FiltersSpec = Field(default_factory=FiltersSpec)
    hypothesis: str | None = Field(None, max_length=HYPOTHESIS_MAX)
    sample: SampleSpec | None = None
    spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX)
    embedding_model: str | None = Field(
        None, max_length=NAME_MAX, description="Similarity embedder (default: local all-MiniLM-L6-v2)."
    )
    pricing: PricingSpec = Field(default_factory=PricingSpec, description="The date of the candidate's list prices.")

    @field_validator("window_start", "window_end")
    @classmethod
    def _to_utc(cls, value: dt.datetime) -> dt.datetime:
        value = _utc(value)
        if not WINDOW_EARLIEST <= value <= WINDOW_LATEST:
            raise ValueError(f"must be between {WINDOW_EARLIEST:%Y-%m-%d} and {WINDOW_LATEST:%Y-%m-%d}")
        return value

    @model_validator(mode="after")
    def _window(self) -> ExperimentCreate:
        # Raised as ConfigError (not ValueError) so that the error names the field, not the whole body.
        if self.window_end <= self.window_start:
            raise ConfigError("windowEnd must be after windowStart", param="windowEnd")
        if self.window_end - self.window_start > WINDOW_LONGEST:
            raise ConfigError(
                f"the window may span at most {WINDOW_LONGEST.days:,} days (windowStart to windowEnd)",
                param="windowEnd",
            )
        return self

    @model_validator(mode="after")
    def _pricing_date(self) -> ExperimentCreate:
        if self.mode == "with_responses" and self.pricing.as_of != "now":
            raise ConfigError(
                "pricing.asOf: a with-responses run pays today's prices for its calls; "
                '"row" and dates apply to routing-only replays',
                param="pricing.asOf",
            )
        return self


class Interval(BaseModel):
    """A 90% interval around a point estimate (see the README's "How the intervals are made")."""

    low: float
    high: float


class Summary(BaseModel):
    """Traffic totals of one side (baseline or candidate) of a replay."""

    request_count: int
    cost_usd: float
    cost_per_request_usd: float
    latency_p50_ms: float
    latency_p95_ms: float
    error_rate: float
    input_tokens: int
    output_tokens: int
    route_distribution: dict[str, float] = Field(description='Share of rows per "model:provider".')
    cost_usd_interval: Interval | None = Field(None, description="Routing-only candidates: 90% interval of cost_usd.")
    latency_p50_ms_interval: Interval | None = None
    latency_p95_ms_interval: Interval | None = None
    error_rate_interval: Interval | None = None


class Deltas(BaseModel):
    """Candidate minus baseline; percentages are relative to the baseline.

    The ``*_interval`` fields (routing-only runs) are 90% intervals; null where the point is null.
    """

    cost_delta_usd: float
    cost_delta_pct: float | None
    latency_p50_delta_pct: float | None
    latency_p95_delta_pct: float | None
    error_rate_delta_pct: float | None
    cost_delta_usd_interval: Interval | None = None
    cost_delta_pct_interval: Interval | None = None
    latency_p50_delta_pct_interval: Interval | None = None
    latency_p95_delta_pct_interval: Interval | None = None
    error_rate_delta_pct_interval: Interval | None = None


class Multiplier(BaseModel):
    """How many tokens the candidate uses where the log's model used one, for one model move."""

    point: float = Field(description="What prices the moved rows (1 = the same tokens).")
    low: float = Field(description="Lower end of its 90% interval.")
    high: float = Field(description="Upper end of its 90% interval.")
    source: Literal["learned", "prior"]
    basis: str = Field(description="Where it comes from, in words.")
    pairs: int = Field(0, description="Learned: the answered pairs behind it.")
    runs: list[str] = Field(default_factory=list, description="Learned: the with-responses experiments it comes from.")


class TokenMultipliers(BaseModel):
    """The input and output token multipliers of rows moved from ``baseline_model`` to ``candidate_model``."""

    baseline_model: str
    candidate_model: str
    input: Multiplier
    output: Multiplier


class PairObservations(BaseModel):
    """One with-responses run's answered pairs of one model move: logged vs candidate tokens, aligned."""

    baseline_model: str
    candidate_model: str
    logged_input_tokens: list[int]
    candidate_input_tokens: list[int]
    logged_output_tokens: list[int]
    candidate_output_tokens: list[int]
    #: The candidate's latency of each pair, aligned with ``candidate_output_tokens`` (empty in records of
    #: runs that kept none, and in a judge run's).
    candidate_latency_ms: list[float] = []


class Observations(BaseModel):
    """What one completed with-responses run showed about its model moves (what later estimates learn from)."""

    experiment_id: str
    project_id: str
    created_at: dt.datetime
    moves: list[PairObservations]


class Progress(BaseModel):
    """Pairs done out of the effective total."""

    done: int = 0
    total: int = 0


class SimilaritySummary(BaseModel):
    """The headline numbers of a with-responses run's similarity."""

    mean_similarity: float | None
    scored_count: int
    unscored_count: int
    threshold: float
    agreement: float | None
    headline: str


class PreflightEstimate(BaseModel):
    """What a with-responses run would cost (camelCase, as the guide's preflight returns it)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    estimated_cost_usd: float
    effective_sample_size: int
    row_count_in_window: int
    per_call_estimate_usd: float
    embedding_cost_usd: float
    notes: list[str] = Field(default_factory=list)


class Preflight(BaseModel):
    """The preflight answer: the estimate, the caps and whether to confirm."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    estimate: PreflightEstimate
    spend_cap_usd: float
    suggested_spend_cap_usd: float
    requires_confirmation: bool
    auto_cancel_ratio: float


class ExperimentPricing(BaseModel):
    """The list prices an experiment used: the catalog, its version, the override file and the date."""

    source: str = Field(description='The catalog of list prices: "genai-prices".')
    version: str = Field(description="Its (pinned) version; only its bundled data is read, never fetched.")
    overrides: str | None = Field(None, description="The pricing override file layered over the shipped one.")
    as_of: str = Field(description='As the spec asked: "now", "row" or a date.')
    price_date: dt.date | None = Field(
        None, description="The date whose prices priced the candidate; null for asOf row (each request its own)."
    )


class EstimateError(BaseModel):
    """How far a paid run's estimate was from what it spent: actual ÷ estimated (1 = exact, 0.5 = half)."""

    overall: float | None = Field(
        description="The run's spend ÷ its preflight's estimatedCostUsd (null when the estimate was 0)."
    )
    per_call_p50: float | None = Field(
        description="Median over answered calls of each call's cost ÷ the reservation it was admitted with "
        "(null when no call was answered)."
    )
    per_call_p90: float | None = Field(description="The 90th percentile of the same per-call ratio.")
    calls: int = Field(description="Answered calls behind the per-call percentiles.")


class Experiment(BaseModel):
    """An experiment as every face returns it."""

    id: str
    object: Literal["experiment"] = "experiment"
    name: str
    project_id: str
    mode: Mode
    status: Status
    status_reason: str | None = None
    candidate_policy: str
    candidate_config: dict[str, Any]
    window_start: dt.datetime
    window_end: dt.datetime
    filters: FiltersSpec
    hypothesis: str | None = None
    sample: SampleSpec | None = None
    spend_cap_usd: float | None = None
    spend_usd: float = 0.0
    progress: Progress = Field(default_factory=Progress)
    baseline_summary: Summary | None = None
    candidate_summary: Summary | None = None
    deltas: Deltas | None = None
    notes: list[str] = Field(default_factory=list)
    similarity_summary: SimilaritySummary | None = None
    estimate_error: EstimateError | None = Field(
        None, description="Completed with-responses runs: actual ÷ estimated spend, overall and per call."
    )
    token_multipliers: list[TokenMultipliers] = Field(
        default_factory=list,
        description="Routing-only runs: the token multipliers that priced each model move (learned or prior).",
    )
    embedding_model: str | None = None
    pricing: ExperimentPricing | None = Field(None, description="The list prices it used (source, version, date).")
    promoted_version: int | None = None
    flow_run_id: str | None = Field(None, description="The Prefect flow run executing it (served runs only).")
    scheduled_experiment_id: str | None = Field(None, description="The schedule that fired it, if any.")
    scheduled_for: dt.datetime | None = Field(None, description="The fire time (the end of its window).")
    judge_run_id: str | None = Field(None, description="The judge run a schedule chained to it.")
    verdict: dict[str, Any] | None = Field(
        None, description="Scheduled runs only: pass/fail/inconclusive with a per-predicate breakdown."
    )
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None


class LoggedRequest(BaseModel):
    """One request as the project's gateway logged it (``GET /manage/v1/logs/{request_id}``).

    The log schema's columns, the prompt (``request_json``, the OpenAI chat request) and the answer.
    """

    object: Literal["log"] = "log"
    project_id: str
    request_id: str
    timestamp: dt.datetime
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    latency_ms: float | None = None
    cost_usd: float | None = None
    status: str
    error_type: str | None = None
    end_user_id: str | None = None
    tags: list[str] | None = None
    routing_config_version: int | None = None
    request_json: str | None = Field(None, description="The logged chat request (null in metadata-only logs).")
    response_text: str | None = Field(None, description="The logged answer (null in metadata-only logs).")


class Project(BaseModel):
    """A project: the unit of logs, caps and access."""

    id: str
    object: Literal["project"] = "project"
    logging_mode: LoggingMode = "full"
    experiment_spend_cap_usd: float = 50.0
    judge_spend_cap_usd: float = 20.0
    created_at: dt.datetime


class RoutingConfigVersion(BaseModel):
    """One saved version of a project's routing config."""

    id: str
    object: Literal["routing_config"] = "routing_config"
    project_id: str
    slug: str
    version: int
    policy: str
    config: dict[str, Any]
    source_experiment_id: str | None = None
    created_at: dt.datetime


class Stratification(Body):
    """Pairs to judge per similarity bucket (total at most 1,500)."""

    high: int = Field(100, ge=0, le=COUNT_MAX)
    mild: int = Field(100, ge=0, le=COUNT_MAX)
    major: int = Field(100, ge=0, le=COUNT_MAX)


class BucketBoundaries(Body):
    """Similarity at which a pair is ``mild`` (below ``high``) and ``high``."""

    mild: float = Field(0.60, ge=0, le=1)
    high: float = Field(0.85, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> BucketBoundaries:
        if self.mild > self.high:
            raise ValueError("mild must not be above high")
        return self


class JudgeCreate(Body):
    """The body of ``POST /manage/v1/experiments/{id}/judge`` (and its preflight)."""

    judge_model: str = Field("gpt-4o", min_length=1, max_length=NAME_MAX)
    judge_credential_id: str | None = Field(None, max_length=NAME_MAX)
    rubric: str | None = Field(None, max_length=8000, description="Criteria; our default rubric when omitted.")
    stratification: Stratification = Field(default_factory=Stratification)
    order: Literal["random", "both"] = "random"
    boundaries: BucketBoundaries = Field(default_factory=BucketBoundaries)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX)


class JudgePreflight(BaseModel):
    """What a judge run would cost (camelCase, as the guide shows it)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    effective_pair_count: int
    effective_by_bucket: dict[str, int]
    estimated_cost_usd: float
    per_call_estimate_usd: float
    spend_cap_usd: float
    suggested_spend_cap_usd: float
    requires_confirmation: bool
    notes: list[str]
    rubric: str
    rubric_hash: str


class JudgeRun(BaseModel):
    """One immutable judge run over an experiment's pairs."""

    id: str
    object: Literal["judge_run"] = "judge_run"
    experiment_id: str
    project_id: str
    status: JudgeStatus = Field(description="`complete` once it ended well (an experiment says `completed`).")
    status_reason: str | None = None
    judge_model: str
    judge_credential_id: str | None = None
    rubric: str
    rubric_hash: str
    order: Literal["random", "both"]
    stratification: Stratification
    boundaries: BucketBoundaries
    seed: int = 0
    effective_by_bucket: dict[str, int]
    spend_cap_usd: float
    spend_usd: float = 0.0
    progress: Progress = Field(default_factory=Progress)
    summary: dict[str, Any] | None = None
    estimate_error: EstimateError | None = Field(
        None, description="Completed runs: actual ÷ estimated spend, overall and per judge call."
    )
    notes: list[str] = Field(default_factory=list)
    flow_run_id: str | None = Field(None, description="The Prefect flow run executing it (served runs only).")
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _guide_word(cls, value: Any) -> Any:
        """Runs stored before judge runs said ``complete`` said ``completed``."""
        return "complete" if value == "completed" else value


class ProjectCreate(Body):
    """The body of ``POST /manage/v1/projects``."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    logging_mode: LoggingMode = "full"
    experiment_spend_cap_usd: float = Field(50.0, gt=0, le=MONEY_MAX)
    judge_spend_cap_usd: float = Field(20.0, gt=0, le=MONEY_MAX)


class ProjectUpdate(Body):
    """The body of ``PATCH /manage/v1/projects/{id}``: only the fields given change."""

    logging_mode: LoggingMode | None = None
    experiment_spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX)
    judge_spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX)


class CredentialCreate(Body):
    """The body of ``POST /manage/v1/provider-credentials``; ``apiKey`` is write-only."""

    project_id: str = Field(min_length=1, max_length=NAME_MAX)
    vendor: Literal["openai"] = "openai"
    base_url: str = Field("https://api.openai.com/v1", max_length=2000, pattern=r"^https?://")
    api_key: str | None = Field(None, min_length=1, max_length=10_000, description="Stored, never returned.")
    rate_limit_rps: float | None = Field(None, gt=0, le=100_000)
    cost_source: Literal["catalog", "provider"] = Field(
        "catalog",
        description="`catalog`: a call costs usage x catalog price; `provider`: what the endpoint reports in "
        "`x-litellm-response-cost` (the catalog price where it reports none).",
    )


class ProviderCredential(BaseModel):
    """A provider credential as the API shows it: the key itself never appears."""

    id: str
    object: Literal["provider_credential"] = "provider_credential"
    project_id: str
    vendor: Literal["openai"]
    base_url: str
    rate_limit_rps: float | None = None
    cost_source: Literal["catalog", "provider"] = "catalog"
    has_api_key: bool
    created_at: dt.datetime


class RoutingConfigCreate(Body):
    """The body of ``POST /manage/v1/projects/{id}/routing-configs``: the next version of ``slug``."""

    slug: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    policy: str = Field(min_length=1, max_length=NAME_MAX)
    config: dict[str, Any]


KeyRole = Literal["admin", "member"]


class KeyCreate(Body):
    """The body of ``POST /manage/v1/keys``: a key for some of the caller's projects (admin keys only)."""

    project_ids: list[Annotated[str, Field(max_length=NAME_MAX)]] = Field(min_length=1, max_length=100)
    name: str = Field("", max_length=200)
    role: KeyRole = Field(
        "member", description="`member` runs experiments; `admin` also manages caps, keys and credentials."
    )


class ApiKey(BaseModel):
    """A management key as listed: its secret is shown once, at creation, and never again."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str = ""
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    project_ids: list[str]
    all_projects: bool = False
    # Keys made before roles existed could do everything: they read as admin keys.
    role: KeyRole = Field("admin", description="`member`: runs; `admin`: also caps, keys and credentials.")
    parent_id: str | None = Field(None, description="The key that minted this one (revoking it revokes this).")
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


class CreatedApiKey(ApiKey):
    """A new key, with its secret (returned by create only)."""

    key: str


class PairRow(BaseModel):
    """One per-pair result row of a with-responses experiment."""

    request_id: str
    timestamp: dt.datetime | None = None
    baseline_model: str | None = None
    candidate_model: str | None = None
    baseline_cost_usd: float | None = None
    candidate_cost_usd: float | None = None
    cost_delta_usd: float | None = None
    baseline_latency_ms: float | None = None
    candidate_latency_ms: float | None = None
    candidate_status: str | None = None
    error_type: str | None = None
    candidate_status_code: int | None = Field(
        None, description="HTTP status of the candidate call's last attempt (none when no response came)."
    )
    candidate_error_message: str | None = Field(
        None, description="What the candidate's provider said about a failed call (trimmed, secrets removed)."
    )
    candidate_input_tokens: int | None = None
    candidate_output_tokens: int | None = None
    candidate_reported_cost_usd: float | None = Field(
        None, description="The cost the endpoint reported itself (`x-litellm-response-cost`), if it did."
    )
    attempts: int | None = None
    similarity: float | None = None


class PairDetail(PairRow):
    """One pair with both answers (the single-pair view)."""

    baseline_text: str | None = None
    candidate_text: str | None = None


class VerdictRow(BaseModel):
    """One judged pair, with both answers."""

    request_id: str
    bucket: str | None = None
    similarity: float | None = None
    verdict: str | None = None
    reason: str | None = None
    position_flip: bool | None = None
    parse_error: bool | None = None
    cost_usd: float | None = None
    baseline_text: str | None = None
    candidate_text: str | None = None
