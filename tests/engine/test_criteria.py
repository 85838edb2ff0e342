"""Success criteria: the metric catalog, predicate checks, verdicts, severity, parsing and breach bookkeeping."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, get_args

import numpy as np
import pytest

from engine import judge
from engine.criteria import (
    METRICS,
    MetricName,
    Predicate,
    SuccessCriteria,
    ThresholdParams,
    Verdict,
    breaches,
    evaluate,
    observe,
)
from engine.errors import ConfigError
from engine.replay import deltas
from engine.schema import (
    BucketBoundaries,
    Experiment,
    FiltersSpec,
    Interval,
    JudgeRun,
    Progress,
    SimilaritySummary,
    Stratification,
    Summary,
    parse_body,
)
from engine.similarity import histogram

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: Per-pair similarities of the with-responses run: 4 scored (2 at or above 0.85, 3 at or above 0.6), 1 unscored.
SIMS = [0.9, 0.95, 0.5, 0.7, None]


def _summary(*, cost: float = 10.0, p50: float = 100.0, p95: float = 400.0, error_rate: float = 0.0) -> Summary:
    return Summary(
        request_count=1000,
        cost_usd=cost,
        cost_per_request_usd=cost / 1000,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        error_rate=error_rate,
        input_tokens=1,
        output_tokens=1,
        route_distribution={},
    )


def _experiment(
    baseline: Summary | None = None,
    candidate: Summary | None = None,
    *,
    mode: str = "routing_only",
    done: int = 1000,
    similarities: list[float | None] | None = None,
) -> Experiment:
    """A completed experiment; its deltas are computed the way runs compute them."""
    change = deltas(baseline, candidate, []) if baseline and candidate else None
    similarity = None
    if similarities is not None:
        hist = histogram(np.asarray(similarities, dtype=np.float64))
        similarity = SimilaritySummary.model_validate(hist.model_dump(exclude={"buckets"}))
    return Experiment.model_validate(
        {
            "id": "exp_1",
            "name": "x",
            "project_id": "p",
            "mode": mode,
            "status": "completed",
            "candidate_policy": "single",
            "candidate_config": {"model": "m"},
            "window_start": T0,
            "window_end": T0,
            "filters": FiltersSpec(),
            "progress": Progress(done=done, total=done),
            "baseline_summary": baseline,
            "candidate_summary": candidate,
            "deltas": change,
            "similarity_summary": similarity,
            "created_at": T0,
        }
    )


def _routing(**candidate: float) -> Experiment:
    """Routing-only: cost 10 -> 8, p50 100 -> 120, p95 400 -> 300, error rate 2% -> 3% unless overridden."""
    values = {"cost": 8.0, "p50": 120.0, "p95": 300.0, "error_rate": 0.03} | candidate
    return _experiment(_summary(error_rate=0.02), _summary(**values))


#: The 90% intervals ``_bounded`` gives the deltas of ``_routing``.
BOUNDS = {
    "cost_delta_pct": (-30.0, -10.0),
    "cost_delta_usd": (-3.0, -1.0),
    "latency_p50_delta_pct": (10.0, 30.0),
    "latency_p95_delta_pct": (-35.0, -15.0),
    "error_rate_delta_pct": (20.0, 80.0),
}


def _bounded() -> Experiment:
    """``_routing`` with 90% intervals on its deltas and its candidate error rate (2.5% to 3.5%)."""
    exp = _routing()
    assert exp.deltas is not None and exp.candidate_summary is not None
    intervals = {f"{k}_interval": Interval(low=lo, high=hi) for k, (lo, hi) in BOUNDS.items()}
    candidate = exp.candidate_summary.model_copy(update={"error_rate_interval": Interval(low=0.025, high=0.035)})
    return exp.model_copy(update={"deltas": exp.deltas.model_copy(update=intervals), "candidate_summary": candidate})


def _with_responses(candidate_error_rate: float = 0.2, similarities: list[float | None] | None = None) -> Experiment:
    """With-responses: the baseline side has no errors (its logged answers were successful)."""
    return _experiment(
        _summary(),
        _summary(cost=12.0, error_rate=candidate_error_rate),
        mode="with_responses",
        similarities=SIMS if similarities is None else similarities,
    )


def _judge_run(better: int = 5, equivalent: int = 3, worse: int = 2, parse_errors: int = 2) -> JudgeRun:
    """A judge run whose summary is made by the judge's own ``summarize``."""
    rows: list[dict[str, Any]] = [
        {"verdict": v, "bucket": "high"}
        for v, n in (("better", better), ("equivalent", equivalent), ("worse", worse))
        for _ in range(n)
    ]
    rows += [{"verdict": None, "bucket": "high"}] * parse_errors
    return JudgeRun(
        id="jr_1",
        experiment_id="exp_1",
        project_id="p",
        status="completed",
        judge_model="gpt-4o",
        rubric="r",
        rubric_hash="h",
        order="random",
        stratification=Stratification(),
        boundaries=BucketBoundaries(),
        effective_by_bucket={"high": len(rows)},
        spend_cap_usd=20.0,
        summary=judge.summarize(rows, 0.1, both_orders=False),
        created_at=T0,
    )


