"""The ``openai-jsonl`` format, and what ``run_import`` does for every format (through it)."""

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.importers import detect, run_import
from engine.importers._base import error_type, tags, timestamp
from engine.logs import inspect_store, partition_files
from engine.pricing import Catalog

RECORD = {
    "id": "chatcmpl-1",
    "timestamp": "2026-04-01T10:00:00Z",
    "latency_ms": 812.5,
    "end_user_id": "u_42",
    "tags": ["feature:chat"],
    "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2},
    "response": {
        "model": "gpt-4o",
        "choices": [{"message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400}},
    },
}


def write(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def rows_of(root: Path) -> pl.DataFrame:
    return pl.read_parquet(partition_files(str(root), "p")).sort("request_id")


def test_import_writes_the_store_layout(tmp_path: Path, shipped_catalog: Catalog) -> None:
    failed = {
        "id": "x2",
        "timestamp": 1775052000,
        "request": RECORD["request"],
        "error": {"type": "rate_limit_exceeded", "status_code": 429},
    }
    src = write(tmp_path / "in.jsonl", RECORD, "", failed)
    report = run_import([src], tmp_path / "logs", "p", shipped_catalog)
    assert (report.format, report.records_read, report.rows_written, report.refused) == ("openai-jsonl", 2, 2, 0)
    frame = rows_of(tmp_path / "logs")
    ok = frame.filter(pl.col("request_id") == "chatcmpl-1").to_dicts()[0]
    assert ok["cached_input_tokens"] == 400
    # No logged cost: priced from the catalog, and the report says so.
    assert ok["cost_usd"] == pytest.approx((600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6)
    assert (report.cost_missing, report.priced_rows) == (1, 1)
    assert report.priced_usd == pytest.approx(ok["cost_usd"])
    assert ok["response_text"] == "Hello!"
    assert json.loads(ok["request_json"])["temperature"] == 0.2
    bad = frame.filter(pl.col("request_id") == "x2").to_dicts()[0]
    assert (bad["status"], bad["error_type"], bad["response_text"], bad["cost_usd"]) == ("error", "rate_limit", None, 0)
    assert report.latency_missing == 1 and bad["latency_ms"] == 0
    assert report.rows_per_model == {"gpt-4o": 2}
    assert inspect_store(str(tmp_path / "logs"))[1] == []


def test_importing_twice_adds_nothing_and_same_named_files_do_not_collide(
    tmp_path: Path, shipped_catalog: Catalog
) -> None:
    root = tmp_path / "logs"
    (tmp_path / "a").mkdir()
    src = write(tmp_path / "a" / "logs.jsonl", RECORD)
    run_import([src], root, "p", shipped_catalog)
    again = run_import([src], root, "p", shipped_catalog)
    assert (again.rows_written, again.duplicates_skipped) == (0, 1)
    (tmp_path / "b").mkdir()
    other = write(tmp_path / "b" / "logs.jsonl", dict(RECORD, id="chatcmpl-2"))
    run_import([other], root, "p", shipped_catalog)
    assert rows_of(root)["request_id"].to_list() == ["chatcmpl-1", "chatcmpl-2"]


def test_a_malformed_line_writes_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    src = write(tmp_path / "in.jsonl", RECORD, "{not json")
    with pytest.raises(ConfigError, match=r"line 2 is not valid JSON.*nothing written"):
        run_import([src], tmp_path / "logs", "p", shipped_catalog)
    assert partition_files(str(tmp_path / "logs"), "p") == []
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_bad_records_are_refused_with_file_line_and_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    bad_tokens = dict(RECORD, id="b1", response=dict(RECORD["response"], usage={"prompt_tokens": -3}))
    no_messages = {"id": "b2", "request": {"messages": "nope"}}
    too_cached = dict(
        RECORD,
        id="b3",
        response=dict(RECORD["response"], usage={"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 5}}),
    )
    src = write(tmp_path / "in.jsonl", RECORD, bad_tokens, no_messages, too_cached)
    report = run_import([src], tmp_path / "logs", "p", shipped_catalog)
    assert (report.rows_written, report.refused) == (1, 3)
    fields = {r.field: r.first for r in report.refusals}
    assert fields == {
        "response.usage.prompt_tokens": [f"{src}:2"],
        "request": [f"{src}:3"],
        "cached_input_tokens": [f"{src}:4"],
    }
    assert any("refused 1: request: must be a chat request" in line for line in report.lines())
    with pytest.raises(ConfigError, match=r"line 2: response.usage.prompt_tokens: .*--strict: nothing written"):
        run_import([src], tmp_path / "strict", "p", shipped_catalog, strict=True)
    assert partition_files(str(tmp_path / "strict"), "p") == []


def test_unknown_models_and_zero_costs_are_reported(tmp_path: Path, shipped_catalog: Catalog) -> None:
    unknown = dict(RECORD, id="u1", response=dict(RECORD["response"], model="my-finetune-7b"))
    free = dict(RECORD, id="z1", cost_usd=0)
    logged = dict(RECORD, id="c1", cost_usd=0.5)
    report = run_import([write(tmp_path / "in.jsonl", unknown, free, logged)], tmp_path / "logs", "p", shipped_catalog)
    assert report.unpriced_models == {"my-finetune-7b": 1}
    assert (report.cost_missing, report.cost_zero, report.priced_rows, report.unpriced_rows) == (1, 1, 1, 1)
    costs = dict(rows_of(tmp_path / "logs").select("request_id", "cost_usd").iter_rows())
    assert costs["c1"] == 0.5 and costs["u1"] == 0 and costs["z1"] > 0


def test_auto_detect_names_the_choice_and_refuses_what_it_cannot_tell(tmp_path: Path) -> None:
    assert detect([write(tmp_path / "a.jsonl", RECORD)]).name == "openai-jsonl"
    with pytest.raises(ConfigError, match="not in a format rehearsal knows"):
        detect([write(tmp_path / "b.jsonl", {"hello": 1})])


@pytest.mark.parametrize(
    "value",
    [
        "2026-04-01T10:00:00Z",
        "2026-04-01T12:00:00+02:00",
        "2026-04-01 10:00:00",
        1775037600,
        1775037600.0,
        "1775037600",
        1775037600_000,
        1775037600_000_000,
        1775037600_000_000_000,
        "1775037600000000000",
    ],
)
def test_timestamps_in_every_unit(value: object) -> None:
    assert timestamp(value, "t") == dt.datetime(2026, 4, 1, 10, tzinfo=dt.UTC)


def test_tags_and_error_types() -> None:
    assert tags("a, b") == ["a", "b"]
    assert tags({"team": "search", "tier": 2}) == ["team:search", "tier:2"]
    assert tags(["x", None]) == ["x"]
    assert error_type(429) == "rate_limit"
    assert error_type(None, "litellm.Timeout: Request timed out") == "timeout"
    assert error_type(400, "This model's maximum context length is 8192 tokens") == "context_length"
    assert error_type(503) == "server_error"
    assert error_type(404, "The model `gpt-9` does not exist") == "not_found"
