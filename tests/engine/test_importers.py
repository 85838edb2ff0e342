import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.importers import import_openai_jsonl
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
        "model": "gpt-4o-2024-08-06",
        "choices": [{"message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400}},
    },
}


def test_import_writes_the_store_layout(tmp_path: Path, shipped_catalog: Catalog) -> None:
    record = dict(RECORD, response=dict(RECORD["response"], model="gpt-4o"))
    failed = {"id": "x2", "timestamp": 1775052000, "request": RECORD["request"], "error": {"type": "rate_limit"}}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(record) + "\n\n" + json.dumps(failed) + "\n")
    rows, files = import_openai_jsonl(src, tmp_path / "logs", "p", shipped_catalog)
    assert rows == 2
    import polars as pl

    frame = pl.read_parquet(files[0])
    ok = frame.filter(pl.col("request_id") == "chatcmpl-1").to_dicts()[0]
    assert ok["cached_input_tokens"] == 400
    assert ok["cost_usd"] == pytest.approx((600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6)
    assert ok["response_text"] == "Hello!"
    assert json.loads(ok["request_json"])["temperature"] == 0.2
    bad = frame.filter(pl.col("request_id") == "x2").to_dicts()[0]
    assert (bad["status"], bad["error_type"], bad["response_text"]) == ("error", "rate_limit", None)
    assert inspect_store(str(tmp_path / "logs"))[1] == []


def test_a_bad_line_writes_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(RECORD) + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        import_openai_jsonl(src, tmp_path / "logs", "p", shipped_catalog)
    assert partition_files(str(tmp_path / "logs"), "p") == []
    src.write_text(json.dumps({"request": {"messages": "nope"}}) + "\n")
    with pytest.raises(ConfigError, match="line 1: 'request' must be a chat request"):
        import_openai_jsonl(src, tmp_path / "logs", "p", shipped_catalog)