def _criteria(*predicates: tuple[str, str, float], logic: str = "and", min_sample_size: int = 0) -> SuccessCriteria:
    return SuccessCriteria.model_validate(
        {
            "logic": logic,
            "min_sample_size": min_sample_size,
            "predicates": [{"metric": m, "op": op, "value": v} for m, op, v in predicates],
        }
    )


WORSE_UPPER_PCT = judge.wilson(2, 10)[1] * 100

# --------------------------------------------------------------------------- catalog


def test_catalog_has_the_guides_fifteen_metrics_and_ten_interval_bounds_with_one_line_descriptions() -> None:
    assert set(METRICS) == set(get_args(MetricName)) and len(METRICS) == 25
    assert {m for m in METRICS if m.endswith(("_lower", "_upper"))} == {
        f"{name}_{end}" for name in BOUNDS for end in ("lower", "upper")
    }
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.description and "\n" not in metric.description
        assert metric.percent == ("_pct" in name)
    assert [m for m, spec in METRICS.items() if spec.takes_threshold] == ["similarity_pct_above_threshold"]


# (metric, experiment, judge run, similarities, params, expected observation; None = unavailable)
METRIC_CASES: list[
    tuple[str, str, Experiment, JudgeRun | None, list[float | None] | None, float | None, float | None]
] = [
    ("sample_size", "rows replayed", _routing(), None, None, None, 1000.0),
    ("sample_size", "pairs done", _experiment(done=37, mode="with_responses"), None, None, None, 37.0),
    ("sample_size", "nothing ran", _experiment(done=0), None, None, None, 0.0),
    ("cost_delta_pct", "cheaper", _routing(), None, None, None, -20.0),
    ("cost_delta_pct", "baseline cost 0", _experiment(_summary(cost=0.0), _summary(cost=1.0)), None, None, None, None),
    ("cost_delta_pct", "both costs 0", _experiment(_summary(cost=0), _summary(cost=0)), None, None, None, 0.0),
    ("cost_delta_pct", "no summaries", _experiment(), None, None, None, None),
    ("cost_delta_usd", "cheaper", _routing(), None, None, None, -2.0),
    ("cost_delta_usd", "no summaries", _experiment(), None, None, None, None),
    ("latency_p50_delta_pct", "slower", _routing(), None, None, None, 20.0),
    ("latency_p50_delta_pct", "baseline 0 ms", _experiment(_summary(p50=0), _summary()), None, None, None, None),
    ("latency_p95_delta_pct", "faster tail", _routing(), None, None, None, -25.0),
    ("latency_p95_delta_pct", "no summaries", _experiment(), None, None, None, None),
    ("error_rate_delta_pct", "2% -> 3%", _routing(), None, None, None, 50.0),
    ("error_rate_delta_pct", "both 0", _with_responses(0.0), None, None, None, 0.0),
    ("error_rate_delta_pct", "baseline 0, candidate errors", _with_responses(0.2), None, None, None, None),
    ("candidate_error_rate_pct", "3%", _routing(), None, None, None, 3.0),
    ("candidate_error_rate_pct", "no summaries", _experiment(), None, None, None, None),
    ("mean_similarity", "from the summary", _with_responses(), None, None, None, 0.7625),
    ("mean_similarity", "from the pairs", _experiment(_summary(), _summary()), None, SIMS, None, 0.7625),
    ("mean_similarity", "routing-only", _routing(), None, None, None, None),
    ("mean_similarity", "nothing scored", _with_responses(similarities=[None, None]), None, None, None, None),
    ("similarity_pct_above_threshold", "default 0.85", _with_responses(), None, None, None, 50.0),
    ("similarity_pct_above_threshold", "0.6 from pairs", _with_responses(), None, SIMS, 0.6, 75.0),
    ("similarity_pct_above_threshold", "0.6 without pairs", _with_responses(), None, None, 0.6, None),
    ("similarity_pct_above_threshold", "routing-only", _routing(), None, None, None, None),
    ("unscored_pct", "one of five", _with_responses(), None, None, None, 20.0),
    ("unscored_pct", "from the pairs", _experiment(_summary(), _summary()), None, SIMS, None, 20.0),
    ("unscored_pct", "routing-only", _routing(), None, None, None, None),
    ("judge_better_pct", "5 of 10", _with_responses(), _judge_run(), None, None, 50.0),
    ("judge_better_pct", "no judge run", _with_responses(), None, None, None, None),
    ("judge_equivalent_pct", "3 of 10", _with_responses(), _judge_run(), None, None, 30.0),
    ("judge_equivalent_pct", "nothing judged", _with_responses(), _judge_run(0, 0, 0, 3), None, None, None),
    ("judge_worse_pct", "2 of 10", _with_responses(), _judge_run(), None, None, 20.0),
    ("judge_worse_pct", "no judge run", _with_responses(), None, None, None, None),
    ("judge_worse_pct_upper_ci", "Wilson upper", _with_responses(), _judge_run(), None, None, WORSE_UPPER_PCT),
    ("judge_worse_pct_upper_ci", "no judge run", _with_responses(), None, None, None, None),
    ("judge_parse_error_pct", "2 of 12 replies", _with_responses(), _judge_run(), None, None, 100 * 2 / 12),
    ("judge_parse_error_pct", "all unparsed", _with_responses(), _judge_run(0, 0, 0, 3), None, None, 100.0),
    ("judge_parse_error_pct", "no replies", _with_responses(), _judge_run(0, 0, 0, 0), None, None, None),
    ("judge_parse_error_pct", "no judge run", _with_responses(), None, None, None, None),
    *(
        case
        for name, (low, high) in BOUNDS.items()
        for case in (
            (f"{name}_lower", "interval", _bounded(), None, None, None, low),
            (f"{name}_upper", "interval", _bounded(), None, None, None, high),
            (f"{name}_lower", "no interval", _routing(), None, None, None, None),
            (f"{name}_upper", "no interval", _with_responses(), None, None, None, None),
        )
    ),
]


