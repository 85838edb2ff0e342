"""The ``langfuse`` format: Langfuse's public-API observations (v1 and v2 shapes) and traces exports.

The fixtures were made with Langfuse's own SDKs (see fixtures/langfuse/NOTE.md); the v1 ones carry
fresh ids and times on every regeneration, so the tests look records up by name and read their
expected times from the files.
"""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.importers import detect, run_import
from engine.importers._base import Row, Source, first_record
from engine.importers.langfuse import Langfuse
from engine.logs import partition_files
from engine.pricing import Catalog

FIXTURES = Path(__file__).parent / "fixtures"
HERE = FIXTURES / "langfuse"
V1 = HERE / "observations_v1.json"
TRACES_PAGE = HERE / "traces_v1.json"
TRACES_LINES = HERE / "traces_v1.jsonl"
V2_SDK5 = HERE / "observations_v2_sdk5.jsonl"
V2_SDK4 = HERE / "observations_v2_sdk4.json"


def v1_records() -> list[dict[str, Any]]:
    return json.loads(V1.read_text())["data"]


def v1_by_name(name: str) -> dict[str, Any]:
    return next(r for r in v1_records() if r["name"] == name)


def rows_of(root: Path) -> dict[str, dict[str, Any]]:
    frame = pl.read_parquet(partition_files(str(root), "p"))
    return {r["request_id"]: r for r in frame.to_dicts()}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_v1_page_with_traces_maps_every_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report = run_import([V1, TRACES_LINES], tmp_path / "logs", "p", shipped_catalog)
    assert (report.format, report.records_read, report.rows_written, report.refused) == ("langfuse", 6, 4, 0)
    rows = rows_of(tmp_path / "logs")

    answer = v1_by_name("answer")
    ok = rows[answer["id"]]
    assert ok["timestamp"] == utc(answer["startTime"])
    assert (ok["model"], ok["provider"], ok["status"], ok["error_type"]) == (
        "gpt-4o-mini-2024-07-18",
        "openai",
        "ok",
        None,
    )
    # usageDetails {input: 176, input_cached_tokens: 1024, input_audio_tokens: 0, output: 85, …}: the
    # prompt is every input key, the cache reads are their own key.
    assert (ok["input_tokens"], ok["cached_input_tokens"], ok["output_tokens"]) == (1200, 1024, 85)
    assert ok["cost_usd"] == pytest.approx(answer["calculatedTotalCost"])  # Langfuse's own cost, kept
    assert ok["latency_ms"] == pytest.approx((utc(answer["endTime"]) - utc(answer["startTime"])).total_seconds() * 1e3)
    assert ok["end_user_id"] == "user-1138"  # from the traces file
    assert ok["tags"] == ["production", "feature:support", "session:sess-42", "prompt:support-answer"]
    body = json.loads(ok["request_json"])
    assert body["messages"] == answer["input"] and body["model"] == "gpt-4o-mini-2024-07-18"
    assert (body["temperature"], body["max_tokens"]) == (0.2, 256)  # the SDK logged "0.2" as a string
    assert ok["response_text"] == answer["output"]["content"]

    failed_record = v1_by_name("order-lookup")
    failed = rows[failed_record["id"]]
    assert (failed["status"], failed["error_type"], failed["response_text"]) == ("error", "rate_limit", None)
    assert (failed["input_tokens"], failed["output_tokens"], failed["cost_usd"]) == (0, 0, 0)
    assert failed["end_user_id"] == "user-2001" and failed["tags"] == ["production"]
    # {"tools": [...], "messages": [...]}: the tools go into the request; max_tokens "inf" is dropped.
    body = json.loads(failed["request_json"])
    assert body["tools"][0]["function"]["name"] == "order_status" and "max_tokens" not in body

    text_prompt = rows[v1_by_name("OpenAI-generation")["id"]]
    assert text_prompt["request_json"] is None  # a completion prompt string: a routing-only row
    assert text_prompt["response_text"] == " fox jumps over the lazy dog."

    claude_record = v1_by_name("summarise-ticket")
    claude = rows[claude_record["id"]]
    assert claude["provider"] == "anthropic"  # metadata.ls_provider
    # {input: 45, cache_read_input_tokens: 1800, cache_creation_input_tokens: 250, output: 24}
    assert (claude["input_tokens"], claude["cached_input_tokens"], claude["output_tokens"]) == (2095, 1800, 24)
    assert claude["tags"] == ["batch-job", "session:sess-42"]

    notes = " ".join(report.notes)
    assert "skipped 2 observations that are not generations (1 EVENT, 1 SPAN)" in notes
    assert "inferred it from the model name for 3 generations" in notes and "metadata" in notes
    assert "1 generations have no chat-message prompt" in notes
    assert "joined user ids, session ids and tags from 4 traces" in notes


