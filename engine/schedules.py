"""Scheduled experiments: the spec, cron arithmetic, rolling windows and cost projection (pure).

Prefect holds each schedule's cron and pause state (one deployment per
scheduled experiment); this module only validates and reasons about them.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any, Literal

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, Field, field_validator, model_validator

from engine.criteria import SuccessCriteria, Verdict
from engine.schema import COUNT_MAX, HYPOTHESIS_MAX, MONEY_MAX, NAME_MAX, Body, FiltersSpec, Mode

WINDOW_HOURS_MAX = 720
#: The longest cron expression accepted (a 5-field cron with long lists stays far below it).
CRON_MAX_LENGTH = 120
#: Days a "month" has in the cost projection.
MONTH_DAYS = 30


def check_cron(expr: str) -> str:
    """A 5-field UTC cron expression, normalised; ``ValueError`` says what is wrong."""
    if len(expr) > CRON_MAX_LENGTH:
        raise ValueError(f"a cron expression has at most {CRON_MAX_LENGTH} characters, got {len(expr):,}")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {len(fields)}")
    normalised = " ".join(fields)
    try:
        CronSim(normalised, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        raise ValueError(f"{expr!r} is not a valid cron expression: {exc}") from None
    return normalised


def next_fires(expr: str, after: dt.datetime, count: int = 1) -> list[dt.datetime]:
    """The next ``count`` fire times (UTC) strictly after ``after``."""
    sim = CronSim(expr, after.astimezone(dt.UTC).replace(second=0, microsecond=0))
    fires = []
    for fire in sim:
        if fire > after:
            fires.append(fire)
        if len(fires) == count:
            return fires
    return fires


@lru_cache(maxsize=1024)
def runs_per_month(expr: str, start: dt.datetime | None = None) -> int:
    """How many times ``expr`` fires in 30 days (from ``start``, default 2026-01-01 UTC)."""
    begin = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = begin + dt.timedelta(days=MONTH_DAYS)
    count = 0
    for fire in CronSim(expr, begin - dt.timedelta(minutes=1)):
        if fire >= end:
            return count
        count += 1
    return count


def fire_window(fire_time: dt.datetime, window_hours: int) -> tuple[dt.datetime, dt.datetime]:
    """The window a fire replays: ``[fire_time - windowHours, fire_time)``, in UTC."""
    end = fire_time.astimezone(dt.UTC)
    return end - dt.timedelta(hours=window_hours), end


class _ScheduleFields(Body):
    """What a create and an update share."""

    @field_validator("cron_expression", check_fields=False)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)


class ScheduledExperimentCreate(_ScheduleFields):
    """The body of ``POST /manage/v1/scheduled_experiments``."""

    project_id: str = Field(min_length=1, max_length=NAME_MAX)
    name: str = Field("", max_length=200)
    candidate_policy: str = Field(min_length=1, max_length=NAME_MAX)
    candidate_config: dict[str, Any]
    cron_expression: str = Field(description="Five-field cron, evaluated in UTC.")
    window_hours: int = Field(24, ge=1, le=WINDOW_HOURS_MAX, description="Hours of traffic each fire replays.")
    mode: Mode = "routing_only"
    filters: FiltersSpec = Field(default_factory=FiltersSpec)
    hypothesis: str | None = Field(None, max_length=HYPOTHESIS_MAX)
    success_criteria: SuccessCriteria | None = None
    sample_size: int | None = Field(None, gt=0, le=COUNT_MAX)
    sample_method: Literal["random", "stratified"] | None = None
    spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX, description="Cap of each run (with_responses).")
    judge_rubric: str | None = Field(None, min_length=1, max_length=8000)
    judge_model: str = Field("gpt-4o", min_length=1, max_length=NAME_MAX)

    @model_validator(mode="after")
    def _mode_fields(self) -> ScheduledExperimentCreate:
        if self.mode == "with_responses":
            missing = [
                alias
                for alias, value in (
                    ("sampleSize", self.sample_size),
                    ("sampleMethod", self.sample_method),
                    ("spendCapUsd", self.spend_cap_usd),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"with_responses schedules need {', '.join(missing)}")
        elif self.judge_rubric is not None:
            raise ValueError("judgeRubric needs mode with_responses (a judge run judges response pairs)")
        return self


class ScheduledExperimentUpdate(_ScheduleFields):
    """The body of ``PATCH /manage/v1/scheduled_experiments/{id}``: only the fields given change."""

    name: str | None = Field(None, max_length=200)
    cron_expression: str | None = None
    window_hours: int | None = Field(None, ge=1, le=WINDOW_HOURS_MAX)
    hypothesis: str | None = Field(None, max_length=HYPOTHESIS_MAX)
    success_criteria: SuccessCriteria | None = None
    spend_cap_usd: float | None = Field(None, gt=0, le=MONEY_MAX)
    sample_size: int | None = Field(None, gt=0, le=COUNT_MAX)
    judge_rubric: str | None = Field(None, min_length=1, max_length=8000)
    judge_model: str | None = Field(None, min_length=1, max_length=NAME_MAX)


class ScheduledExperiment(BaseModel):
    """A scheduled experiment as the API shows it; cron and pause state are read from Prefect."""

    id: str
    object: Literal["scheduled_experiment"] = "scheduled_experiment"
    project_id: str
    name: str
    candidate_policy: str
    candidate_config: dict[str, Any]
    cron_expression: str
    window_hours: int
    mode: Mode
    filters: FiltersSpec
    hypothesis: str | None = None
    success_criteria: SuccessCriteria | None = None
    sample_size: int | None = None
    sample_method: Literal["random", "stratified"] | None = None
    spend_cap_usd: float | None = None
    judge_rubric: str | None = None
    judge_model: str = "gpt-4o"
    status: Literal["active", "paused", "deleted"] = Field(
        "active", description="`deleted` only in the answer to its DELETE: a deleted schedule is gone."
    )
    deployment_id: str | None = Field(None, description="The Prefect deployment that carries the cron.")
    next_run_at: dt.datetime | None = None
    last_run_at: dt.datetime | None = None
    last_experiment_id: str | None = None
    last_verdict: Verdict | None = None
    runs_per_month: int = 0
    monthly_cost_projection_usd: float | None = Field(
        None, description="spendCapUsd x runs per month (with_responses; judge spend comes on top)."
    )
    breached: dict[str, bool] = Field(default_factory=dict, description="Metrics breached at the last run.")
    created_at: dt.datetime
    updated_at: dt.datetime


def projection(schedule: ScheduledExperiment) -> ScheduledExperiment:
    """``schedule`` with its runs per month and monthly cost projection filled in."""
    runs = runs_per_month(schedule.cron_expression)
    cost = None if schedule.spend_cap_usd is None else round(schedule.spend_cap_usd * runs, 2)
    return schedule.model_copy(update={"runs_per_month": runs, "monthly_cost_projection_usd": cost})


def experiment_body(schedule: ScheduledExperiment, fire_time: dt.datetime) -> dict[str, Any]:
    """The ``POST /manage/v1/experiments`` body of one fire."""
    start, end = fire_window(fire_time, schedule.window_hours)
    body: dict[str, Any] = {
        "name": f"{schedule.name} @ {end:%Y-%m-%d %H:%M}Z",
        "projectId": schedule.project_id,
        "candidatePolicy": schedule.candidate_policy,
        "candidateConfig": schedule.candidate_config,
        "windowStart": start.isoformat(),
        "windowEnd": end.isoformat(),
        "mode": schedule.mode,
        "filters": schedule.filters.model_dump(by_alias=True),
    }
    if schedule.hypothesis:
        body["hypothesis"] = schedule.hypothesis
    if schedule.mode == "with_responses":
        body["sample"] = {"size": schedule.sample_size, "method": schedule.sample_method}
        body["spendCapUsd"] = schedule.spend_cap_usd
    return body


class Signal(BaseModel):
    """An in-app alert raised by failing scheduled runs; one per schedule (``experiment-verdict:<id>``)."""

    key: str
    object: Literal["signal"] = "signal"
    project_id: str
    scheduled_experiment_id: str
    state: Literal["open", "resolved"] = "open"
    dismissed: bool = Field(False, description="Dismissed signals stay quiet until a passing run resolves them.")
    snoozed_until: dt.datetime | None = None
    severity: Literal["critical", "warn"] = "warn"
    message: str
    experiment_id: str = Field(description="The latest failing run.")
    failing_metrics: list[str] = Field(default_factory=list)
    occurrences: int = 1
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None = None

    def visible(self, now: dt.datetime) -> bool:
        """Whether the signal should be shown now (open, not dismissed, not snoozed)."""
        snoozed = self.snoozed_until is not None and self.snoozed_until > now
        return self.state == "open" and not self.dismissed and not snoozed


class SnoozeBody(Body):
    """The body of ``POST /manage/v1/signals/{key}/snooze``."""

    until: dt.datetime

    @field_validator("until")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def signal_key(scheduled_experiment_id: str) -> str:
    """The stable key of a schedule's signal."""
    return f"experiment-verdict:{scheduled_experiment_id}"