@pytest.mark.parametrize(
    ("metric", "experiment", "judge_run", "similarities", "threshold", "expected"),
    [pytest.param(m, e, j, s, t, x, id=f"{m}-{label}") for m, label, e, j, s, t, x in METRIC_CASES],
)
def test_metric_observation(
    metric: str,
    experiment: Experiment,
    judge_run: JudgeRun | None,
    similarities: list[float | None] | None,
    threshold: float | None,
    expected: float | None,
) -> None:
    params = ThresholdParams(threshold=threshold) if threshold is not None else None
    observed = observe(metric, experiment, judge_run, similarities, params)
    if expected is None:
        assert observed is None
    else:
        assert observed == pytest.approx(expected)
    # The same value reaches the verdict through a predicate.
    raw: dict[str, Any] = {"metric": metric, "op": "gte", "value": 0}
    if threshold is not None:
        raw["params"] = {"threshold": threshold}
    criteria = SuccessCriteria.model_validate({"predicates": [raw]})
    result = evaluate(criteria, experiment, judge_run, similarities).predicates[0]
    assert result.observed == observed
    assert result.status == ("unavailable" if expected is None else "pass" if expected >= 0 else "fail")


def test_every_metric_has_available_and_unavailable_cases() -> None:
    available = {m for m, *_, x in METRIC_CASES if x is not None}
    unavailable = {m for m, *_, x in METRIC_CASES if x is None}
    assert available == set(METRICS)
    assert unavailable == set(METRICS) - {"sample_size"}  # a run always has a sample size, 0 if nothing ran