def test_cache_writes_go_to_the_row() -> None:
    items = list(Langfuse().rows(Source([V1])))
    rows = {r.values["request_id"]: r for r in items if isinstance(r, Row)}
    assert rows[v1_by_name("summarise-ticket")["id"]].cache_write_tokens == 250
    assert rows[v1_by_name("answer")["id"]].cache_write_tokens == 0


def test_without_traces_the_report_says_what_is_missing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report = run_import([V1], tmp_path / "logs", "p", shipped_catalog)
    rows = rows_of(tmp_path / "logs")
    ok = rows[v1_by_name("answer")["id"]]
    assert ok["end_user_id"] is None and ok["tags"] == ["prompt:support-answer"]
    assert any("give the traces export" in n for n in report.notes)


def test_a_traces_page_joins_like_trace_lines(tmp_path: Path, shipped_catalog: Catalog) -> None:
    run_import([TRACES_PAGE, V1], tmp_path / "a", "p", shipped_catalog)
    run_import([V1, TRACES_LINES], tmp_path / "b", "p", shipped_catalog)
    a, b = rows_of(tmp_path / "a"), rows_of(tmp_path / "b")
    assert {k: (v["end_user_id"], v["tags"]) for k, v in a.items()} == {
        k: (v["end_user_id"], v["tags"]) for k, v in b.items()
    }


def test_pages_saved_one_a_line_read_like_the_page(tmp_path: Path, shipped_catalog: Catalog) -> None:
    page = json.loads(V1.read_text())
    pages = [{"data": page["data"][:3], "meta": {**page["meta"], "page": 1}}, {"data": page["data"][3:], "meta": {}}]
    src = write_lines(tmp_path / "pages.jsonl", pages)
    assert detect([src]).name == "langfuse"
    run_import([src, TRACES_PAGE], tmp_path / "a", "p", shipped_catalog)
    run_import([V1, TRACES_PAGE], tmp_path / "b", "p", shipped_catalog)
    assert rows_of(tmp_path / "a") == rows_of(tmp_path / "b")


def test_v2_lines_map_every_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report = run_import([V2_SDK5], tmp_path / "logs", "p", shipped_catalog)
    assert (report.records_read, report.rows_written, report.refused) == (4, 3, 0)
    rows = rows_of(tmp_path / "logs")

    ok = rows["9c1e6b1a4f0d2e77"]
    assert ok["timestamp"] == dt.datetime(2026, 4, 2, 9, 15, 0, 120000, tzinfo=dt.UTC)
    assert (ok["model"], ok["provider"]) == ("claude-sonnet-4-5-20250929", "anthropic")
    # {input: 320, input_cached_tokens: 4096, input_cache_creation: 512, output: 210}
    assert (ok["input_tokens"], ok["cached_input_tokens"], ok["output_tokens"]) == (4928, 4096, 210)
    assert ok["cost_usd"] == pytest.approx(0.0072588)  # totalCost
    assert ok["latency_ms"] == pytest.approx(3350.0)
    assert ok["end_user_id"] == "user-77"  # the v2 record carries its trace's user and tags itself
    assert ok["tags"] == [
        "production",
        "team:search",
        "session:sess-900",
        "prompt:rag-answer",
        "environment:production",
    ]
    body = json.loads(ok["request_json"])  # input was a raw JSON string
    assert body["messages"][1]["content"][0]["text"] == "Which plans include SSO?"
    assert (body["max_tokens"], body["temperature"]) == (1024, 0.3)
    assert ok["response_text"] == "SSO is included in the Business and Enterprise plans."

    failed = rows["e5b1c9d27a3f6048"]
    assert (failed["status"], failed["error_type"], failed["response_text"]) == ("error", "context_length", None)

    reasoning = rows["a41f0c7e92b35d18"]
    # {input: 988, input_cached_tokens: 512, output: 108, output_reasoning_tokens: 192}
    assert (reasoning["input_tokens"], reasoning["cached_input_tokens"], reasoning["output_tokens"]) == (1500, 512, 300)
    assert (reasoning["request_json"], reasoning["response_text"]) == (None, "negative")
    # No cost logged: priced from the catalog.
    price = shipped_catalog.rates("o4-mini")
    assert price is not None
    expected = (988 * price.input_per_mtok + 512 * price.cached_rate + 300 * price.output_per_mtok) / 1e6
    assert reasoning["cost_usd"] == pytest.approx(expected)
    assert (report.cost_missing, report.priced_rows) == (1, 1)
    assert any("skipped 1 observations that are not generations (1 SPAN)" in n for n in report.notes)


