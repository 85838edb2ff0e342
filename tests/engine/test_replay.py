from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from engine.pricing import Catalog, cost_at
from engine.replay import deltas, replay
from engine.routing import build_policy
from engine.schema import Summary
from tests.conftest import log_frame


def points(model: BaseModel) -> dict[str, Any]:
    """A summary's or deltas' point figures (without their intervals)."""
    return {k: v for k, v in model.model_dump().items() if not k.endswith("_interval")}


def intervals(model: BaseModel) -> dict[str, Any]:
    """A summary's or deltas' intervals."""
    return {k: v for k, v in model.model_dump().items() if k.endswith("_interval")}


def test_summary_by_hand(toy_catalog: Catalog) -> None:
    frame = log_frame(
        {"cost_usd": c, "latency_ms": lat, "status": st, "model": m, "provider": "acme", "input_tokens": 5}
        for c, lat, st, m in [
            (0.1, 100.0, "ok", "big"),
            (0.2, 200.0, "error", "big"),
            (0.3, 300.0, "ok", "big"),
            (0.4, 400.0, "ok", "small"),
        ]
    )
    s = replay(frame, build_policy("single", {"model": "big"}), toy_catalog).baseline
    assert s.request_count == 4
    assert s.cost_usd == pytest.approx(1.0)
    assert s.cost_per_request_usd == pytest.approx(0.25)
    assert s.latency_p50_ms == 250.0
    assert s.latency_p95_ms == pytest.approx(385.0)  # linear: 300 + 0.85 * 100
    assert [s.latency_p50_ms, s.latency_p95_ms] == pytest.approx(np.percentile([100, 200, 300, 400], [50, 95]))
    assert s.error_rate == 0.25
    assert s.input_tokens == 20 and s.output_tokens == 400
    assert s.route_distribution == {"big:acme": 0.75, "small:acme": 0.25}


def _summary(**changes: Any) -> Summary:
    base = {
        "request_count": 1,
        "cost_usd": 2.0,
        "cost_per_request_usd": 2.0,
        "latency_p50_ms": 100.0,
        "latency_p95_ms": 200.0,
        "error_rate": 0.0,
        "input_tokens": 1,
        "output_tokens": 1,
        "route_distribution": {},
    }
    return Summary.model_validate(base | changes)


def test_deltas_by_hand_and_zero_baselines() -> None:
    notes: list[str] = []
    d = deltas(_summary(), _summary(cost_usd=1.5, latency_p50_ms=150.0, error_rate=0.0), notes)
    assert d.cost_delta_usd == -0.5
    assert d.cost_delta_pct == -25.0
    assert d.latency_p50_delta_pct == 50.0
    assert d.latency_p95_delta_pct == 0.0
    assert d.error_rate_delta_pct == 0.0  # 0 -> 0
    assert notes == []
    d = deltas(_summary(), _summary(error_rate=0.01), notes)
    assert d.error_rate_delta_pct is None
    assert notes == ["The baseline error rate is 0, so its relative change is undefined (reported as null)."]


row_strategy = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(1, 200_000),
        "output_tokens": st.integers(0, 8000),
        "cached_input_tokens": st.integers(0, 1),
        "latency_ms": st.floats(1, 120_000, allow_nan=False),
        "cost_usd": st.floats(0, 5, allow_nan=False),
        "status": st.sampled_from(["ok", "ok", "ok", "error"]),
        "error_type": st.sampled_from([None, "rate_limit", "timeout"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=300), st.sampled_from(["big", "small", "unpriced-model"]))
def test_replaying_a_single_model_baseline_against_itself_changes_nothing(
    toy_catalog: Catalog, rows: list[dict[str, Any]], model: str
) -> None:
    frame = log_frame({**r, "model": model} for r in rows)
    policies = [build_policy("custom_rules", {"rules": [{"if": "input_tokens < 0", "then": {"model": "small"}}]})]
    if model in toy_catalog.models:
        policies += [
            build_policy("single", {"model": model}),
            build_policy("fallback", {"attempts": [{"model": model}]}),
        ]
    for policy in policies:
        result = replay(frame, policy, toy_catalog)
        assert points(result.candidate) == points(result.baseline)
        assert points(result.deltas) == {
            "cost_delta_usd": 0.0,
            "cost_delta_pct": 0.0,
            "latency_p50_delta_pct": 0.0,
            "latency_p95_delta_pct": 0.0,
            "error_rate_delta_pct": 0.0,
        }
        # Nothing moved, so the paired deltas cannot vary either.
        for interval in intervals(result.deltas).values():
            assert interval is None or (interval["low"], interval["high"]) == pytest.approx((0.0, 0.0), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=100), st.integers(2, 50))