def test_a_predicate_whose_interval_holds_its_bound_can_be_inconclusive() -> None:
    def verdict(on_straddle: str, value: float, metric: str = "cost_delta_pct") -> Verdict:
        predicate = {"metric": metric, "op": "lt", "value": value, "onStraddle": on_straddle}
        return evaluate(SuccessCriteria.model_validate({"predicates": [predicate]}), _bounded())

    # Cost fell 20% (90%: 10% to 30%): "below -15%" passes on the point, but the interval holds -15.
    assert verdict("point", -15).verdict == "pass"
    straddling = verdict("inconclusive", -15)
    assert straddling.verdict == "inconclusive" and straddling.predicates[0].status == "inconclusive"
    assert straddling.predicates[0].interval == Interval(low=-30.0, high=-10.0)
    assert "cost_delta_pct -20 (90%: -30 to -10, holding the bound)" in straddling.summary
    # Clear of the interval either way, the point decides as before.
    assert verdict("inconclusive", -5).verdict == "pass"
    assert verdict("inconclusive", -40).verdict == "fail"
    # "Fail only if we are 90% sure cost rose more than 20%", on the upper bound's metric ...
    assert verdict("point", 20, "cost_delta_pct_upper").verdict == "pass"
    # ... and a metric without an interval is judged on its point.
    assert verdict("inconclusive", 100, "sample_size").verdict == "fail"
    # An inconclusive predicate neither breaches nor recovers its metric.
    assert breaches({"cost_delta_pct": True}, straddling) == ([], {"cost_delta_pct": True})


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        observe("nope", _routing())


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("op", "value", "status"),
    [
        ("lt", 4, "pass"),
        ("lt", 3, "fail"),
        ("lt", 2, "fail"),
        ("lte", 3, "pass"),
        ("lte", 2.9, "fail"),
        ("gt", 2, "pass"),
        ("gt", 3, "fail"),
        ("gte", 3, "pass"),
        ("gte", 3.1, "fail"),
        ("eq", 3, "pass"),
        ("eq", 3.001, "fail"),
        ("ne", 3.001, "pass"),
        ("ne", 3, "fail"),
    ],
)
def test_operators(op: str, value: float, status: str) -> None:
    # candidate_error_rate_pct observes 3 here.
    verdict = evaluate(_criteria(("candidate_error_rate_pct", op, value)), _routing())
    assert verdict.predicates[0].status == status
    assert verdict.verdict == status


@pytest.mark.parametrize("rate", [0.07, 0.29])  # x 100: 7.000000000000001 and 28.999999999999996
@pytest.mark.parametrize(
    ("op", "status"), [("lte", "pass"), ("gte", "pass"), ("eq", "pass"), ("lt", "fail"), ("gt", "fail"), ("ne", "fail")]
)
def test_float_noise_counts_as_equal(rate: float, op: str, status: str) -> None:
    experiment = _routing(error_rate=rate)
    observed = observe("candidate_error_rate_pct", experiment)
    assert observed is not None and observed != round(rate * 100)
    verdict = evaluate(_criteria(("candidate_error_rate_pct", op, round(rate * 100))), experiment)
    assert verdict.predicates[0].status == status


# --------------------------------------------------------------------------- logic

PASS = ("cost_delta_pct", "lte", 0)  # -20: passes
FAIL = ("latency_p50_delta_pct", "lte", 10)  # +20: fails
UNAVAILABLE = ("judge_worse_pct", "lte", 10)  # no judge run


