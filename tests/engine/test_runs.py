"""The stop rules every paid run shares: the refusal probe, and which stops end a run failed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.fanout import FanoutReport
from engine.providers import ChatResult
from engine.runs import REFUSAL_PROBE, RefusalWatch, RunWatch, estimate_error, final_status, refusal_of

MISSING = "The model `gpt-9` does not exist or you do not have access to it."


def failed(status_code: int | None, message: str = MISSING, error_type: str = "invalid_request") -> ChatResult:
    return ChatResult("p", "error", error_type=error_type, error_message=message, status_code=status_code)


def answered() -> ChatResult:
    return ChatResult("p", "ok", text="hi", status_code=200)


def test_only_a_non_retryable_4xx_is_a_refusal() -> None:
    assert refusal_of(failed(404)) == (404, MISSING)
    assert refusal_of(failed(401, "Incorrect API key provided: [redacted].")) == (
        401,
        "Incorrect API key provided: [redacted].",
    )
    assert refusal_of(failed(429, "slow down", "rate_limit")) is None
    assert refusal_of(failed(500, "oops", "server_error")) is None
    assert refusal_of(failed(None, "connection refused", "connection_error")) is None
    assert refusal_of(answered()) is None
    assert refusal_of(None) is None


def test_the_first_twenty_calls_refused_alike_stop_the_run() -> None:
    watch = RefusalWatch(REFUSAL_PROBE)
    assert watch([failed(404)] * 16) is None  # not yet twenty
    assert watch([failed(404)] * 16) == f"404 {MISSING}"
    assert watch([failed(404)] * 16) is None  # decided once


@pytest.mark.parametrize(
    "first",
    [
        [failed(404)] * 19 + [answered()],
        [failed(404)] * 10 + [failed(400, "Unsupported parameter: 'seed'.")] * 10,
        [failed(404)] * 10 + [failed(401, MISSING)] * 10,
        [failed(429, "slow down", "rate_limit")] * 20,
        [failed(503, "overloaded", "server_error")] * 20,
        [failed(None, "timed out", "timeout")] * 20,
    ],
    ids=["one-answered", "two-messages", "two-statuses", "rate-limited", "unavailable", "timeouts"],
)
def test_a_mix_or_retryable_errors_let_the_run_go_on(first: list[ChatResult]) -> None:
    watch = RefusalWatch(REFUSAL_PROBE)
    assert watch(first) is None
    assert watch([failed(404)] * 40) is None  # the probe is over


def test_a_small_run_is_judged_on_all_its_calls() -> None:
    assert RefusalWatch(3)([failed(403, "Permission denied.")] * 3) == "403 Permission denied."


def _watch(**fields: Any) -> RunWatch:
    return RunWatch(lambda: "running", 1.0, 100, 60.0, **fields)


@pytest.mark.parametrize(
    ("stop", "status"),
    [("refused", "failed"), ("timeout", "failed"), ("auto_cancel", "cancelled"), ("cancel", "cancelled")],
)
def test_a_refused_run_fails_like_a_timed_out_one(stop: str, status: str) -> None:
    watch = _watch()
    watch.stop(stop, "why")
    report = FanoutReport(stop, False, 0.0, 32, 968)
    assert final_status(report, watch, "cap", cancelled_meanwhile=False) == (status, "why")


def test_estimate_error_is_actual_over_estimate_overall_and_per_call() -> None:
    costs = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.0])
    estimates = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last was estimated at nothing: left out
    error = estimate_error(1.5, 3.0, costs, estimates)
    assert error.overall == pytest.approx(0.5)
    assert error.per_call_p50 == pytest.approx(0.3)
    assert error.per_call_p90 == pytest.approx(0.46)
    assert error.calls == 5


def test_estimate_error_without_an_estimate_or_answered_calls_is_null() -> None:
    error = estimate_error(0.2, 0.0, np.array([]), np.array([]))
    assert error.overall is None and error.per_call_p50 is None and error.per_call_p90 is None and error.calls == 0
