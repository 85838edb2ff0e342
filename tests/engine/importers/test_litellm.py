"""The ``litellm`` (StandardLoggingPayload) and ``litellm-spendlogs`` (LiteLLM_SpendLogs) importers, on files
LiteLLM's own code wrote (see fixtures/litellm/NOTE.md)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.importers import IMPORTERS, ImportReport, run_import
from engine.importers._base import Row, Source, first_record
from engine.logs import partition_files
from engine.pricing import Catalog

FIXTURES = Path(__file__).parent / "fixtures"
HERE = FIXTURES / "litellm"
PAYLOADS = HERE / "standard_logging.jsonl"
SPEND_CSV = HERE / "spendlogs.csv"
SPEND_JSONL = HERE / "spendlogs.jsonl"
OPENAI_ID = "chatcmpl-CACHED0001"
CLAUDE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"


def payloads() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PAYLOADS.read_text().splitlines()]


def spend_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SPEND_JSONL.read_text().splitlines()]


def load(files: list[Path], root: Path, catalog: Catalog, **kw: Any) -> tuple[ImportReport, pl.DataFrame]:
    report = run_import(files, root, "p", catalog, **kw)
    frame = pl.read_parquet(partition_files(str(root), "p")) if report.rows_written else pl.DataFrame()
    return report, frame


def by_id(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in frame.to_dicts()}


def written_rows(fmt: str, path: Path) -> dict[str, Row]:
    """The importer's own rows (with what the store does not keep, such as cache writes)."""
    return {r.values["request_id"]: r for r in IMPORTERS[fmt].rows(Source([path])) if isinstance(r, Row)}