@pytest.mark.parametrize(
    ("logic", "predicates", "expected"),
    [
        ("and", [PASS], "pass"),
        ("and", [PASS, PASS], "pass"),
        ("and", [PASS, FAIL], "fail"),
        ("and", [FAIL, UNAVAILABLE], "fail"),
        ("and", [PASS, UNAVAILABLE], "inconclusive"),
        ("and", [UNAVAILABLE], "inconclusive"),
        ("or", [FAIL, PASS], "pass"),
        ("or", [UNAVAILABLE, PASS], "pass"),
        ("or", [FAIL, UNAVAILABLE], "inconclusive"),
        ("or", [UNAVAILABLE], "inconclusive"),
        ("or", [FAIL], "fail"),
        ("or", [FAIL, FAIL], "fail"),
    ],
)
def test_logic(logic: str, predicates: list[tuple[str, str, float]], expected: str) -> None:
    verdict = evaluate(_criteria(*predicates, logic=logic), _routing())
    assert verdict.verdict == expected
    assert verdict.logic == logic
    assert (verdict.severity is not None) == (expected == "fail")


@pytest.mark.parametrize(("done", "expected"), [(99, "inconclusive"), (100, "fail"), (1000, "fail")])
def test_min_sample_size(done: int, expected: str) -> None:
    experiment = _experiment(_summary(error_rate=0.02), _summary(p50=120, error_rate=0.03), done=done)
    verdict = evaluate(_criteria(FAIL, PASS, min_sample_size=100), experiment)
    assert verdict.verdict == expected
    assert (verdict.sample_size, verdict.min_sample_size) == (done, 100)
    # The predicates are checked and shown either way.
    assert [p.status for p in verdict.predicates] == ["fail", "pass"]
    if expected == "inconclusive":
        assert verdict.severity is None
        assert "below min_sample_size 100" in verdict.summary


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("case", "experiment", "judge_run", "predicates", "severity"),
    [
        ("one fail", _routing(), None, [FAIL, PASS], "warn"),
        ("two fails", _routing(), None, [FAIL, ("cost_delta_usd", "gt", 0)], "critical"),
        ("judge upper CI > 30, not a predicate", _with_responses(0.0), _judge_run(5, 1, 4, 0), [FAIL], "critical"),
        ("judge upper CI <= 30", _with_responses(0.0), _judge_run(90, 10, 0, 0), [FAIL], "warn"),
        ("error rate 2% -> 5%", _routing(error_rate=0.05), None, [FAIL], "critical"),
        ("error rate exactly doubled", _routing(error_rate=0.04), None, [FAIL], "warn"),
        ("baseline 0, candidate errors", _with_responses(0.01), None, [FAIL], "critical"),
        ("baseline 0, no candidate errors", _with_responses(0.0), None, [FAIL], "warn"),
    ],
)
def test_severity(
    case: str, experiment: Experiment, judge_run: JudgeRun | None, predicates: list[Any], severity: str
) -> None:
    if experiment.mode == "with_responses":  # +20% cost there: fails a cost predicate instead
        predicates = [("cost_delta_pct", "lte", 10) if p == FAIL else p for p in predicates]
    verdict = evaluate(_criteria(*predicates), experiment, judge_run)
    assert verdict.verdict == "fail"
    assert verdict.severity == severity
    assert verdict.summary.startswith(f"fail ({severity}")


def test_judge_upper_ci_over_30_is_critical_as_a_predicate_too() -> None:
    judge_run = _judge_run(5, 1, 4, 0)
    upper = observe("judge_worse_pct_upper_ci", _with_responses(0.0), judge_run)
    assert upper is not None and upper > 30
    verdict = evaluate(_criteria(("judge_worse_pct_upper_ci", "lte", 15)), _with_responses(0.0), judge_run)
    assert (verdict.verdict, verdict.severity) == ("fail", "critical")


def test_passing_and_inconclusive_runs_have_no_severity() -> None:
    experiment = _routing(error_rate=0.5)  # would be critical if it failed
    assert evaluate(_criteria(PASS), experiment).severity is None
    assert evaluate(_criteria(UNAVAILABLE), experiment).severity is None


def test_verdict_summary_and_json() -> None:
    verdict = evaluate(_criteria(FAIL, PASS), _routing())
    assert (
        verdict.summary
        == "fail (warn): latency_p50_delta_pct 20 (wanted <= 10) - 1 of 2 predicates passed, sample 1,000"
    )
    dumped = json.loads(verdict.model_dump_json())
    assert dumped["predicates"][0] == {
        "metric": "latency_p50_delta_pct",
        "op": "lte",
        "value": 10.0,
        "params": None,
        "on_straddle": "point",
        "observed": 20.0,
        "interval": None,
        "status": "fail",
    }
    assert Verdict.model_validate(dumped) == verdict
    inconclusive = evaluate(_criteria(PASS, UNAVAILABLE), _routing())
    assert "judge_worse_pct unavailable" in inconclusive.summary


