"""With-responses planning: preflight formulas, create-time rules and sampling (no calls made)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from engine import responses
from engine.errors import ConfigError
from engine.logs import write_partitioned
from engine.pricing import Catalog
from engine.schema import ExperimentCreate, Project
from engine.settings import Settings
from engine.store import Store, utcnow
from tests.conftest import log_frame

T0 = dt.datetime(2026, 4, 10, tzinfo=dt.UTC)
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100})


def _spec(**changes: Any) -> ExperimentCreate:
    body = {
        "name": "gpt-4o-mini quality check",
        "projectId": "proj_abc",
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "windowStart": "2026-04-10T00:00:00Z",
        "windowEnd": "2026-04-17T00:00:00Z",
        "mode": "with_responses",
        "sample": {"size": 1000, "method": "random"},
        "spendCapUsd": 0.05,
    }
    return ExperimentCreate.model_validate(body | changes)


def _project(**changes: Any) -> Project:
    return Project.model_validate({"id": "proj_abc", "created_at": utcnow()} | changes)


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """81 replayable rows (the guide's worked example) plus rows that are not replayable."""
    rows = [
        {
            "model": "gpt-4o",
            "provider": "openai",
            "request_id": f"ok{i}",
            "timestamp": T0 + dt.timedelta(hours=i),
            "input_tokens": 20 + i,
            "output_tokens": 5 + (i % 3),
            "request_json": BODY,
            "response_text": "Hello there!",
        }
        for i in range(81)
    ]
    rows += [
        {"request_id": "err", "timestamp": T0, "status": "error", "request_json": BODY, "response_text": None},
        {"request_id": "meta", "timestamp": T0, "request_json": None, "response_text": None},
    ]
    write_partitioned(log_frame(rows), tmp_path, "proj_abc")
    return tmp_path


def test_preflight_matches_the_guides_worked_example(
    small_store: Path, shipped_catalog: Catalog, tmp_path: Path
) -> None:
    result = responses.preflight(
        _spec(), _project(), store=Store(tmp_path / "r.db"), catalog=shipped_catalog, logs_root=str(small_store)
    )
    e = result.estimate
    assert (e.row_count_in_window, e.effective_sample_size) == (81, 81)
    mini = shipped_catalog.models["gpt-4o-mini"]
    mean_in = sum(20 + i for i in range(81)) / 81
    mean_out = sum(5 + (i % 3) for i in range(81)) / 81
    assert e.per_call_estimate_usd == pytest.approx(
        (mean_in * mini.input_per_mtok + mean_out * mini.output_per_mtok) / 1e6
    )
    assert e.embedding_cost_usd == 0.0  # local embedder
    assert e.estimated_cost_usd == pytest.approx(e.per_call_estimate_usd * 81)
    assert result.spend_cap_usd == 50
    assert result.suggested_spend_cap_usd == 0.05  # max(2 x estimate, $0.05), clamped to the cap
    assert result.requires_confirmation is False
    assert result.auto_cancel_ratio == 1.5
    assert e.notes == ["The window has 81 replayable rows, so the run makes 81 pairs, not 1,000."]
    dumped = result.model_dump(mode="json")
    assert set(dumped) == {"estimate", "spendCapUsd", "suggestedSpendCapUsd", "requiresConfirmation", "autoCancelRatio"}
    assert set(dumped["estimate"]) == {
        "estimatedCostUsd",
        "effectiveSampleSize",
        "rowCountInWindow",
        "perCallEstimateUsd",
        "embeddingCostUsd",
        "notes",
    }


def test_preflight_prices_a_paid_embedder_and_flags_big_runs(
    small_store: Path, shipped_catalog: Catalog, tmp_path: Path
) -> None:
    spec = _spec(embeddingModel="openai:text-embedding-3-small")
    result = responses.preflight(
        spec,
        _project(experiment_spend_cap_usd=0.0001),
        store=Store(tmp_path / "r.db"),
        catalog=shipped_catalog,
        logs_root=str(small_store),
    )
    chars = len("Hello there!")
    assert result.estimate.embedding_cost_usd == pytest.approx(0.02 * (2 * chars / 4) * 81 / 1e6)
    assert result.requires_confirmation is True
    assert result.suggested_spend_cap_usd == 0.0001  # clamped to the project cap


@pytest.mark.parametrize(
    ("spec", "project", "field", "message"),
    [
        (_spec(), _project(logging_mode="metadata_only"), "mode", "logs metadata only"),
        (_spec(spendCapUsd=None), _project(), "spendCapUsd", "spendCapUsd is required"),
        (_spec(spendCapUsd=60), _project(), "spendCapUsd", "above the project's experiment_spend_cap_usd 50"),
        (_spec(sample={"size": 10}), _project(), "sample.size", "between 1,000 and 50,000"),
        (_spec(sample={"size": 60_000}), _project(), "sample.size", "between 1,000 and 50,000"),
    ],
)
def test_create_time_rules(spec: ExperimentCreate, project: Project, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        responses.validate(spec, project, Settings())
    assert info.value.param == field


def _rows(counts: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": [f"{m}-{i}" for m, n in counts.items() for i in range(n)],
            "model": [m for m, n in counts.items() for _ in range(n)],
        }
    )


def test_random_sample_is_seeded_and_independent_of_row_order() -> None:
    rows = _rows({"a": 500, "b": 500})
    first = responses.draw_sample(rows, 100, "random", seed=1)
    shuffled = responses.draw_sample(rows.sample(fraction=1.0, shuffle=True, seed=9), 100, "random", seed=1)
    assert first.get_column("request_id").to_list() == shuffled.get_column("request_id").to_list()
    other = responses.draw_sample(rows, 100, "random", seed=2)
    assert set(first["request_id"]) != set(other["request_id"])


def test_stratified_sample_is_proportional_by_baseline_model() -> None:
    rows = _rows({"a": 700, "b": 200, "c": 100})
    sample = responses.draw_sample(rows, 101, "stratified", seed=0)
    counts = dict(sample.group_by("model").len().iter_rows())
    assert counts == {"a": 71, "b": 20, "c": 10}  # 70.7, 20.2, 10.1: the largest remainder gets the extra pair
    assert sample.height == 101


def test_usage_far_off_the_logs_on_most_pairs_makes_a_note() -> None:
    logged = np.array([1000, 1000, 1000, 1000, 0])
    # Three of four pairs report under half the logged prompt (the last, logged at 0, is left out).
    note = responses.usage_mismatch_note(np.array([10, 20, 400, 900, 50]), logged)
    assert note is not None and note.startswith(responses.USAGE_NOTE_PREFIX)
    assert "on 3 of 4 answered pairs" in note and "median ratio 0.21" in note and "cost delta rest" in note
    # Too verbose a tokenizer counts too: 2.5x on three of four.
    assert responses.usage_mismatch_note(np.array([2500, 2500, 2500, 1000]), logged[:4]) is not None


@pytest.mark.parametrize(
    "candidate",
    [
        [1000, 1900, 600, 1100],  # all within 2x either way
        [10, 20, 1000, 1000],  # exactly half off: not most
    ],
)
def test_usage_close_to_the_logs_or_off_on_few_pairs_makes_none(candidate: list[int]) -> None:
    assert responses.usage_mismatch_note(np.array(candidate), np.array([1000] * 4)) is None
    assert responses.usage_mismatch_note(np.array([], dtype=int), np.array([], dtype=int)) is None