def write_lines(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


# -- litellm: StandardLoggingPayload -----------------------------------------------------------------------


def test_payloads_map_success_and_failure(tmp_path: Path, shipped_catalog: Catalog) -> None:
    raw = payloads()
    report, frame = load([PAYLOADS], tmp_path, shipped_catalog)
    assert report.format == "litellm"
    # 9 payloads: the cache hit and the embedding are skipped (and said so), the other 7 written.
    assert (report.records_read, report.rows_written, report.refused) == (9, 7, 0)
    assert any("cache hits" in n and "standard_logging.jsonl:8" in n for n in report.notes)
    assert any("'embedding' is not a text generation call" in n for n in report.notes)
    rows = by_id(frame)
    assert not any("_cache_hit" in k for k in rows)

    src = next(p for p in raw if p["id"] == OPENAI_ID)
    ok = rows[OPENAI_ID]
    assert (ok["model"], ok["provider"], ok["status"], ok["error_type"]) == ("gpt-4o-mini", "openai", "ok", None)
    assert (ok["input_tokens"], ok["output_tokens"], ok["cached_input_tokens"]) == (1200, 3, 1024)
    assert ok["cost_usd"] == pytest.approx(src["response_cost"])
    assert ok["timestamp"] == dt.datetime.fromtimestamp(src["startTime"], dt.UTC)
    assert ok["latency_ms"] == pytest.approx((src["endTime"] - src["startTime"]) * 1000)
    assert ok["end_user_id"] == "customer-42"
    assert ok["tags"][:2] == ["feature:chat", "env:prod"]
    body = json.loads(ok["request_json"])
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2 and body["max_tokens"] == 16
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert ok["response_text"] == "Paris."

    claude = rows[CLAUDE_ID]
    # The model as LiteLLM logs it (without the ``anthropic/`` it was called with), Anthropic's usage
    # as LiteLLM counts it: prompt_tokens = input + cache writes + cache reads.
    assert (claude["model"], claude["provider"]) == ("claude-3-5-haiku-20241022", "anthropic")
    assert (claude["input_tokens"], claude["cached_input_tokens"], claude["output_tokens"]) == (2200, 1800, 42)
    assert json.loads(claude["request_json"])["model"] == "claude-haiku"  # the model group the client asked for
    # LiteLLM could not price the dated model (response_cost 0): the import priced it from the catalog.
    assert report.cost_zero == 1 and report.priced_rows == 1 and claude["cost_usd"] > 0

    stream = next(p for p in raw if p.get("stream"))
    streamed = rows[stream["id"]]
    assert streamed["latency_ms"] == pytest.approx((stream["endTime"] - stream["startTime"]) * 1000)
    assert streamed["latency_ms"] > stream["response_time"] * 1000  # response_time is time to first token

    failed = frame.filter(pl.col("status") == "error")
    kinds = dict(zip(failed["model"].to_list(), failed["error_type"].to_list(), strict=True))
    assert sorted(failed["error_type"].to_list()) == ["context_length", "rate_limit", "timeout"]
    assert kinds["claude-3-5-haiku-20241022"] == "rate_limit"
    assert failed["response_text"].null_count() == 3 and failed["cost_usd"].to_list() == [0.0] * 3
    assert failed["request_json"].null_count() == 0  # a failed call's prompt is kept


def test_cache_writes_reach_the_row(shipped_catalog: Catalog) -> None:
    rows = written_rows("litellm", PAYLOADS)
    assert rows[CLAUDE_ID].cache_write_tokens == 300
    assert rows[OPENAI_ID].cache_write_tokens == 0


def test_one_object_a_file_and_json_arrays(tmp_path: Path, shipped_catalog: Catalog) -> None:
    """The S3 logger writes one payload per object; the generic API logger a JSON array by default."""
    raw = payloads()
    single = tmp_path / "s3-object.json"
    single.write_text(json.dumps(raw[0], indent=2))
    array = tmp_path / "batch.json"
    array.write_text(json.dumps(raw[1:3]))
    report, frame = load([single, array], tmp_path / "logs", shipped_catalog)
    assert report.format == "litellm" and report.rows_written == 3
    assert set(frame["request_id"]) == {raw[0]["id"], raw[1]["id"], raw[2]["id"]}


def test_redacted_and_string_prompts(tmp_path: Path, shipped_catalog: Catalog) -> None:
    raw = payloads()[0]
    redacted = dict(raw, id="r1", messages=[{"role": "user", "content": "redacted-by-litellm"}])
    redacted["response"] = {"choices": [{"message": {"role": "assistant", "content": "redacted-by-litellm"}}]}
    text = dict(raw, id="r2", messages="Say hi")
    report, frame = load([write_lines(tmp_path / "p.jsonl", [redacted, text])], tmp_path / "logs", shipped_catalog)
    rows = by_id(frame)
    assert rows["r1"]["request_json"] is None and rows["r1"]["response_text"] is None
    assert json.loads(rows["r2"]["request_json"])["messages"] == [{"role": "user", "content": "Say hi"}]
    assert any("1 row(s) have no request_json: LiteLLM redacted the prompt" in n for n in report.notes)


def test_payloads_without_a_status(tmp_path: Path, shipped_catalog: Catalog) -> None:
    """Payloads from LiteLLM versions before ``status``: a failure is told by its ``error_str``."""
    raw = payloads()
    ok = next(p for p in raw if p["status"] == "success")
    failed = next(p for p in raw if p["status"] == "failure")
    old = [{k: v for k, v in p.items() if k not in ("status", "status_fields")} for p in (ok, failed)]
    _, frame = load([write_lines(tmp_path / "old.jsonl", old)], tmp_path / "logs", shipped_catalog)
    got = by_id(frame)
    assert (got[ok["id"]]["status"], got[failed["id"]]["status"]) == ("ok", "error")


# -- litellm-spendlogs: LiteLLM_SpendLogs ------------------------------------------------------------------


def test_spendlogs_csv_and_json_lines(tmp_path: Path, shipped_catalog: Catalog) -> None:
    csv_report, from_csv = load([SPEND_CSV], tmp_path / "a", shipped_catalog)
    json_report, from_json = load([SPEND_JSONL], tmp_path / "b", shipped_catalog)
    assert csv_report.format == json_report.format == "litellm-spendlogs"
    assert (csv_report.rows_written, csv_report.refused) == (7, 0)
    assert from_csv.sort("request_id").equals(from_json.sort("request_id"))
    for notes in (csv_report.notes, json_report.notes):
        assert any("cache hits" in n for n in notes)
        assert any("call_type 'embedding'" in n for n in notes)
        assert any("6 row(s) have no request_json" in n and "store_prompts_in_spend_logs" in n for n in notes)

    raw = {r["request_id"]: r for r in spend_rows()}
    rows = by_id(from_csv)
    ok = rows[OPENAI_ID]
    assert (ok["input_tokens"], ok["output_tokens"], ok["cached_input_tokens"]) == (1200, 3, 1024)
    assert ok["timestamp"] == dt.datetime.fromisoformat(raw[OPENAI_ID]["startTime"]).replace(tzinfo=dt.UTC)
    assert ok["latency_ms"] == raw[OPENAI_ID]["request_duration_ms"]
    assert ok["cost_usd"] == pytest.approx(raw[OPENAI_ID]["spend"])
    assert (ok["end_user_id"], ok["tags"][:2]) == ("customer-42", ["feature:chat", "env:prod"])
    # This call ran with store_prompts_in_spend_logs: the request body and the answer are in the row.
    body = json.loads(ok["request_json"])
    assert (body["model"], body["temperature"], len(body["messages"])) == ("gpt-4o-mini", 0.2, 2)
    assert ok["response_text"] == "Paris."

    claude = rows[CLAUDE_ID]
    assert (claude["model"], claude["provider"]) == ("claude-3-5-haiku-20241022", "anthropic")
    assert (claude["input_tokens"], claude["cached_input_tokens"]) == (2200, 1800)
    assert claude["request_json"] is None and claude["response_text"] is None  # prompts not stored: {}
    assert raw[CLAUDE_ID]["spend"] == 0 and claude["cost_usd"] > 0  # priced by the import

    failed = from_csv.filter(pl.col("status") == "error")
    assert sorted(failed["error_type"].to_list()) == ["context_length", "rate_limit", "timeout"]
    assert failed["cost_usd"].to_list() == [0.0] * 3 and failed["response_text"].null_count() == 3


def test_spendlogs_cache_writes(shipped_catalog: Catalog) -> None:
    rows = written_rows("litellm-spendlogs", SPEND_CSV)
    assert rows[CLAUDE_ID].cache_write_tokens == 300


def test_both_formats_describe_the_same_calls(tmp_path: Path, shipped_catalog: Catalog) -> None:
    _, payload_rows = load([PAYLOADS], tmp_path / "a", shipped_catalog)
    _, spend = load([SPEND_JSONL], tmp_path / "b", shipped_catalog)
    columns = ["request_id", "model", "provider", "input_tokens", "output_tokens", "cached_input_tokens"]
    columns += ["status", "error_type", "end_user_id", "tags"]
    assert payload_rows.select(columns).sort("request_id").equals(spend.select(columns).sort("request_id"))


def test_older_spendlogs_rows(tmp_path: Path, shipped_catalog: Catalog) -> None:
    """Rows from proxies before the ``status`` and ``request_duration_ms`` columns, with the prompt in
    ``messages`` (where older versions stored it)."""
    rows = spend_rows()
    failed = next(r for r in rows if r["status"] == "failure")
    ok = next(r for r in rows if r["request_id"] == CLAUDE_ID)
    old_failed = {k: v for k, v in failed.items() if k not in ("status", "request_duration_ms")}
    old_ok = {k: v for k, v in ok.items() if k not in ("status", "request_duration_ms")}
    old_ok["messages"] = [{"role": "user", "content": "Summarise this contract: ..."}]
    # Some export tools write jsonb as JSON text inside the JSON: read the same.
    old_ok["metadata"], old_ok["request_tags"] = json.dumps(ok["metadata"]), json.dumps(ok["request_tags"])
    _, frame = load([write_lines(tmp_path / "old.jsonl", [old_failed, old_ok])], tmp_path / "logs", shipped_catalog)
    got = by_id(frame)
    assert got[failed["request_id"]]["status"] == "error"  # from metadata.status
    assert got[CLAUDE_ID]["status"] == "ok"
    start, end = (dt.datetime.fromisoformat(ok[k]) for k in ("startTime", "endTime"))
    assert got[CLAUDE_ID]["latency_ms"] == pytest.approx((end - start).total_seconds() * 1000)
    assert json.loads(got[CLAUDE_ID]["request_json"])["model"] == "claude-haiku"
    assert (got[CLAUDE_ID]["cached_input_tokens"], got[CLAUDE_ID]["tags"][0]) == (1800, "feature:summarise")


# -- sniffing ----------------------------------------------------------------------------------------------


def test_auto_picks_the_format() -> None:
    from engine.importers import detect

    assert detect([PAYLOADS]).name == "litellm"
    assert detect([SPEND_CSV]).name == detect([SPEND_JSONL]).name == "litellm-spendlogs"
    with pytest.raises(ConfigError, match="different formats"):
        detect([PAYLOADS, SPEND_CSV])


def test_other_formats_files_are_not_claimed() -> None:
    mine = (IMPORTERS["litellm"], IMPORTERS["litellm-spendlogs"])
    others = [p for p in FIXTURES.glob("*/*") if p.parent != HERE and p.suffix in (".json", ".jsonl", ".csv")]
    for path in others:
        first = first_record(path)
        assert not any(imp.sniff(first) for imp in mine), path
    for path in (PAYLOADS, SPEND_CSV, SPEND_JSONL):
        first = first_record(path)
        claimed = [name for name, imp in IMPORTERS.items() if imp.sniff(first)]
        assert len(claimed) == 1, (path, claimed)


# -- refusals, strict, re-import ---------------------------------------------------------------------------


def malformed_payloads(tmp_path: Path) -> Path:
    raw = payloads()
    bad_tokens = dict(raw[1], prompt_tokens="many")
    bad_status = dict(raw[2], status="maybe")
    return write_lines(tmp_path / "bad.jsonl", [raw[0], bad_tokens, bad_status])


def malformed_csv(tmp_path: Path) -> Path:
    reader = csv.DictReader(io.StringIO(SPEND_CSV.read_text()))
    rows = list(reader)
    rows[1]["metadata"] = '{"status": '  # cut off
    rows[2]["prompt_tokens"] = "-5"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "bad.csv"
    path.write_text(out.getvalue())
    return path


def test_malformed_records_are_refused_by_file_line_and_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    path = malformed_payloads(tmp_path)
    report, _ = load([path], tmp_path / "a", shipped_catalog)
    assert (report.rows_written, report.refused) == (1, 2)
    refused = {r.field: r for r in report.refusals}
    assert refused["prompt_tokens"].first == [f"{path}:2"]
    assert "'many' is not a whole number" in refused["prompt_tokens"].reason
    assert refused["status"].first == [f"{path}:3"]

    path = malformed_csv(tmp_path)
    report, _ = load([path], tmp_path / "b", shipped_catalog)
    refused = {r.field: r for r in report.refusals}
    assert refused["metadata"].first == [f"{path}:3"] and refused["metadata"].reason == "is not valid JSON"
    assert refused["prompt_tokens"].first == [f"{path}:4"]


def test_strict_refuses_and_writes_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    for path, field in ((malformed_payloads(tmp_path), "prompt_tokens"), (malformed_csv(tmp_path), "metadata")):
        with pytest.raises(ConfigError, match=f"line \\d+: {field}:.*nothing written"):
            run_import([path], tmp_path / "logs", "p", shipped_catalog, strict=True)
        assert partition_files(str(tmp_path / "logs"), "p", strict=False) == []


def test_reimport_adds_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    first = run_import([PAYLOADS], tmp_path, "p", shipped_catalog)
    again = run_import([PAYLOADS], tmp_path, "p", shipped_catalog)
    assert (again.rows_written, again.duplicates_skipped) == (0, first.rows_written)
    # The spend logs hold the same request ids: importing them into the same project adds nothing either.
    spend = run_import([SPEND_CSV], tmp_path, "p", shipped_catalog)
    assert (spend.rows_written, spend.duplicates_skipped) == (0, 7)