def test_judge_run_of_another_experiment_is_refused() -> None:
    other = _judge_run().model_copy(update={"experiment_id": "exp_2"})
    with pytest.raises(ConfigError, match="belongs to experiment exp_2"):
        evaluate(_criteria(PASS), _routing(), other)


# --------------------------------------------------------------------------- parsing


def test_guide_example_parses() -> None:
    raw = {
        "logic": "and",
        "min_sample_size": 100,
        "predicates": [
            {"metric": "judge_worse_pct_upper_ci", "op": "lte", "value": 15},
            {"metric": "error_rate_delta_pct", "op": "lte", "value": 5},
        ],
    }
    criteria = parse_body(SuccessCriteria, raw)
    assert criteria.min_sample_size == 100
    camel = {k: v for k, v in raw.items() if k != "min_sample_size"} | {"minSampleSize": 100}
    assert parse_body(SuccessCriteria, camel) == criteria
    assert criteria.model_dump()["min_sample_size"] == 100


def test_defaults() -> None:
    criteria = parse_body(SuccessCriteria, {"predicates": [{"metric": "sample_size", "op": "gte", "value": 1}]})
    assert (criteria.logic, criteria.min_sample_size) == ("and", 0)
    assert criteria.predicates[0].params is None


@pytest.mark.parametrize(
    ("params", "threshold"), [(None, 0.85), ({}, 0.85), ({"threshold": 0.6}, 0.6), ({"threshold": 1}, 1.0)]
)
def test_threshold_param(params: dict[str, float] | None, threshold: float) -> None:
    raw: dict[str, Any] = {"metric": "similarity_pct_above_threshold", "op": "gte", "value": 70}
    if params is not None:
        raw["params"] = params
    predicate = Predicate.model_validate(raw)
    assert predicate.params == ThresholdParams(threshold=threshold)


def test_empty_params_on_other_metrics_are_dropped() -> None:
    assert Predicate.model_validate({"metric": "cost_delta_pct", "op": "lt", "value": 0, "params": {}}).params is None


