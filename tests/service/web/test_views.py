"""The dashboard's drawing helpers: word diff, histogram geometry, sparklines, CI rows and formatting."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.similarity import histogram
from service.web import _views as views


def sides(diff: views.WordDiff) -> tuple[str, str]:
    return "".join(s.text for s in diff.baseline), "".join(s.text for s in diff.candidate)


def test_a_word_diff_marks_what_each_side_changed_and_keeps_the_rest() -> None:
    diff = views.word_diff("The cat sat on the mat. It was happy.", "The dog lay on the rug. It was happy.")
    assert [(s.kind, s.text) for s in diff.baseline] == [
        ("same", "The "),
        ("removed", "cat sat"),  # the space between two changed words joins them
        ("same", " on the "),
        ("removed", "mat"),
        ("same", ". It was happy."),
    ]
    assert [s.text for s in diff.candidate if s.kind == "added"] == ["dog lay", "rug"]
    assert diff.changed_words == 6 and diff.total_words == 22
    assert diff.changed_share == pytest.approx(6 / 22)


def test_identical_and_empty_answers() -> None:
    same = views.word_diff("Same text.", "Same text.")
    assert [s.kind for s in same.baseline] == ["same"] and same.changed_share == 0
    empty = views.word_diff(None, "")
    assert empty.baseline == [] and empty.candidate == [] and empty.changed_share is None
    added = views.word_diff("", "All new")
    assert [(s.kind, s.text) for s in added.candidate] == [("added", "All new")]


def test_answers_too_long_to_diff_are_shown_as_written() -> None:
    long = "word " * (views.DIFF_MAX_TOKENS + 1)
    diff = views.word_diff(long, "short")
    assert not diff.compared and diff.changed_share is None
    assert sides(diff) == (long, "short")


@given(st.text(max_size=200), st.text(max_size=200))
def test_a_word_diff_always_reads_back_as_both_answers(a: str, b: str) -> None:
    assert sides(views.word_diff(a, b)) == (a, b)


def test_histogram_bars_are_to_scale_on_a_fixed_axis() -> None:
    hist = histogram(np.array([0.05, 0.55, 0.86, 0.9, 0.95, 0.99, 1.0, np.nan]), threshold=0.85)
    chart = views.histogram_chart(hist)
    assert [b.count for b in chart.bars] == [b.count for b in hist.buckets] == [1, 0, 0, 0, 0, 1, 0, 0, 1, 4]
    tallest = max(b.height for b in chart.bars)
    for bar in chart.bars:
        assert bar.height == pytest.approx(tallest * bar.count / 4, abs=0.01)
        assert bar.y + bar.height == pytest.approx(chart.plot_bottom)
    assert [b.side for b in chart.bars[7:]] == ["below", "across", "above"]
    assert chart.plot_left < chart.threshold_x < chart.plot_left + chart.plot_width
    assert chart.threshold_x == pytest.approx(chart.plot_left + 0.85 * chart.plot_width, abs=0.01)
    assert [label for _, label in chart.ticks] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]


def test_an_empty_histogram_draws_flat_bars() -> None:
    chart = views.histogram_chart(histogram(np.array([np.nan, np.nan])))
    assert chart.max_count == 0 and all(b.height == 0 for b in chart.bars)


def test_a_sparkline_breaks_at_missing_values_and_draws_the_limit() -> None:
    line = views.sparkline([("a", 10.0, "pass"), ("b", None, "unavailable"), ("c", 30.0, "fail")], 20.0)
    assert [p.value for p in line.points] == [10.0, 30.0]
    assert line.path.count("M") == 2 and "L" not in line.path  # no line across the gap
    assert line.points[0].y > line.limit_y > line.points[1].y  # higher values are drawn higher
    assert (line.low, line.high) == (10.0, 30.0)
    flat = views.sparkline([("a", 5.0, "pass"), ("b", 5.0, "pass")], None)
    assert flat.points[0].y == flat.points[1].y and flat.limit_y is None
    assert views.sparkline([("a", None, "unavailable")], None).points == []


def test_criterion_history_follows_each_predicate_over_runs_oldest_first() -> None:
    def run(when: str, cost: float, p95: float | None) -> dict[str, object]:
        predicates = [
            {"metric": "cost_delta_pct", "op": "lte", "value": 0, "params": None, "observed": cost, "status": "pass"},
            {"metric": "latency_p95_delta_pct", "op": "lte", "value": 25, "observed": p95, "status": "pass"},
        ]
        return {"when": when, "verdict": {"predicates": predicates}}

    history = views.criterion_history([run("new", -5, 3), {"when": "skipped", "verdict": None}, run("old", -9, None)])
    assert [h["metric"] for h in history] == ["cost_delta_pct", "latency_p95_delta_pct"]
    assert [p.when for p in history[0]["sparkline"].points] == ["old", "new"]
    assert [p.value for p in history[1]["sparkline"].points] == [3]
    assert views.criterion_history([]) == []


def test_ci_rows_hold_the_judge_breakdown_in_percent() -> None:
    summary = {
        "verdict_breakdown": {"better": 0.25, "equivalent": 0.5, "worse": 0.25},
        "verdict_breakdown_ci_95": {
            "better": {"lower": 0.1, "upper": 0.5},
            "equivalent": {"lower": 0.3, "upper": 0.7},
            "worse": {"lower": 0.1, "upper": 0.5},
        },
    }
    rows = views.ci_rows(summary, width=200)
    assert [r.verdict for r in rows] == ["better", "equivalent", "worse"]
    assert (rows[1].share, rows[1].lower, rows[1].upper) == (50.0, 30.0, 70.0)
    assert (rows[1].bar_width, rows[1].lower_x, rows[1].upper_x) == (100.0, 60.0, 140.0)


def test_route_rows_and_tones() -> None:
    rows = views.route_rows({"a:x": 0.7, "b:y": 0.3}, {"c:z": 1.0})
    assert [r["route"] for r in rows] == ["c:z", "a:x", "b:y"]
    assert rows[0] == {"route": "c:z", "baseline": 0.0, "candidate": 1.0}
    assert views.route_rows(None, None) == []
    assert [views.tone(v) for v in (-10, 10, 0.2, None)] == ["good", "bad", "flat", "flat"]
    assert views.tone(5, lower_is_better=False) == "good"


def test_formatting() -> None:
    assert views.usd(0.3486) == "$0.3486" and views.usd(0.000052) == "$0.000052" and views.usd(1234.5) == "$1,234.50"
    assert views.signed_usd(-0.3177) == "-$0.3177" and views.signed_usd(0.5) == "+$0.50" and views.usd(None) == "—"
    # Money as money: the guide's "$15.00/month", a $0.05 cap, a $0 spend.
    assert (views.usd(15), views.usd(0.05), views.usd(0), views.usd(12.34567)) == ("$15.00", "$0.05", "$0.00", "$12.35")
    assert views.pct(-91.14, signed=True) == "-91.1%" and views.pct(None) == "—" and views.share(0.59) == "59%"
    assert views.ms(3104.2) == "3,104 ms" and views.ms(34130) == "34.13 s"
    assert views.when("2026-04-10T00:00:00+02:00") == "2026-04-09 22:00 UTC"
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert views.relative(now + dt.timedelta(hours=20), now) == "in 20 h"
    assert views.relative(now - dt.timedelta(minutes=5), now) == "5 min ago"
    assert views.verdict_detail("fail (warn): cost_delta_pct -91 - 2 of 3", "fail") == "cost_delta_pct -91 - 2 of 3"
    assert views.verdict_detail("no prefix here", "pass") == "no prefix here"