def test_candidate_cost_is_linear_in_tokens(toy_catalog: Catalog, rows: list[dict[str, Any]], k: int) -> None:
    policy = build_policy("single", {"model": "small"})
    frame = log_frame({**r, "model": "big"} for r in rows)
    scaled = frame.with_columns(pl.col("input_tokens", "output_tokens", "cached_input_tokens") * k)
    one = replay(frame, policy, toy_catalog).candidate.cost_usd
    many = replay(scaled, policy, toy_catalog).candidate.cost_usd
    assert many == pytest.approx(k * one, rel=1e-9, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.5, 10), min_size=2, max_size=4))
def test_ab_test_shares_match_weights(toy_catalog: Catalog, weights: list[float]) -> None:
    models = ["big", "small", "other", "big"][: len(weights)]
    config = {"variants": [{"weight": w, "config": {"model": m}} for w, m in zip(weights, models, strict=True)]}
    n = 20_000
    frame = log_frame({"model": "none", "request_id": f"id-{i}"} for i in range(n))
    result = replay(frame, build_policy("ab_test", config), toy_catalog)
    expected: dict[str, float] = {}
    for w, m in zip(weights, models, strict=True):
        expected[m] = expected.get(m, 0) + w / sum(weights)
    got = result.rows.get_column("route_model").value_counts(normalize=True)
    for model, share in got.iter_rows():
        assert share == pytest.approx(expected[model], abs=0.015)


def test_moved_rows_use_observed_error_rate_and_fit(toy_catalog: Catalog) -> None:
    rng = np.random.default_rng(0)
    observed = [
        {
            "model": "small",
            "output_tokens": int(o),
            "latency_ms": 100.0 + 3 * o + float(e),
            "status": "error" if i % 10 == 0 else "ok",
            "error_type": "server_error" if i % 10 == 0 else None,
        }
        for i, (o, e) in enumerate(zip(rng.integers(10, 500, 2000), rng.normal(0, 5, 2000), strict=True))
    ]
    moved = [{"model": "big", "request_id": f"m{i}", "output_tokens": 200} for i in range(4000)]
    result = replay(log_frame(observed + moved), build_policy("single", {"model": "small"}), toy_catalog)
    rows = result.rows.filter(pl.col("request_id").str.starts_with("m"))
    assert rows.get_column("candidate_error").mean() == pytest.approx(0.1, abs=0.015)
    # Fit 100 + 3 * 200 = 700 ms, with resampled residuals (sd 5 ms).
    assert rows.get_column("candidate_latency_ms").mean() == pytest.approx(700, abs=2)
    assert any("fit on its 1,800 successful rows" in n for n in result.notes)


def test_notes_say_when_the_catalog_profile_and_zero_error_rate_are_used(toy_catalog: Catalog) -> None:
    result = replay(log_frame([{"model": "big"}]), build_policy("single", {"model": "small"}), toy_catalog)
    assert any("Latency of small comes from the catalog profile" in n for n in result.notes)
    assert any("Error rate of small is taken as 0" in n for n in result.notes)