def _predicate(**overrides: Any) -> dict[str, Any]:
    return {"metric": "cost_delta_pct", "op": "lte", "value": 20} | overrides


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        ({"predicates": [_predicate(metric="nope")]}, "predicates.0.metric", "Input should be 'sample_size'"),
        ({"predicates": [_predicate(), _predicate(op="le")]}, "predicates.1.op", "Input should be 'lt'"),
        ({"predicates": [_predicate(value="much")]}, "predicates.0.value", "valid number"),
        ({"predicates": [_predicate(value=float("inf"))]}, "predicates.0.value", "finite number"),
        ({"predicates": [_predicate(params={"threshold": 0.5})]}, "predicates.0.params", "takes no params"),
        (
            {"predicates": [_predicate(metric="similarity_pct_above_threshold", params={"cutoff": 0.5})]},
            "predicates.0.params.cutoff",
            "Extra inputs are not permitted",
        ),
        (
            {"predicates": [_predicate(metric="similarity_pct_above_threshold", params={"threshold": 1.5})]},
            "predicates.0.params.threshold",
            "less than or equal to 1",
        ),
        ({"predicates": [_predicate(unit="pct")]}, "predicates.0.unit", "Extra inputs are not permitted"),
        ({"predicates": []}, "predicates", "at least 1 item"),
        ({"predicates": [_predicate()] * 21}, "predicates", "at most 20 items"),
        ({}, "predicates", "Field required"),
        ({"logic": "xor", "predicates": [_predicate()]}, "logic", "'and' or 'or'"),
        ({"min_sample_size": -1, "predicates": [_predicate()]}, "min_sample_size", "greater than or equal to 0"),
        ({"minSampleSize": "many", "predicates": [_predicate()]}, "minSampleSize", "valid integer"),
        ({"hypothesis": "x", "predicates": [_predicate()]}, "hypothesis", "Extra inputs are not permitted"),
    ],
)
def test_parse_errors_name_the_field(raw: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_body(SuccessCriteria, raw)
    assert info.value.param == param
    assert str(info.value).startswith(f"{param}: ")
    assert message in str(info.value)


# --------------------------------------------------------------------------- breaches


def _cost_run(cost_delta_pct: float, done: int = 1000) -> Experiment:
    return _experiment(_summary(error_rate=0.02), _summary(cost=10 * (1 + cost_delta_pct / 100)), done=done)


COST_CAP = _criteria(("cost_delta_pct", "lte", 10), min_sample_size=100)


def test_breach_fires_once_per_breach() -> None:
    state: dict[str, bool] = {}
    fired: list[list[dict[str, Any]]] = []
    for delta in (0, 25, 30, 5, 40):  # pass -> breach -> breach -> recover -> breach
        events, state = breaches(state, evaluate(COST_CAP, _cost_run(delta)))
        fired.append(events)
    assert [len(events) for events in fired] == [0, 1, 0, 0, 1]
    assert state == {"cost_delta_pct": True}
    first = fired[1][0]
    assert first == {
        "metric": "cost_delta_pct",
        "observed": pytest.approx(25.0),
        "observed_delta_pct": pytest.approx(25.0),
        "threshold": 10.0,
        "threshold_pct": 10.0,
        "op": "lte",
        "severity": "warn",
    }
    assert fired[4][0]["observed"] == pytest.approx(40.0)


def test_breach_of_a_non_percent_metric_has_no_pct_fields() -> None:
    criteria = _criteria(("cost_delta_usd", "lte", 1), ("mean_similarity", "gte", 0.9))
    events, state = breaches({}, evaluate(criteria, _with_responses()))
    assert state == {"cost_delta_usd": True, "mean_similarity": True}
    assert [(e["metric"], e["observed_delta_pct"], e["threshold_pct"], e["severity"]) for e in events] == [
        ("cost_delta_usd", None, None, "critical"),
        ("mean_similarity", None, None, "critical"),
    ]
    assert events[0]["observed"] == pytest.approx(2.0)


def test_unavailable_and_small_samples_keep_the_state() -> None:
    criteria = _criteria(("cost_delta_pct", "lte", 10), ("judge_worse_pct", "lte", 10), min_sample_size=100)
    # judge_worse_pct was breached before; this run has no judge run: it stays breached, no event.
    events, state = breaches({"judge_worse_pct": True}, evaluate(criteria, _cost_run(25)))
    assert [e["metric"] for e in events] == ["cost_delta_pct"]
    assert state == {"cost_delta_pct": True, "judge_worse_pct": True}
    # Too small a sample tells nothing either way: no event, no recovery.
    events, state = breaches({"cost_delta_pct": True}, evaluate(COST_CAP, _cost_run(0, done=10)))
    assert (events, state) == ([], {"cost_delta_pct": True})
    events, state = breaches({}, evaluate(COST_CAP, _cost_run(50, done=10)))
    assert (events, state) == ([], {"cost_delta_pct": False})


def test_a_failing_predicate_in_a_passing_run_is_no_breach() -> None:
    criteria = _criteria(("cost_delta_pct", "lte", 10), ("latency_p95_delta_pct", "lte", 0), logic="or")
    verdict = evaluate(criteria, _cost_run(25))
    assert verdict.verdict == "pass"
    events, state = breaches({"cost_delta_pct": False}, verdict)
    assert (events, state) == ([], {"cost_delta_pct": False, "latency_p95_delta_pct": False})


def test_a_metric_with_two_predicates_recovers_when_both_pass() -> None:
    criteria = _criteria(("cost_delta_pct", "gte", -50), ("cost_delta_pct", "lte", 10))
    events, state = breaches({}, evaluate(criteria, _cost_run(-60)))
    assert [(e["metric"], e["op"]) for e in events] == [("cost_delta_pct", "gte")]
    events, state = breaches(state, evaluate(criteria, _cost_run(20)))
    assert (events, state) == ([], {"cost_delta_pct": True})  # still breached (the other bound now)
    events, state = breaches(state, evaluate(criteria, _cost_run(0)))
    assert (events, state) == ([], {"cost_delta_pct": False})