def test_v2_page_with_provided_model_name_reads_alike(tmp_path: Path, shipped_catalog: Catalog) -> None:
    run_import([V2_SDK4], tmp_path / "a", "p", shipped_catalog)
    run_import([V2_SDK5], tmp_path / "b", "p", shipped_catalog)
    assert rows_of(tmp_path / "a") == rows_of(tmp_path / "b")


def test_auto_detect_claims_langfuse_files_and_only_them() -> None:
    assert detect([V1, TRACES_LINES]).name == "langfuse"
    assert detect([V2_SDK5]).name == "langfuse"
    assert detect([TRACES_PAGE, V2_SDK4]).name == "langfuse"
    others = [
        p
        for p in FIXTURES.glob("*/*")
        if p.parent.name != "langfuse" and p.suffix not in (".py", ".md") and p.is_file()
    ]
    for path in others:
        assert not Langfuse().sniff(first_record(path)), path
    openai_jsonl = {"id": "x", "timestamp": "2026-04-01T00:00:00Z", "tags": [], "request": {"messages": []}}
    assert not Langfuse().sniff(openai_jsonl)


def test_a_traces_file_alone_is_refused(tmp_path: Path, shipped_catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="holds no generations"):
        run_import([TRACES_LINES], tmp_path / "logs", "p", shipped_catalog)
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.parquet"))


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_bad_records_are_refused_with_file_line_and_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    good = v1_by_name("answer")
    bad_usage = {**good, "id": "bad-usage", "usageDetails": {**good["usageDetails"], "input": "lots"}}
    no_start = {k: v for k, v in {**v1_by_name("summarise-ticket"), "id": "no-start"}.items() if k != "startTime"}
    no_model = {**v1_by_name("OpenAI-generation"), "id": "no-model", "model": None}
    src = write_lines(tmp_path / "obs.jsonl", [good, bad_usage, no_start, no_model])
    report = run_import([src], tmp_path / "logs", "p", shipped_catalog)
    assert (report.records_read, report.rows_written, report.refused) == (4, 1, 3)
    places = {r.field: r.first for r in report.refusals}
    assert places == {
        "usageDetails.input": [f"{src}:2"],
        "startTime": [f"{src}:3"],
        "model": [f"{src}:4"],
    }


def test_strict_refuses_the_whole_import(tmp_path: Path, shipped_catalog: Catalog) -> None:
    good = v1_by_name("answer")
    bad = {**good, "id": "bad", "startTime": "yesterday"}
    src = write_lines(tmp_path / "obs.jsonl", [good, bad])
    with pytest.raises(ConfigError, match=r"obs\.jsonl: line 2: startTime"):
        run_import([src], tmp_path / "logs", "p", shipped_catalog, strict=True)
    assert not list((tmp_path / "logs").rglob("*.parquet"))


def test_reimport_adds_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    first = run_import([V1, TRACES_LINES], tmp_path / "logs", "p", shipped_catalog)
    again = run_import([V1, TRACES_LINES], tmp_path / "logs", "p", shipped_catalog)
    assert (first.rows_written, again.rows_written, again.duplicates_skipped) == (4, 0, 4)
    assert len(rows_of(tmp_path / "logs")) == 4