def test_replay_is_repeatable_bit_for_bit(log_store, shipped_catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from engine.logs import Window, load_window

    window = Window("demo", dt.datetime(2026, 4, 12, tzinfo=dt.UTC), dt.datetime(2026, 4, 20, tzinfo=dt.UTC))
    frame = load_window(str(log_store), window)
    policy = build_policy("cost_optimized", {"allowed_models": ["gpt-4o-mini", "claude-3-5-haiku", "gpt-4.1-mini"]})
    first = replay(frame, policy, shipped_catalog)
    for _ in range(3):
        again = replay(load_window(str(log_store), window), policy, shipped_catalog)
        assert (again.baseline, again.candidate, again.deltas) == (first.baseline, first.candidate, first.deltas)


def _days_around_o3_price_cut() -> pl.DataFrame:
    """Rows on gpt-4o from 2025-06-08 to 2025-06-12 (o3's list price fell on 2025-06-10)."""
    import datetime as dt

    start = dt.datetime(2025, 6, 8, 9, tzinfo=dt.UTC)
    return log_frame(
        {
            "model": "gpt-4o",
            "provider": "openai",
            "timestamp": start + dt.timedelta(hours=11 * i),
            "input_tokens": 1000 + 37 * i,
            "cached_input_tokens": 100 * (i % 3),
            "output_tokens": 200 + 11 * i,
        }
        for i in range(10)
    )


def test_asof_row_prices_each_row_at_its_own_date_like_genai_prices(shipped_catalog: Catalog) -> None:
    import datetime as dt

    from genai_prices import Usage, calc_price

    frame = _days_around_o3_price_cut()
    result = replay(frame, build_policy("single", {"model": "o3"}), shipped_catalog, as_of="row")
    rows = result.rows.sort("request_id")
    for row in rows.iter_rows(named=True):
        usage = Usage(
            input_tokens=row["input_tokens"],
            cache_read_tokens=row["cached_input_tokens"],
            output_tokens=row["output_tokens"],
        )
        want = calc_price(usage, "o3", genai_request_timestamp=row["timestamp"]).total_price
        assert row["candidate_cost_usd"] == pytest.approx(float(want), rel=1e-12)
    days = rows.get_column("timestamp").dt.date()
    per_token = rows.get_column("candidate_cost_usd") / rows.get_column("output_tokens")
    assert per_token.filter(days < dt.date(2025, 6, 10)).min() > per_token.filter(days >= dt.date(2025, 6, 10)).max()
    assert any("changes inside the window (on 2025-06-10)" in n for n in result.notes)
    # One date for every row: all at the old price, the same as pricing each row on that day.
    fixed = replay(frame, build_policy("single", {"model": "o3"}), shipped_catalog, as_of=dt.date(2025, 6, 1))
    old = shipped_catalog.price("o3", on=dt.date(2025, 6, 1))
    assert fixed.candidate.cost_usd == pytest.approx(frame.select(cost_at(old)).to_series().sum(), rel=1e-12)
    assert fixed.candidate.cost_usd > result.candidate.cost_usd


def test_a_baseline_row_without_a_logged_cost_is_priced_at_its_date_and_noted(shipped_catalog: Catalog) -> None:
    frame = _days_around_o3_price_cut().with_columns(
        cost_usd=pl.when(pl.col("request_id").is_in(["r0", "r1"]))
        .then(None)
        .when(pl.col("request_id") == "r2")
        .then(0.0)
        .otherwise(pl.col("cost_usd"))
    )
    frame = pl.concat([frame, log_frame([{"model": "acme-llm-7", "cost_usd": 0.0, "request_id": "x"}])])
    result = replay(frame, build_policy("single", {"model": "gpt-4o"}), shipped_catalog)
    rows = result.rows.sort("request_id")
    priced = rows.filter(pl.col("baseline_cost_estimated"))
    assert priced.get_column("request_id").to_list() == ["r0", "r1", "r2"]
    listed = frame.filter(pl.col("request_id").is_in(["r0", "r1", "r2"])).select(
        cost_at(shipped_catalog.price("gpt-4o"))
    )
    assert priced.get_column("cost_usd").to_list() == listed.to_series().to_list()
    usd = listed.to_series().sum()
    notes = " ".join(result.notes)
    want = "3 successful baseline rows without a logged cost (missing or 0) priced from the catalog at their own date"
    assert f"{want}: ${usd:,.4f} in all." in notes
    assert "1 successful baseline row without a logged cost on a model the catalog cannot price (acme-llm-7)" in notes
    assert result.baseline.cost_usd == pytest.approx(0.012 * 7 + usd)
