"""Routing-only experiments end to end: the prices they record and the candidates they refuse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from engine.errors import ConfigError
from engine.experiment import check_routing_only, replay_into, run_routing_only, spec_of
from engine.pricing import Catalog, today
from engine.schema import ExperimentCreate, ExperimentPricing, parse_body
from engine.store import Store

BODY = {
    "projectId": "demo",
    "candidatePolicy": "single",
    "candidateConfig": {"model": "claude-haiku-4-5"},
    "windowStart": "2026-04-17T00:00:00Z",
    "windowEnd": "2026-04-19T00:00:00Z",
}


def _spec(**changes: Any) -> ExperimentCreate:
    spec: ExperimentCreate = parse_body(ExperimentCreate, BODY | changes)
    return spec


@pytest.mark.parametrize(
    ("as_of", "price_date"),
    [(None, "today"), ("now", "today"), ("2026-04-15", dt.date(2026, 4, 15)), ("row", None)],
)
def test_an_experiment_records_the_prices_it_used(
    tmp_path: Path, log_store: Path, shipped_catalog: Catalog, as_of: str | None, price_date: Any
) -> None:
    spec = _spec(**({} if as_of is None else {"pricing": {"asOf": as_of}}))
    store = Store(tmp_path / "db.sqlite")
    experiment = run_routing_only(spec, store=store, catalog=shipped_catalog, logs_root=str(log_store))
    assert experiment.pricing == ExperimentPricing(
        source="genai-prices",
        version=genai_prices.__version__,
        overrides=None,
        as_of=as_of or "now",
        price_date=today() if price_date == "today" else price_date,
    )
    stored = store.get_experiment(experiment.id)
    assert stored.pricing == experiment.pricing
    assert spec_of(stored).pricing.as_of == (as_of or "now")
    again = replay_into(stored, store=store, catalog=shipped_catalog, logs_root=str(log_store))
    assert (again.baseline_summary, again.candidate_summary, again.pricing) == (
        experiment.baseline_summary,
        experiment.candidate_summary,
        experiment.pricing,
    )


def test_an_unpriced_candidate_is_refused_naming_it_and_how_to_add_it(
    tmp_path: Path, log_store: Path, shipped_catalog: Catalog
) -> None:
    spec = _spec(candidateConfig={"model": "acme-llm-7"})
    with pytest.raises(ConfigError) as info:
        check_routing_only(spec, store=Store(tmp_path / "db.sqlite"), catalog=shipped_catalog, logs_root=str(log_store))
    assert info.value.param == "candidateConfig"
    assert "unknown model 'acme-llm-7'" in info.value.message
    assert "models: {acme-llm-7: {provider: openai, input_per_mtok: 0.5, output_per_mtok: 1.5}}" in info.value.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pricing": {"asOf": "yesterday"}}, 'pricing.asOf: must be "now", "row" or a date YYYY-MM-DD'),
        ({"pricing": {"asOf": "2026-02-30"}}, "pricing.asOf"),
        ({"pricing": {"asOf": "row", "extra": 1}}, "pricing.extra"),
        (
            {"pricing": {"asOf": "row"}, "mode": "with_responses", "spendCapUsd": 1},
            "a with-responses run pays today's prices",
        ),
    ],
)
def test_bad_pricing_specs_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="pricing") as info:
        _spec(**changes)
    assert message in info.value.message
