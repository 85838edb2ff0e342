"""Success criteria of scheduled experiments: the metric catalog, the verdict and breach bookkeeping.

Pure: every function here reads models already in memory and returns new ones;
storing verdicts, raising signals and sending webhooks belong to the shells.

* **Catalog**: ``METRICS`` maps each of the 25 metric names (the guide's 15 and the lower and upper
  ends of the five deltas' 90% intervals) to a ``Metric``
  (a one-line description, whether it is in percent, and the function that
  observes it on an experiment, its chained judge run and its per-pair
  similarities). A metric the run did not produce observes ``None``:
  similarity metrics on routing-only runs, judge metrics without a judge run
  (or with nothing judged), a relative change whose baseline is 0.
* **Verdict**: ``evaluate`` checks each predicate (``pass`` / ``fail`` /
  ``unavailable``, or ``inconclusive`` when it asks for that and the metric's
  interval holds its bound), combines them by ``logic`` and, for a failing run,
  grades the severity.
* **Breaches**: ``breaches`` turns a run's verdict and the previous run's
  per-metric state into the ``regression_detected`` events to send (once per
  breach per metric) and the state to keep for the next run.

Comparisons treat two floats within ``REL_TOL`` / ``ABS_TOL`` of each other as
equal, for every operator: an error rate of 0.07 is ``7.000000000000001``
percent, and a ``lte 7`` predicate must pass on it while a ``lt 7`` one fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, Field, ValidationInfo, field_validator

from engine.errors import ConfigError
from engine.schema import Body, Experiment, Interval, JudgeRun, SimilaritySummary
from engine.similarity import DEFAULT_THRESHOLD, histogram

MetricName = Literal[
    "sample_size",
    "cost_delta_pct",
    "cost_delta_usd",
    "latency_p50_delta_pct",
    "latency_p95_delta_pct",
    "error_rate_delta_pct",
    "candidate_error_rate_pct",
    "mean_similarity",
    "similarity_pct_above_threshold",
    "unscored_pct",
    "judge_better_pct",
    "judge_equivalent_pct",
    "judge_worse_pct",
    "judge_worse_pct_upper_ci",
    "judge_parse_error_pct",
    "cost_delta_pct_lower",
    "cost_delta_pct_upper",
    "cost_delta_usd_lower",
    "cost_delta_usd_upper",
    "latency_p50_delta_pct_lower",
    "latency_p50_delta_pct_upper",
    "latency_p95_delta_pct_lower",
    "latency_p95_delta_pct_upper",
    "error_rate_delta_pct_lower",
    "error_rate_delta_pct_upper",
]
Op = Literal["lt", "lte", "gt", "gte", "eq", "ne"]
Logic = Literal["and", "or"]
Straddle = Literal["point", "inconclusive"]
PredicateStatus = Literal["pass", "fail", "unavailable", "inconclusive"]
VerdictName = Literal["pass", "fail", "inconclusive"]
Severity = Literal["critical", "warn"]

#: Most predicates one set of criteria may hold.
MAX_PREDICATES = 20
#: Relative and absolute tolerance under which an observed value equals a predicate's value.
REL_TOL = 1e-9
ABS_TOL = 1e-9
#: A failing run is critical from this many failing predicates on ...
CRITICAL_FAILED_PREDICATES = 2
#: ... or when the upper 95% bound of the judge's "worse" share passes this many percent ...
CRITICAL_JUDGE_WORSE_UPPER_CI_PCT = 30.0
#: ... or when the candidate error rate is more than this many times the baseline's.
CRITICAL_ERROR_RATE_RATIO = 2.0

_OP_TEXT: dict[str, str] = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}
#: Which comparison outcomes (-1 below, 0 equal, 1 above the value) satisfy each operator.
_OP_ACCEPTS: dict[str, frozenset[int]] = {
    "lt": frozenset({-1}),
    "lte": frozenset({-1, 0}),
    "gt": frozenset({1}),
    "gte": frozenset({0, 1}),
    "eq": frozenset({0}),
    "ne": frozenset({-1, 1}),
}


# --------------------------------------------------------------------------- criteria


class ThresholdParams(Body):
    """Parameters of ``similarity_pct_above_threshold``."""

    threshold: float = Field(DEFAULT_THRESHOLD, ge=0, le=1, description="Similarity at or above which a pair agrees.")


class Predicate(Body):
    """One condition on one metric of a run: ``<metric> <op> <value>``."""

    metric: MetricName = Field(description="A metric of the catalog (``METRICS``).")
    op: Op = Field(description="Comparison of the observed value with ``value``.")
    value: float = Field(
        allow_inf_nan=False, description="The bound, in the metric's unit (percent metrics: 20 = 20%)."
    )
    params: ThresholdParams | None = Field(
        None,
        validate_default=True,
        description="Only ``similarity_pct_above_threshold`` takes params (``threshold``, default 0.85).",
    )
    on_straddle: Straddle = Field(
        "point",
        description="``inconclusive``: when the run's 90% interval of the metric holds ``value``, the predicate "
        "is inconclusive instead of judged on the point (metrics with an interval: the deltas and "
        "candidate_error_rate_pct of routing-only runs).",
    )

    @field_validator("params")
    @classmethod
    def _params_fit_metric(cls, params: ThresholdParams | None, info: ValidationInfo) -> ThresholdParams | None:
        metric = info.data.get("metric")
        if metric is None:  # the metric itself is invalid and reported as such
            return params
        if METRICS[metric].takes_threshold:
            return params or ThresholdParams()
        if params is not None and params.model_fields_set:
            raise ValueError(f"metric {metric!r} takes no params")
        return None


class SuccessCriteria(Body):
    """What a scheduled run must show to pass: predicates combined by ``logic``, over a large enough sample."""

    logic: Logic = Field("and", description="``and``: every predicate must pass; ``or``: one is enough.")
    # The guides write this one in snake_case inside camelCase bodies; both spellings are accepted.
    min_sample_size: int = Field(
        0,
        ge=0,
        alias="min_sample_size",
        validation_alias=AliasChoices("min_sample_size", "minSampleSize"),
        description="Below this sample size the verdict is inconclusive.",
    )
    predicates: list[Predicate] = Field(min_length=1, max_length=MAX_PREDICATES)


# --------------------------------------------------------------------------- catalog

#: Observes one metric: ``(experiment, judge_run, similarities, params) -> value or None``.
MetricFn = Callable[[Experiment, JudgeRun | None, np.ndarray | None, ThresholdParams | None], float | None]


#: The 90% interval of a metric on an experiment, in the metric's unit, or ``None``.
IntervalFn = Callable[[Experiment], Interval | None]


@dataclass(frozen=True)
class Metric:
    """One metric of the catalog."""

    name: str
    description: str
    percent: bool
    observe: MetricFn
    takes_threshold: bool = False
    interval: IntervalFn | None = None


METRICS: dict[str, Metric] = {}


def _delta_interval(name: str) -> IntervalFn:
    def interval(exp: Experiment) -> Interval | None:
        return getattr(exp.deltas, f"{name}_interval") if exp.deltas else None

    return interval


def _metric(
    name: MetricName,
    description: str,
    *,
    percent: bool,
    takes_threshold: bool = False,
    interval: IntervalFn | None = None,
) -> Callable[[MetricFn], MetricFn]:
    def register(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, description, percent, fn, takes_threshold, interval)
        return fn

    return register


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100.0


@_metric("sample_size", "Rows replayed (routing-only) or pairs done (with-responses).", percent=False)
def _sample_size(exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None) -> float:
    return float(exp.progress.done)


@_metric(
    "cost_delta_pct",
    "Candidate minus baseline cost, % of the baseline's (0 when both are 0; unavailable when only the baseline's is).",
    percent=True,
    interval=_delta_interval("cost_delta_pct"),
)
def _cost_delta_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return exp.deltas.cost_delta_pct if exp.deltas else None


@_metric(
    "cost_delta_usd",
    "Candidate minus baseline cost over the sample, in USD.",
    percent=False,
    interval=_delta_interval("cost_delta_usd"),
)
def _cost_delta_usd(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return exp.deltas.cost_delta_usd if exp.deltas else None


@_metric(
    "latency_p50_delta_pct",
    "Change of the median latency, % of the baseline's.",
    percent=True,
    interval=_delta_interval("latency_p50_delta_pct"),
)
def _latency_p50_delta_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return exp.deltas.latency_p50_delta_pct if exp.deltas else None


@_metric(
    "latency_p95_delta_pct",
    "Change of the p95 latency, % of the baseline's.",
    percent=True,
    interval=_delta_interval("latency_p95_delta_pct"),
)
def _latency_p95_delta_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return exp.deltas.latency_p95_delta_pct if exp.deltas else None


@_metric(
    "error_rate_delta_pct",
    "Relative change of the error rate, % of the baseline's (0 when both are 0; unavailable when only the "
    "baseline's is 0, which is always the case for with-responses runs: use candidate_error_rate_pct there).",
    percent=True,
    interval=_delta_interval("error_rate_delta_pct"),
)
def _error_rate_delta_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return exp.deltas.error_rate_delta_pct if exp.deltas else None


def _error_rate_interval(exp: Experiment) -> Interval | None:
    found = exp.candidate_summary.error_rate_interval if exp.candidate_summary else None
    return Interval(low=found.low * 100.0, high=found.high * 100.0) if found is not None else None


@_metric(
    "candidate_error_rate_pct", "Candidate error rate, % of requests.", percent=True, interval=_error_rate_interval
)
def _candidate_error_rate_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return _pct(exp.candidate_summary.error_rate) if exp.candidate_summary else None


def _similarity(exp: Experiment, sims: np.ndarray | None) -> SimilaritySummary | None:
    """The run's similarity summary, else one made from the per-pair similarities, else ``None``."""
    if exp.similarity_summary is not None:
        return exp.similarity_summary
    if sims is None:
        return None
    hist = histogram(sims)
    return SimilaritySummary.model_validate(hist.model_dump(exclude={"buckets"}))


