"""The ``openai-batch`` format: Batch API output/error files joined to the input file, through ``run_import``.

The fixtures are the files the real ``openai`` SDK wrote against a loopback Batch API
(``fixtures/openai_batch/make_fixtures.py``, see its ``NOTE.md``).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import PrivateAttr

from engine.errors import ConfigError
from engine.importers import IMPORTERS, detect, run_import
from engine.importers._base import first_record
from engine.logs import partition_files
from engine.pricing import Catalog, ModelPrice

FIXTURES = Path(__file__).parent / "fixtures"
HERE = FIXTURES / "openai_batch"
INPUT, OUTPUT, ERRORS = HERE / "chat_input.jsonl", HERE / "chat_output.jsonl", HERE / "chat_errors.jsonl"
CHAT = [OUTPUT, ERRORS, INPUT]
#: ``created`` of the first completion, and of the batch's last (what failed lines are stamped with).
FIRST = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LAST = dt.datetime(2026, 3, 2, 9, 7, tzinfo=dt.UTC)


def by_custom_id(root: Path) -> dict[str, dict[str, Any]]:
    frame = pl.read_parquet(partition_files(str(root), "p"))
    out = {}
    for row in frame.to_dicts():
        (cid,) = [t.removeprefix("custom_id:") for t in row["tags"] if t.startswith("custom_id:")]
        out[cid] = row
    return out


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class BatchRates(Catalog):
    """List prices times ``factor`` where batch rates are asked for; remembers every request."""

    _calls: list[tuple[str, str | None, bool]] = PrivateAttr(default_factory=list)
    _factor: float = PrivateAttr(0.5)

    def rates(
        self, model: str, *, on: dt.date | None = None, provider: str | None = None, batch: bool = False
    ) -> ModelPrice | None:
        self._calls.append((model, provider, batch))
        price = super().rates(model, on=on, provider=provider) or super().rates(
            model.removesuffix("-2024-07-18"), on=on, provider=provider
        )
        if price is None or not batch:
            return price
        f = self._factor
        update: dict[str, Any] = {
            "input_per_mtok": price.input_per_mtok * f,
            "output_per_mtok": price.output_per_mtok * f,
            "cached_input_per_mtok": price.cached_rate * f,
        }
        if "tiers" in type(price).model_fields:
            update["tiers"] = []
        return price.model_copy(update=update)


def batch_rates(catalog: Catalog, factor: float) -> BatchRates:
    out = BatchRates.model_validate(catalog.model_dump())
    out._factor = factor
    return out


def test_a_batch_maps_ok_and_failed_requests(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report = run_import(CHAT, tmp_path / "logs", "p", shipped_catalog)
    assert (report.format, report.records_read, report.rows_written, report.refused) == ("openai-batch", 8, 8, 0)
    rows = by_custom_id(tmp_path / "logs")
    inputs = {r["custom_id"]: r["body"] for r in lines(INPUT)}
    outputs = {r["custom_id"]: r for r in lines(OUTPUT) + lines(ERRORS)}

    ok = rows["ticket-1001"]
    assert ok["request_id"] == outputs["ticket-1001"]["id"] and ok["request_id"].startswith("batch_req_")
    assert ok["timestamp"] == FIRST
    assert (ok["model"], ok["provider"], ok["status"], ok["error_type"]) == (
        "gpt-4o-mini-2024-07-18",
        "openai",
        "ok",
        None,
    )
    assert (ok["input_tokens"], ok["output_tokens"], ok["cached_input_tokens"]) == (22, 12, 0)
    assert ok["tags"] == ["batch", "custom_id:ticket-1001", "team:billing"]
    assert json.loads(ok["request_json"]) == inputs["ticket-1001"]
    assert ok["response_text"] == "The customer was billed twice for the same invoice."
    assert ok["latency_ms"] == 0 and report.latency_missing == 8

    cached = rows["ticket-1003"]
    usage = outputs["ticket-1003"]["response"]["body"]["usage"]
    assert cached["cached_input_tokens"] == usage["prompt_tokens_details"]["cached_tokens"] == 512
    assert cached["input_tokens"] == usage["prompt_tokens"]
    assert (cached["end_user_id"], rows["ticket-1002"]["end_user_id"]) == ("user_18", "user_17")
    assert rows["ticket-1008"]["end_user_id"] is None  # its input line (with `user`) is missing

    tool = rows["ticket-1004"]
    assert "stream" not in json.loads(tool["request_json"]) and "stream" in inputs["ticket-1004"]
    assert json.loads(tool["response_text"])[0]["function"]["name"] == "get_weather"

    failed = {cid: rows[cid] for cid in ("ticket-1005", "ticket-1006", "ticket-1007")}
    assert {cid: r["error_type"] for cid, r in failed.items()} == {
        "ticket-1005": "context_length",
        "ticket-1006": "rate_limit",
        "ticket-1007": "timeout",
    }
    for cid, row in failed.items():
        assert (row["status"], row["response_text"], row["cost_usd"]) == ("error", None, 0)
        assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
        assert row["model"] == "gpt-4o-mini"  # the request's: a failed line names no model
        assert row["timestamp"] == LAST
        assert json.loads(row["request_json"]) == inputs[cid]
        assert row["request_id"] == outputs[cid]["id"]

    orphan = rows["ticket-1008"]
    assert (orphan["status"], orphan["request_json"], orphan["response_text"]) == ("ok", None, "OK.")
    notes = " ".join(report.notes)
    assert "1 output line(s) have no line in the input file(s)" in notes
    assert "3 failed request(s) carry no time of their own" in notes and LAST.isoformat() in notes
    assert "batch rates" in notes and "no per-request latency" in notes


def test_rows_are_priced_at_batch_rates(tmp_path: Path, shipped_catalog: Catalog) -> None:
    half, listed = batch_rates(shipped_catalog, 0.5), batch_rates(shipped_catalog, 1.0)
    report = run_import(CHAT, tmp_path / "half", "p", half)
    run_import(CHAT, tmp_path / "list", "p", listed)
    assert report.batch_rows == 8
    # run_import asked for batch rates, for every model and provider of the batch.
    assert half._calls and all(batch for _, _, batch in half._calls)
    assert {(m, p) for m, p, _ in half._calls} == {("gpt-4o-mini-2024-07-18", "openai"), ("gpt-4o-mini", "openai")}
    assert (report.cost_missing, report.priced_rows) == (5, 5)
    at_half, at_list = by_custom_id(tmp_path / "half"), by_custom_id(tmp_path / "list")
    for cid, row in at_half.items():
        if row["status"] == "ok":
            assert at_list[cid]["cost_usd"] > 0
            assert row["cost_usd"] == pytest.approx(at_list[cid]["cost_usd"] / 2), cid
    assert report.priced_usd == pytest.approx(sum(r["cost_usd"] for r in at_half.values()))
    assert any("rows are Batch API calls, priced at batch rates" in line for line in report.lines())


def test_auto_picks_the_format_for_each_file_and_claims_no_other_format(tmp_path: Path) -> None:
    for path in [*CHAT, HERE / "embeddings_input.jsonl", HERE / "embeddings_output.jsonl"]:
        assert detect([path]).name == "openai-batch"
    assert detect(CHAT).name == "openai-batch"
    batch = IMPORTERS["openai-batch"]
    others = [p for p in FIXTURES.glob("*/*") if p.parent != HERE and p.suffix in (".jsonl", ".json", ".csv")]
    for path in others:
        assert not batch.sniff(first_record(path)), path
    openai_jsonl_record = {"request": {"model": "m", "messages": []}, "response": {}}
    anthropic_batch_result = {"custom_id": "a", "result": {"type": "succeeded", "message": {}}}
    anthropic_batch_input = {"custom_id": "a", "params": {"model": "claude", "messages": []}}
    for record in (openai_jsonl_record, anthropic_batch_result, anthropic_batch_input, [], "x", None):
        assert not batch.sniff(record)


def test_embeddings_and_other_endpoints_are_refused_with_the_endpoint(tmp_path: Path, shipped_catalog: Catalog) -> None:
    embeddings = [HERE / "embeddings_output.jsonl", HERE / "embeddings_input.jsonl"]
    report = run_import(embeddings, tmp_path / "logs", "p", shipped_catalog)
    assert (report.records_read, report.rows_written, report.refused) == (2, 0, 2)
    (refused,) = report.refusals
    assert (refused.field, refused.count) == ("url", 2)
    assert "/v1/embeddings" in refused.reason and "/v1/chat/completions" in refused.reason
    assert refused.first[0] == f"{HERE / 'embeddings_output.jsonl'}:1"
    # Without the input file the output body's `object` tells the endpoint.
    alone = run_import([HERE / "embeddings_output.jsonl"], tmp_path / "logs", "p", shipped_catalog)
    assert [(r.field, r.count) for r in alone.refusals] == [("response.body.object", 2)]


def test_a_malformed_line_is_refused_by_file_line_and_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    records = lines(OUTPUT)
    records[1]["response"]["body"]["usage"]["prompt_tokens"] = "many"
    del records[2]["response"]["body"]["created"]
    records[3] = {"custom_id": "ticket-1004", "note": "not an output line"}
    bad = write(tmp_path / "out.jsonl", records)
    report = run_import([bad, ERRORS, INPUT], tmp_path / "logs", "p", shipped_catalog)
    assert (report.records_read, report.rows_written, report.refused) == (8, 5, 3)
    where = {r.field: r.first for r in report.refusals}
    assert where == {
        "response.body.usage.prompt_tokens": [f"{bad}:2"],
        "response.body.created": [f"{bad}:3"],
        "record": [f"{bad}:4"],
    }
    assert "not a whole number" in next(r.reason for r in report.refusals if r.field.endswith("prompt_tokens"))


def test_strict_refuses_the_import_and_writes_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    records = lines(OUTPUT)
    records[0]["response"]["status_code"] = "200"
    bad = write(tmp_path / "out.jsonl", records)
    with pytest.raises(ConfigError, match=r"out\.jsonl: line 1: response\.status_code: .*--strict"):
        run_import([bad, INPUT], tmp_path / "logs", "p", shipped_catalog, strict=True)
    assert list(tmp_path.glob("logs/**/*.parquet")) == []


def test_importing_the_batch_again_adds_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    root = tmp_path / "logs"
    run_import(CHAT, root, "p", shipped_catalog)
    again = run_import(list(reversed(CHAT)), root, "p", shipped_catalog)
    assert (again.rows_written, again.duplicates_skipped) == (0, 8)
    # The error file alone later on: still nothing new.
    later = run_import([ERRORS, INPUT], root, "p", shipped_catalog)
    assert (later.rows_written, later.duplicates_skipped, later.refused) == (0, 0, 3)
    assert {r.field for r in later.refusals} == {"response.body.created"}
    assert len(by_custom_id(root)) == 8


def test_without_the_input_file_rows_lack_the_prompt_and_failures_are_refused(
    tmp_path: Path, shipped_catalog: Catalog
) -> None:
    report = run_import([OUTPUT, ERRORS], tmp_path / "logs", "p", shipped_catalog)
    assert (report.rows_written, report.refused) == (5, 3)
    assert [(r.field, r.count) for r in report.refusals] == [("custom_id", 3)]
    assert all(r["request_json"] is None for r in by_custom_id(tmp_path / "logs").values())
    assert any("No Batch input file was given" in n for n in report.notes)
    with pytest.raises(ConfigError, match="only Batch input files"):
        run_import([INPUT], tmp_path / "logs2", "p", shipped_catalog)


def test_azure_batches_and_ambiguous_inputs(tmp_path: Path, shipped_catalog: Catalog) -> None:
    # Azure OpenAI's input lines name the endpoint without /v1 (`"url": "/chat/completions"`).
    azure_inputs = [dict(r, url="/chat/completions") for r in lines(INPUT)]
    azure = write(tmp_path / "azure_input.jsonl", azure_inputs)
    run_import([OUTPUT, ERRORS, azure], tmp_path / "a", "p", shipped_catalog)
    rows = by_custom_id(tmp_path / "a")
    assert rows["ticket-1001"]["provider"] == "azure" and rows["ticket-1008"]["provider"] == "openai"
    # Two batches' input files reusing a custom_id for different requests: the join is ambiguous.
    other = lines(INPUT)[:1]
    other[0]["body"]["messages"][0]["content"] = "another batch's request"
    second = write(tmp_path / "other_input.jsonl", other)
    report = run_import([OUTPUT, INPUT, second], tmp_path / "b", "p", shipped_catalog)
    rows = by_custom_id(tmp_path / "b")
    assert rows["ticket-1001"]["request_json"] is None and rows["ticket-1002"]["request_json"] is not None
    assert any("1 custom_id(s) appear on more than one input line" in n for n in report.notes)


def test_a_bad_input_line_is_refused_and_its_output_still_imports(tmp_path: Path, shipped_catalog: Catalog) -> None:
    inputs = lines(INPUT)
    inputs[0]["body"]["messages"] = "Summarise"
    shutil.copy(OUTPUT, tmp_path / "out.jsonl")
    bad = write(tmp_path / "in.jsonl", [*inputs, {"custom_id": "x", "method": "POST"}])
    report = run_import([tmp_path / "out.jsonl", bad], tmp_path / "logs", "p", shipped_catalog)
    assert {(r.field, r.first[0]) for r in report.refusals} == {("body.messages", f"{bad}:1"), ("record", f"{bad}:8")}
    row = by_custom_id(tmp_path / "logs")["ticket-1001"]
    assert (row["request_json"], row["input_tokens"], row["model"]) == (None, 22, "gpt-4o-mini-2024-07-18")
