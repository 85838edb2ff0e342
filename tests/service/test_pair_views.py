"""What the faces show of a pair whose candidate call failed: the provider's status and message."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from engine.schema import PairDetail
from service.cli._render import pairs_view
from service.mcp_server import PageOf, pair_summary

MISSING = "The model `gpt-9` does not exist or you do not have access to it."


def failed_row(**changes: Any) -> dict[str, Any]:
    return {
        "request_id": "req_1",
        "baseline_model": "gpt-4o",
        "candidate_model": "gpt-9",
        "baseline_cost_usd": 0.001,
        "candidate_cost_usd": 0.0,
        "baseline_latency_ms": 900.0,
        "candidate_latency_ms": 12.0,
        "candidate_status": "error",
        "error_type": "invalid_request",
        "candidate_status_code": 404,
        "candidate_error_message": MISSING,
        "candidate_reported_cost_usd": None,
        "similarity": None,
    } | changes


def test_the_mcp_line_of_a_failed_pair_says_why() -> None:
    line = pair_summary(PairDetail.model_validate(failed_row()))
    assert f"candidate error (invalid_request, 404: {MISSING})" in line
    assert PageOf[PairDetail](data=[PairDetail.model_validate(failed_row())]).data[0].candidate_status_code == 404


def test_the_cli_shows_a_failed_pairs_status_and_message() -> None:
    console = Console(file=io.StringIO(), width=200)
    interrupted = failed_row(
        request_id="req_2", candidate_latency_ms=None, candidate_status_code=None, error_type="interrupted"
    )
    console.print(pairs_view([failed_row(), interrupted, failed_row(request_id="req_3", candidate_status="ok")]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "(error: invalid_request, HTTP 404)" in text and f"provider said: {MISSING}" in text
    assert "latency 900 → – ms" in text  # an interrupted call has no latency
    assert text.count("provider said") == 2  # not on the answered pair