@_metric("mean_similarity", "Mean baseline/candidate similarity over scored pairs (0 to 1).", percent=False)
def _mean_similarity(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    summary = _similarity(exp, sims)
    return summary.mean_similarity if summary else None


@_metric(
    "similarity_pct_above_threshold",
    "% of scored pairs whose similarity is at least params.threshold (default 0.85).",
    percent=True,
    takes_threshold=True,
)
def _similarity_pct_above_threshold(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    threshold = p.threshold if p is not None else DEFAULT_THRESHOLD
    if sims is not None:
        return _pct(histogram(sims, threshold).agreement)
    # Without the pairs only the stored agreement is known, and only at the threshold it was computed at.
    summary = exp.similarity_summary
    if summary is None or not math.isclose(summary.threshold, threshold, rel_tol=REL_TOL, abs_tol=ABS_TOL):
        return None
    return _pct(summary.agreement)


@_metric("unscored_pct", "% of pairs without a similarity (an empty text or a candidate error).", percent=True)
def _unscored_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    summary = _similarity(exp, sims)
    if summary is None:
        return None
    total = summary.scored_count + summary.unscored_count
    return 100.0 * summary.unscored_count / total if total else None


def _judged(judge: JudgeRun | None) -> dict[str, Any] | None:
    """The judge summary when at least one pair was judged (shares of nothing are not measurements)."""
    if judge is None or not judge.summary or not judge.summary.get("judged_count"):
        return None
    return judge.summary


def _share_pct(judge: JudgeRun | None, verdict: str) -> float | None:
    summary = _judged(judge)
    return _pct(summary["verdict_breakdown"][verdict]) if summary else None


@_metric("judge_better_pct", "% of judged pairs the candidate won (chained judge run).", percent=True)
def _judge_better_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return _share_pct(judge, "better")


@_metric("judge_equivalent_pct", "% of judged pairs judged a tie (chained judge run).", percent=True)
def _judge_equivalent_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return _share_pct(judge, "equivalent")


@_metric("judge_worse_pct", "% of judged pairs the candidate lost (chained judge run).", percent=True)
def _judge_worse_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    return _share_pct(judge, "worse")


@_metric(
    "judge_worse_pct_upper_ci",
    "Upper bound of the 95% Wilson interval of judge_worse_pct, in %.",
    percent=True,
)
def _judge_worse_pct_upper_ci(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    summary = _judged(judge)
    return _pct(summary["verdict_breakdown_ci_95"]["worse"]["upper"]) if summary else None


@_metric(
    "judge_parse_error_pct",
    "% of judge replies that broke the verdict contract (of all replies, parsed or not).",
    percent=True,
)
def _judge_parse_error_pct(
    exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
) -> float | None:
    if judge is None or not judge.summary:
        return None
    errors = int(judge.summary.get("parse_errors") or 0)
    total = int(judge.summary.get("judged_count") or 0) + errors
    return 100.0 * errors / total if total else None


def _bound(name: str, end: Literal["low", "high"]) -> MetricFn:
    def bound(
        exp: Experiment, judge: JudgeRun | None, sims: np.ndarray | None, p: ThresholdParams | None
    ) -> float | None:
        interval = METRICS[name].interval
        found = interval(exp) if interval is not None else None
        return getattr(found, end) if found is not None else None

    return bound


for _name in (
    "cost_delta_pct",
    "cost_delta_usd",
    "latency_p50_delta_pct",
    "latency_p95_delta_pct",
    "error_rate_delta_pct",
):
    _ends: tuple[tuple[Literal["low", "high"], str], ...] = (("low", "lower"), ("high", "upper"))
    for _end, _word in _ends:
        METRICS[f"{_name}_{_word}"] = Metric(
            f"{_name}_{_word}",
            f"The {_word} end of the 90% interval of {_name} (routing-only runs).",
            METRICS[_name].percent,
            _bound(_name, _end),
        )


def _as_array(similarities: Sequence[float | None] | np.ndarray | None) -> np.ndarray | None:
    return None if similarities is None else np.asarray(similarities, dtype=np.float64)


def observe(
    metric: str,
    experiment: Experiment,
    judge_run: JudgeRun | None = None,
    similarities: Sequence[float | None] | np.ndarray | None = None,
    params: ThresholdParams | None = None,
) -> float | None:
    """The value of ``metric`` on this run, or ``None`` when the run did not produce it.

    ``similarities`` are the run's per-pair similarities (``None`` or NaN where
    unscored); they are only needed for ``similarity_pct_above_threshold`` at a
    threshold other than the one of the experiment's similarity summary. A
    non-finite value counts as not produced.
    """
    spec = METRICS.get(metric)
    if spec is None:
        raise ConfigError(f"unknown metric {metric!r}; pick one of: {', '.join(METRICS)}", param="metric")
    value = spec.observe(experiment, judge_run, _as_array(similarities), params)
    return float(value) if value is not None and math.isfinite(value) else None


# --------------------------------------------------------------------------- verdict


class PredicateResult(BaseModel):
    """One predicate and what this run showed for it."""

    metric: MetricName
    op: Op
    value: float
    params: ThresholdParams | None = None
    on_straddle: Straddle = "point"
    observed: float | None = Field(description="The metric on this run; null when the run did not produce it.")
    interval: Interval | None = Field(None, description="The metric's 90% interval on this run, where it has one.")
    status: PredicateStatus


class Verdict(BaseModel):
    """A run judged against its success criteria."""

    verdict: VerdictName
    severity: Severity | None = Field(None, description="Only on a failing run.")
    sample_size: int
    min_sample_size: int
    logic: Logic
    predicates: list[PredicateResult]
    summary: str = Field(description="One human-readable line.")


def _compare(observed: float, value: float) -> int:
    if math.isclose(observed, value, rel_tol=REL_TOL, abs_tol=ABS_TOL):
        return 0
    return -1 if observed < value else 1


def _check(predicate: Predicate, observed: float | None, interval: Interval | None) -> PredicateStatus:
    if observed is None:
        return "unavailable"
    if (
        predicate.on_straddle == "inconclusive"
        and interval is not None
        and _compare(interval.low, predicate.value) <= 0 <= _compare(interval.high, predicate.value)
    ):
        return "inconclusive"
    return "pass" if _compare(observed, predicate.value) in _OP_ACCEPTS[predicate.op] else "fail"


def _combine(logic: Logic, statuses: list[PredicateStatus]) -> VerdictName:
    decisive: VerdictName = "fail" if logic == "and" else "pass"
    if decisive in statuses:
        return decisive
    if "unavailable" in statuses or "inconclusive" in statuses:
        return "inconclusive"
    return "pass" if logic == "and" else "fail"


def _error_rate_more_than_doubled(experiment: Experiment) -> bool:
    baseline, candidate = experiment.baseline_summary, experiment.candidate_summary
    if baseline is None or candidate is None:
        return False
    # With no baseline errors any candidate error counts as more than double.
    return candidate.error_rate > CRITICAL_ERROR_RATE_RATIO * baseline.error_rate


def _critical_reason(failed: int, judge_worse_upper: float | None, experiment: Experiment) -> str | None:
    if failed >= CRITICAL_FAILED_PREDICATES:
        return f"{failed} predicates failed"
    if judge_worse_upper is not None and judge_worse_upper > CRITICAL_JUDGE_WORSE_UPPER_CI_PCT:
        return f"judge_worse_pct_upper_ci {_fmt(judge_worse_upper)} > {_fmt(CRITICAL_JUDGE_WORSE_UPPER_CI_PCT)}"
    if _error_rate_more_than_doubled(experiment):
        base = experiment.baseline_summary.error_rate if experiment.baseline_summary else 0.0
        cand = experiment.candidate_summary.error_rate if experiment.candidate_summary else 0.0
        return f"candidate error rate {_fmt(cand * 100)}% vs baseline {_fmt(base * 100)}%"
    return None


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _describe(result: PredicateResult) -> str:
    observed = "unavailable" if result.observed is None else _fmt(result.observed)
    if result.status == "inconclusive" and result.interval is not None:
        observed += f" (90%: {_fmt(result.interval.low)} to {_fmt(result.interval.high)}, holding the bound)"
    return f"{result.metric} {observed} (wanted {_OP_TEXT[result.op]} {_fmt(result.value)})"


def _summary_line(verdict: VerdictName, severity_text: str, results: list[PredicateResult], sample: int) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "unavailable", "inconclusive")}
    tally = f"{counts['pass']} of {len(results)} predicates passed, sample {sample:,}"
    wanted = {"fail"} if counts["fail"] else {"unavailable", "inconclusive"}
    shown = [r for r in results if r.status in wanted]
    detail = "; ".join(_describe(r) for r in shown[:3]) + ("; ..." if len(shown) > 3 else "")
    return f"{verdict}{severity_text}: {detail + ' - ' if detail else ''}{tally}"


def evaluate(
    criteria: SuccessCriteria,
    experiment: Experiment,
    judge_run: JudgeRun | None = None,
    similarities: Sequence[float | None] | np.ndarray | None = None,
) -> Verdict:
    """Judge ``experiment`` (with its chained ``judge_run`` and per-pair ``similarities``, if any) by ``criteria``.

    Every predicate is checked, even when the sample is below
    ``min_sample_size`` (the verdict is then ``inconclusive``). With ``and``
    any failing predicate fails the run, else any unavailable one makes it
    inconclusive; with ``or`` any passing predicate passes it, else any
    unavailable one makes it inconclusive. A failing run is ``critical`` when
    two or more predicates fail, when ``judge_worse_pct_upper_ci`` is above 30
    (whether or not a predicate names it) or when the candidate error rate is
    more than twice the baseline's; ``warn`` otherwise.
    """
    if judge_run is not None and judge_run.experiment_id != experiment.id:
        raise ConfigError(
            f"judge run {judge_run.id} belongs to experiment {judge_run.experiment_id}, not {experiment.id}",
            param="judge_run",
        )
    sims = _as_array(similarities)
    results = []
    for predicate in criteria.predicates:
        observed = observe(predicate.metric, experiment, judge_run, sims, predicate.params)
        interval = METRICS[predicate.metric].interval
        bounds = interval(experiment) if interval is not None else None
        results.append(
            PredicateResult(
                metric=predicate.metric,
                op=predicate.op,
                value=predicate.value,
                params=predicate.params,
                on_straddle=predicate.on_straddle,
                observed=observed,
                interval=bounds,
                status=_check(predicate, observed, bounds),
            )
        )
    sample = experiment.progress.done
    severity: Severity | None = None
    severity_text = ""
    if sample < criteria.min_sample_size:
        verdict: VerdictName = "inconclusive"
        summary = f"inconclusive: sample {sample:,} is below min_sample_size {criteria.min_sample_size:,}"
    else:
        verdict = _combine(criteria.logic, [r.status for r in results])
        if verdict == "fail":
            failed = sum(r.status == "fail" for r in results)
            upper = observe("judge_worse_pct_upper_ci", experiment, judge_run, sims)
            reason = _critical_reason(failed, upper, experiment)
            severity = "critical" if reason else "warn"
            severity_text = f" ({severity}: {reason})" if reason else f" ({severity})"
        summary = _summary_line(verdict, severity_text, results, sample)
    return Verdict(
        verdict=verdict,
        severity=severity,
        sample_size=sample,
        min_sample_size=criteria.min_sample_size,
        logic=criteria.logic,
        predicates=results,
        summary=summary,
    )


# --------------------------------------------------------------------------- breaches


class Breach(BaseModel):
    """The data of one ``experiment.regression_detected`` event: a metric that newly breached its bound."""

    metric: MetricName
    observed: float = Field(description="The metric on this run, in its own unit.")
    observed_delta_pct: float | None = Field(description="``observed`` when the metric is in percent, else null.")
    threshold: float = Field(description="The predicate's value.")
    threshold_pct: float | None = Field(description="``threshold`` when the metric is in percent, else null.")
    op: Op
    severity: Severity


def _breach(result: PredicateResult, severity: Severity) -> Breach:
    observed = result.observed if result.observed is not None else math.nan  # a failing predicate has a value
    percent = METRICS[result.metric].percent
    return Breach(
        metric=result.metric,
        observed=observed,
        observed_delta_pct=observed if percent else None,
        threshold=result.value,
        threshold_pct=result.value if percent else None,
        op=result.op,
        severity=severity,
    )


def breaches(previous: Mapping[str, bool], verdict: Verdict) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The metrics that newly breached in this run, and the per-metric breached state to keep for the next.

    Each event is the data of one ``experiment.regression_detected`` webhook, in the shape of ``Breach``.

    ``previous`` is the state the previous run of the same schedule returned
    (``{}`` for the first run). A metric breaches when one of its predicates
    fails in a failing run; it fires an event only when it was not breached
    already. It recovers when all its predicates pass. Anything else keeps
    its previous state: an unavailable predicate, a failing predicate in a run
    that did not fail (``or`` logic), and every predicate of a run whose sample
    is below ``min_sample_size`` (too small to tell either way). The returned
    state covers the metrics of this run's predicates.
    """
    by_metric: dict[str, list[PredicateResult]] = {}
    for result in verdict.predicates:
        by_metric.setdefault(result.metric, []).append(result)
    state = {metric: bool(previous.get(metric, False)) for metric in by_metric}
    if verdict.sample_size < verdict.min_sample_size:
        return [], state
    events: list[dict[str, Any]] = []
    for metric, results in by_metric.items():
        failed = [r for r in results if r.status == "fail"]
        if failed and verdict.verdict == "fail":
            if not state[metric]:
                events.append(_breach(failed[0], verdict.severity or "warn").model_dump())
            state[metric] = True
        elif all(r.status == "pass" for r in results):
            state[metric] = False
    return events, state


__all__ = [
    "ABS_TOL",
    "CRITICAL_ERROR_RATE_RATIO",
    "CRITICAL_FAILED_PREDICATES",
    "CRITICAL_JUDGE_WORSE_UPPER_CI_PCT",
    "MAX_PREDICATES",
    "METRICS",
    "REL_TOL",
    "Breach",
    "Logic",
    "Metric",
    "MetricFn",
    "MetricName",
    "Op",
    "Predicate",
    "PredicateResult",
    "PredicateStatus",
    "Severity",
    "Straddle",
    "SuccessCriteria",
    "ThresholdParams",
    "Verdict",
    "VerdictName",
    "breaches",
    "evaluate",
    "observe",
]
