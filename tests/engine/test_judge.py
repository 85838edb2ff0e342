"""The judge's pure parts: Wilson intervals, bucket allocation, the reply contract, verdict mapping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from engine import judge
from engine.errors import ConfigError


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 100, 300, 1500])
def test_wilson_matches_scipy(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lower, upper = judge.wilson(k, n)
        assert lower == pytest.approx(ci.low, abs=2e-4)  # scipy uses the exact normal quantile, we use 1.96
        assert upper == pytest.approx(ci.high, abs=2e-4)


@given(st.integers(1, 2000), st.data())
def test_wilson_bounds_contain_the_point_estimate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    lower, upper = judge.wilson(k, n)
    assert 0 <= lower <= k / n <= upper <= 1


def test_guide_sample_interval_width() -> None:
    # 41% of 300 gives roughly ±5 points, as the guide says of the 100-per-bucket default.
    lower, upper = judge.wilson(123, 300)
    assert upper - lower == pytest.approx(0.11, abs=0.01)


@pytest.mark.parametrize(
    ("available", "effective"),
    [
        ({"high": 500, "mild": 500, "major": 500}, {"high": 100, "mild": 100, "major": 100}),
        ({"high": 500, "mild": 500, "major": 0}, {"high": 150, "mild": 150, "major": 0}),  # one empty
        ({"high": 500, "mild": 40, "major": 10}, {"high": 250, "mild": 40, "major": 10}),  # two short
        ({"high": 30, "mild": 20, "major": 10}, {"high": 30, "mild": 20, "major": 10}),  # all short
        ({"high": 90, "mild": 500, "major": 101}, {"high": 90, "mild": 109, "major": 101}),  # spare capped
    ],
)
def test_shortfall_is_redistributed_deterministically(available: dict[str, int], effective: dict[str, int]) -> None:
    allocation = judge.allocate({"high": 100, "mild": 100, "major": 100}, available)
    assert allocation.effective == effective
    assert allocation.total == min(300, sum(available.values()))
    again = judge.allocate({"high": 100, "mild": 100, "major": 100}, available)
    assert again == allocation


def test_allocation_notes_and_limits() -> None:
    allocation = judge.allocate({"high": 100, "mild": 100, "major": 100}, {"high": 500, "mild": 500, "major": 0})
    assert allocation.notes() == [
        "Some buckets are short (major has 0 of 100); their shortfall went to buckets with spare pairs "
        "(high +50, mild +50)."
    ]
    with pytest.raises(ConfigError, match="at most 1,500") as info:
        judge.allocate({"high": 1000, "mild": 400, "major": 101}, {})
    assert info.value.param == "stratification"
    drill = judge.allocate({"high": 0, "mild": 0, "major": 200}, {"high": 500, "mild": 500, "major": 500})
    assert drill.effective == {"high": 0, "mild": 0, "major": 200}


@pytest.mark.parametrize(
    ("reply", "winner"),
    [
        ('{"winner": "A", "reason": "more complete"}', "A"),
        ('```json\n{"winner": "B", "reason": "correct"}\n```', "B"),
        ('{"winner": "Tie", "reason": "same"}', "tie"),
        ("Answer A is better.", None),
        ('{"winner": "C"}', None),
        ('["A"]', None),
        ('{"winner": "A"', None),
        ("", None),
        (None, None),
    ],
)
def test_reply_contract(reply: str | None, winner: str | None) -> None:
    assert judge.parse_winner(reply)[0] == winner


def test_verdicts_are_from_the_candidates_side() -> None:
    assert judge.to_verdict("A", candidate_is_a=True) == "better"
    assert judge.to_verdict("A", candidate_is_a=False) == "worse"
    assert judge.to_verdict("B", candidate_is_a=False) == "better"
    assert judge.to_verdict("tie", candidate_is_a=True) == "equivalent"
    assert judge.to_verdict(None, candidate_is_a=True) is None
    assert judge.combine_orders("worse", "worse") == ("worse", False)
    assert judge.combine_orders("better", "worse") == ("equivalent", True)
    assert judge.combine_orders("better", None) == (None, None)


def test_order_draw_is_seeded_and_balanced() -> None:
    ids = [f"r{i}" for i in range(4000)]
    first = judge.candidate_first(ids, seed=1)
    assert (first == judge.candidate_first(ids, seed=1)).all()
    assert 0.47 < first.mean() < 0.53


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["better", "equivalent", "worse", None]), max_size=200))
def test_parse_errors_are_excluded_from_proportions(verdicts: list[str | None]) -> None:
    rows = [{"verdict": v, "bucket": "mild"} for v in verdicts]
    summary = judge.summarize(rows, 1.25, both_orders=False)
    parsed = [v for v in verdicts if v is not None]
    assert summary["judged_count"] == len(parsed)
    assert summary["parse_errors"] == len(verdicts) - len(parsed)
    if parsed:
        assert sum(summary["verdict_breakdown"].values()) == pytest.approx(1.0)
        assert summary["verdict_breakdown"]["worse"] == pytest.approx(parsed.count("worse") / len(parsed))
    assert summary["by_bucket"]["mild"]["n"] == len(parsed)
    assert set(summary) == {
        "judged_count",
        "parse_errors",
        "spend_usd",
        "verdict_breakdown",
        "verdict_breakdown_ci_95",
        "by_bucket",
    }


def test_rubric_hash_is_sha256() -> None:
    assert judge.rubric_hash("x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
