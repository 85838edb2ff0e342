import datetime as dt
import json

import polars as pl

from engine.pricing import Catalog
from engine.synth import TOPICS, answer, generate, prompt_index


def _words(text: str) -> set[str]:
    return {w.strip(".,:;?!'\"()").lower() for w in text.split() if len(w) > 3}


def test_generation_is_deterministic_and_realistic(shipped_catalog: Catalog) -> None:
    a = generate(shipped_catalog, project_id="p", days=2, rows_per_day=4000, seed=3, end=dt.date(2026, 4, 1))
    b = generate(shipped_catalog, project_id="p", days=2, rows_per_day=4000, seed=3, end=dt.date(2026, 4, 1))
    assert a.equals(b)
    assert a.height == 8000
    assert a["request_id"].n_unique() == a.height
    assert a["model"].n_unique() >= 5 and a["provider"].n_unique() >= 2
    assert a["timestamp"].min() >= dt.datetime(2026, 3, 30, tzinfo=dt.UTC)
    assert a["timestamp"].max() < dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    errors = a.filter(pl.col("status") == "error")
    assert 0.005 < errors.height / a.height < 0.05
    assert set(errors["error_type"]) >= {"rate_limit", "server_error", "timeout"}
    ok = a.filter(pl.col("status") == "ok")
    # Heavy tails: the p99 of input tokens is far above the median.
    assert ok["input_tokens"].quantile(0.99) > 8 * ok["input_tokens"].median()
    # Latency grows with output tokens.
    assert ok.select(pl.corr("output_tokens", "latency_ms")).item() > 0.5
    # Diurnal: the busiest hour has well over twice the traffic of the quietest.
    per_hour = a.group_by(pl.col("timestamp").dt.hour()).len()["len"]
    assert per_hour.max() > 2 * per_hour.min()
    # Costs follow the catalog's prices.
    row = ok.filter(pl.col("model") == "gpt-4o").row(0, named=True)
    price = shipped_catalog.models["gpt-4o"]
    expected = (
        (row["input_tokens"] - row["cached_input_tokens"]) * price.input_per_mtok
        + row["cached_input_tokens"] * price.cached_rate
        + row["output_tokens"] * price.output_per_mtok
    ) / 1e6
    assert abs(row["cost_usd"] - expected) < 1e-12
    assert json.loads(row["request_json"])["model"] == "gpt-4o"


def test_metadata_only_has_no_text(shipped_catalog: Catalog) -> None:
    frame = generate(
        shipped_catalog, project_id="p", days=1, rows_per_day=100, metadata_only=True, end=dt.date(2026, 4, 1)
    )
    assert frame["request_json"].null_count() == frame["response_text"].null_count() == 100


def test_answers_to_one_prompt_are_related_and_other_topics_are_not() -> None:
    prompts = list(prompt_index().values())
    key = prompts[0]
    same = [_words(answer(key, 6, variant=v)) for v in range(2)]
    other_key = next(p for p in prompts if p.topic != key.topic)
    other = _words(answer(other_key, 6))
    overlap_same = len(same[0] & same[1]) / len(same[0] | same[1])
    overlap_other = len(same[0] & other) / len(same[0] | other)
    assert overlap_same > 2 * overlap_other
    assert TOPICS[key.topic].subjects[key.subject] in answer(key, 6)


def test_prompt_index_finds_every_generated_prompt(shipped_catalog: Catalog) -> None:
    frame = generate(shipped_catalog, project_id="p", days=1, rows_per_day=200, end=dt.date(2026, 4, 1))
    index = prompt_index()
    for body in frame["request_json"].to_list()[:50]:
        assert json.loads(body)["messages"][-1]["content"] in index
