"""Each policy against hand-computed expectations on tiny frames (toy catalog, round prices)."""

from typing import Any

import pytest

from engine.errors import ConfigError
from engine.pricing import Catalog
from engine.replay import replay
from engine.routing import build_policy
from tests.conftest import log_frame

# Toy prices per token: big 10/20 (cached 5), small 1/2 (cached 0.5), other 2/1 — per million.


def run(catalog: Catalog, policy: str, config: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = replay(log_frame(rows), build_policy(policy, config), catalog)
    return result.rows.select(
        "request_id", "route_model", "candidate_cost_usd", "candidate_latency_ms", "candidate_error"
    ).to_dicts()


def test_single_keeps_actuals_and_reprices_moved_rows(toy_catalog: Catalog) -> None:
    rows = run(
        toy_catalog,
        "single",
        {"model": "small"},
        [
            {"model": "big", "cost_usd": 0.012, "latency_ms": 2400.0},
            {"model": "small", "provider": "acme", "cost_usd": 0.005, "latency_ms": 700.0},
        ],
    )
    assert rows[0]["route_model"] == "small"
    assert rows[0]["candidate_cost_usd"] == pytest.approx((1000 * 1 + 100 * 2) / 1e6)
    assert rows[0]["candidate_latency_ms"] == pytest.approx(100 + 100 / 100 * 1000)  # catalog profile
    assert rows[1]["candidate_cost_usd"] == 0.005  # actual, untouched
    assert rows[1]["candidate_latency_ms"] == 700.0


def test_cached_tokens_are_billed_at_the_cached_rate(toy_catalog: Catalog) -> None:
    rows = run(toy_catalog, "single", {"model": "small"}, [{"model": "big", "cached_input_tokens": 600}])
    assert rows[0]["candidate_cost_usd"] == pytest.approx((400 * 1 + 600 * 0.5 + 100 * 2) / 1e6)


def test_ab_test_splits_by_weight(toy_catalog: Catalog) -> None:
    config = {"variants": [{"weight": 1, "config": {"model": "big"}}, {"weight": 3, "config": {"model": "small"}}]}
    rows = run(toy_catalog, "ab_test", config, [{} for _ in range(8000)])
    share = sum(r["route_model"] == "small" for r in rows) / len(rows)
    assert share == pytest.approx(0.75, abs=0.02)
    again = run(toy_catalog, "ab_test", config, [{} for _ in range(8000)])
    assert [r["route_model"] for r in rows] == [r["route_model"] for r in again]  # deterministic


def test_fallback_pays_failed_attempts(toy_catalog: Catalog) -> None:
    config = {"attempts": [{"model": "big", "timeout_ms": 800}, {"model": "small"}]}
    rows = run(
        toy_catalog,
        "fallback",
        config,
        [
            {"model": "big", "latency_ms": 500.0, "cost_usd": 0.012},  # served by big, actual
            {"model": "big", "status": "error", "error_type": "rate_limit", "latency_ms": 40.0, "output_tokens": 0},
            {"model": "big", "latency_ms": 900.0},  # would pass the timeout
            {"model": "other", "provider": "zeta"},  # big's profile: 500 + 100/50 s = 2500 ms > 800
            {"model": "big", "status": "error", "error_type": "invalid_request", "latency_ms": 60.0, "cost_usd": 0.0},
        ],
    )
    big_input = 1000 * 10 / 1e6
    assert rows[0] == {
        "request_id": "r0",
        "route_model": "big",
        "candidate_cost_usd": 0.012,
        "candidate_latency_ms": 500.0,
        "candidate_error": False,
    }
    assert rows[1]["route_model"] == "small"
    assert rows[1]["candidate_cost_usd"] == pytest.approx(big_input + 0 * 2 / 1e6 + 1000 / 1e6)
    assert rows[1]["candidate_latency_ms"] == pytest.approx(100 + 0 + 500)  # small profile + big's ttft
    assert rows[2]["route_model"] == "small"
    assert rows[2]["candidate_latency_ms"] == pytest.approx(1100 + 800)  # timeout spent first
    assert rows[3]["route_model"] == "small"
    assert rows[3]["candidate_cost_usd"] == pytest.approx(big_input + 0.0012)
    # A non-retried error stays on the first attempt and counts as an error.
    assert rows[4]["route_model"] == "big" and rows[4]["candidate_error"] is True
    assert rows[4]["candidate_cost_usd"] == 0.0


def test_cost_optimized_picks_cheapest_per_row(toy_catalog: Catalog) -> None:
    frame = [{"input_tokens": 1000, "output_tokens": 100}, {"input_tokens": 100, "output_tokens": 10_000}]
    rows = run(toy_catalog, "cost_optimized", {"allowed_models": ["big", "small", "other"]}, frame)
    # small: 0.0012 vs other 0.0021; then small 0.0201 vs other 0.0102.
    assert [r["route_model"] for r in rows] == ["small", "other"]
    tiered = run(toy_catalog, "cost_optimized", {"allowed_models": ["big", "small", "other"], "quality_tier": 2}, frame)
    assert [r["route_model"] for r in tiered] == ["other", "other"]


def test_cost_optimized_tier_with_no_model_left(toy_catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="quality_tier"):
        run(toy_catalog, "cost_optimized", {"allowed_models": ["small"], "quality_tier": 1}, [{}])


def test_latency_optimized_uses_the_window_fit_when_it_has_enough_rows(toy_catalog: Catalog) -> None:
    # Catalog: big 500 + 20 ms/token, other 200 + 5 ms/token -> other wins.
    assert (
        run(toy_catalog, "latency_optimized", {"allowed_models": ["big", "other"]}, [{"model": "small"}])[0][
            "route_model"
        ]
        == "other"
    )
    # 300 ok rows of big with latency = 50 + 2 * output_tokens: big's fit now wins.
    observed = [{"model": "big", "output_tokens": n, "latency_ms": 50.0 + 2 * n} for n in range(1, 301)]
    rows = run(toy_catalog, "latency_optimized", {"allowed_models": ["big", "other"]}, [{"model": "small"}, *observed])
    assert rows[0]["route_model"] == "big"
    assert rows[0]["candidate_latency_ms"] == pytest.approx(50 + 2 * 100)  # exact fit: residuals are 0


def test_cascade_escalated_rows_pay_both_steps(toy_catalog: Catalog) -> None:
    config = {"steps": [{"model": "small", "escalate_if": "input_tokens > 2000"}, {"model": "big"}]}
    rows = run(
        toy_catalog,
        "cascade",
        config,
        [
            {"model": "other", "provider": "zeta"},
            {"model": "other", "provider": "zeta", "input_tokens": 5000},
        ],
    )
    assert rows[0]["route_model"] == "small"
    assert rows[1]["route_model"] == "big"
    small_cost = (5000 * 1 + 100 * 2) / 1e6
    big_cost = (5000 * 10 + 100 * 20) / 1e6
    assert rows[1]["candidate_cost_usd"] == pytest.approx(small_cost + big_cost)
    assert rows[1]["candidate_latency_ms"] == pytest.approx(1100 + 2500)


def test_cascade_needs_conditions_on_all_but_the_last_step(toy_catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="escalate_if"):
        build_policy("cascade", {"steps": [{"model": "small"}, {"model": "big"}]})


def test_custom_rules_first_match_wins_and_unmatched_rows_stay(toy_catalog: Catalog) -> None:
    config = {
        "rules": [
            {"if": 'tags contains "tier:free"', "then": {"model": "small"}},
            {"if": "input_tokens > 5000", "then": {"policy": "single", "config": {"model": "other"}}},
        ]
    }
    rows = run(
        toy_catalog,
        "custom_rules",
        config,
        [
            {"tags": ["tier:free"], "input_tokens": 9000},
            {"tags": ["tier:pro"], "input_tokens": 9000},
            {"tags": None, "cost_usd": 0.5},
        ],
    )
    assert [r["route_model"] for r in rows] == ["small", "other", "big"]
    assert rows[2]["candidate_cost_usd"] == 0.5


def test_custom_rules_else(toy_catalog: Catalog) -> None:
    config = {"rules": [{"if": 'end_user_id startswith "vip"', "then": {"model": "big"}}, {"else": {"model": "small"}}]}
    rows = run(
        toy_catalog, "custom_rules", config, [{"end_user_id": "vip_1"}, {"end_user_id": "u2"}, {"end_user_id": None}]
    )
    assert [r["route_model"] for r in rows] == ["big", "small", "small"]


@pytest.mark.parametrize(
    ("policy", "config", "field"),
    [
        ("single", {"model": "x", "tempreature": 1}, "candidateConfig.tempreature"),
        ("single", {}, "candidateConfig.model"),
        ("ab_test", {"variants": [{"weight": 0, "config": {"model": "big"}}]}, "candidateConfig.variants.0.weight"),
        (
            "custom_rules",
            {"rules": [{"else": {"model": "big"}}, {"if": "hour > 1", "then": {"model": "big"}}]},
            "candidateConfig.rules",
        ),
    ],
)
def test_invalid_configs_name_the_field(policy: str, config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_policy(policy, config)
    assert info.value.param == field


def test_ensemble_is_refused_as_a_candidate() -> None:
    with pytest.raises(ConfigError, match="ensemble policies cannot be used as experiment candidates") as info:
        build_policy("ensemble", {"models": ["big", "small"]})
    assert info.value.param == "candidatePolicy"


def test_unknown_policy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown routing policy 'round_robin'.*cost_optimized"):
        build_policy("round_robin", {})


def test_nested_saved_config_needs_a_resolver() -> None:
    policy = build_policy("ab_test", {"variants": [{"weight": 1, "config": "@prod"}]})
    with pytest.raises(ConfigError, match="cannot be resolved"):
        policy.models()
    resolved = build_policy(
        "ab_test", {"variants": [{"weight": 1, "config": "@prod"}]}, resolve=lambda ref: ("single", {"model": "small"})
    )
    assert resolved.models() == {"small"}
