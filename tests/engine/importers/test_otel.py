"""The ``otel`` format: OpenTelemetry GenAI spans in OTLP/JSON (fixtures made by the real
instrumentations, see fixtures/otel/NOTE.md), with their companion OTLP logs files."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.importers import detect, run_import
from engine.importers._base import Refusal, Row, Source, first_record
from engine.importers.otel import Otel, _Tally, any_value, otlp_id, parts_messages
from engine.logs import partition_files
from engine.pricing import Catalog

FIXTURES = Path(__file__).parent / "fixtures" / "otel"
SPANS = FIXTURES / "openai_v2_spans.traces.jsonl"
EVENTS = FIXTURES / "openai_v2_events.traces.jsonl"
EVENTS_LOGS = FIXTURES / "openai_v2_events.logs.jsonl"
LEGACY = FIXTURES / "openai_v2_legacy.traces.jsonl"
LEGACY_LOGS = FIXTURES / "openai_v2_legacy.logs.jsonl"
OPENLLMETRY = FIXTURES / "openllmetry.traces.jsonl"
OPENLLMETRY_LEGACY = FIXTURES / "openllmetry_legacy.traces.jsonl"
COLLECTOR = FIXTURES / "collector_example.traces.jsonl"
COLLECTOR_LOGS = FIXTURES / "collector_example.logs.jsonl"


def spans_of(path: Path) -> list[dict[str, Any]]:
    """Every span of a fixture with its line and decoded attributes (to read ids and times from)."""
    out = []
    for line, raw in enumerate(path.read_text().splitlines(), start=1):
        for rs in json.loads(raw)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: any_value(a["value"]) for a in span.get("attributes", [])}
                    out.append({"line": line, "span": span, "attrs": attrs})
    return out


def span_where(path: Path, **attrs: Any) -> dict[str, Any]:
    found = [s for s in spans_of(path) if all(s["attrs"].get(k.replace("__", ".")) == v for k, v in attrs.items())]
    assert len(found) == 1, found
    return found[0]


def imported(tmp_path: Path, catalog: Catalog, *files: Path, **kwargs: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    report = run_import(list(files), tmp_path / "logs", "p", catalog, **kwargs)
    frame = pl.read_parquet(partition_files(str(tmp_path / "logs"), "p"))
    return report, {r["request_id"]: r for r in frame.to_dicts()}


def failed_ids(path: Path) -> dict[str, str]:
    """request id of each failed call (no gen_ai.response.id: traceId-spanId), by its prompt."""
    out = {}
    for s in spans_of(path):
        status = s["span"].get("status", {})
        if status.get("code") == 2:
            prompt = "429" if "429" in status["message"] else "400"
            out[prompt] = f"{s['span']['traceId']}-{s['span']['spanId']}"
    return out


def messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt of a row, its tool calls' arguments parsed (their JSON spacing differs by producer)."""
    out = json.loads(row["request_json"])["messages"]
    for message in out:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out


def test_current_conventions_on_span_attributes(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report, rows = imported(tmp_path, shipped_catalog, SPANS)
    assert (report.format, report.records_read, report.rows_written, report.refused) == ("otel", 12, 6, 0)
    assert "skipped 6 spans that are not GenAI inference calls (5 without GenAI attributes, 1 embeddings)" in (
        report.notes
    )
    ok = rows["chatcmpl-loopback0001"]
    raw = span_where(SPANS, gen_ai__response__id="chatcmpl-loopback0001")["span"]
    start, end = int(raw["startTimeUnixNano"]), int(raw["endTimeUnixNano"])
    assert abs(ok["timestamp"] - dt.datetime.fromtimestamp(start / 1e9, dt.UTC)) < dt.timedelta(milliseconds=1)
    assert ok["latency_ms"] == pytest.approx((end - start) / 1e6)
    assert (ok["model"], ok["provider"], ok["status"], ok["error_type"]) == ("gpt-4o-mini", "openai", "ok", None)
    assert (ok["input_tokens"], ok["output_tokens"], ok["cached_input_tokens"]) == (1536, 12, 0)
    assert ok["end_user_id"] == "user-42"
    assert ok["tags"] == ["service.name:support-bot", "deployment.environment.name:staging"]
    assert ok["routing_config_version"] is None
    assert json.loads(ok["request_json"]) == {
        "messages": [
            {"role": "system", "content": "You are a terse geography tutor."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 64,
        "seed": 7,
    }
    assert ok["response_text"] == "The capital of France is Paris."
    # OTel carries no cost: priced from the catalog.
    price = shipped_catalog.rates("gpt-4o-mini")
    assert price is not None
    assert ok["cost_usd"] == pytest.approx((1536 * price.input_per_mtok + 12 * price.output_per_mtok) / 1e6)
    # The tool round trip: tool_call parts → tool_calls, tool_call_response → a tool message.
    call = {
        "id": "call_loopback_weather",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
    }
    assert json.loads(rows["chatcmpl-loopback0002"]["response_text"]) == [call]
    assert json.loads(rows["chatcmpl-loopback0003"]["request_json"])["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_loopback_weather", "content": "rainy, 57°F"},
    ]
    # Failures: no response id, so the span names the row; error types from error.type and the status.
    ids = failed_ids(SPANS)
    limited, too_long = rows[ids["429"]], rows[ids["400"]]
    assert (limited["status"], limited["error_type"], limited["response_text"]) == ("error", "rate_limit", None)
    assert (too_long["error_type"], too_long["end_user_id"], limited["end_user_id"]) == (
        "context_length",
        "user-42",
        None,
    )
    assert json.loads(limited["request_json"])["messages"] == [{"role": "user", "content": "Summarise this [429]"}]
    assert (limited["cost_usd"], limited["input_tokens"]) == (0, 0)
    # Anthropic with prompt caching (cache reads in cached_input_tokens, writes priced as such).
    cached = rows["msg_01LoopbackCache"]
    assert (cached["model"], cached["provider"]) == ("claude-sonnet-4-5-20250929", "anthropic")
    assert (cached["input_tokens"], cached["cached_input_tokens"], cached["output_tokens"]) == (2100, 1800, 40)
    assert json.loads(cached["request_json"])["messages"][0] == {
        "role": "system",
        "content": "You answer from the attached handbook.",
    }
    assert report.cost_missing == 4


def test_content_in_log_events_is_joined_by_trace_and_span_id(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report, rows = imported(tmp_path, shipped_catalog, EVENTS, EVENTS_LOGS)
    _, on_spans = imported(tmp_path / "spans", shipped_catalog, SPANS)
    assert report.rows_written == 6 and not any("no prompt" in n for n in report.notes)
    for rid in ("chatcmpl-loopback0001", "chatcmpl-loopback0002", "chatcmpl-loopback0003", "msg_01LoopbackCache"):
        assert rows[rid]["request_json"] == on_spans[rid]["request_json"]
        assert rows[rid]["response_text"] == on_spans[rid]["response_text"]
    assert json.loads(rows[failed_ids(EVENTS)["400"]]["request_json"])["messages"][0]["content"] == (
        "A very long document [400]"
    )
    # Without the logs file the spans carry no content: rows without a prompt, and a note.
    alone, rows = imported(tmp_path / "alone", shipped_catalog, EVENTS)
    assert alone.rows_written == 6 and all(r["request_json"] is None for r in rows.values())
    assert rows["chatcmpl-loopback0001"]["response_text"] is None
    assert any(n.startswith("6 rows carry no prompt") for n in alone.notes)


def test_older_conventions_with_deprecated_message_events(tmp_path: Path, shipped_catalog: Catalog) -> None:
    report, rows = imported(tmp_path, shipped_catalog, LEGACY, LEGACY_LOGS)
    assert report.rows_written == 5
    ok = rows["chatcmpl-loopback0001"]
    assert (ok["provider"], ok["input_tokens"], ok["output_tokens"]) == ("openai", 1536, 12)
    body = json.loads(ok["request_json"])
    assert body["messages"] == [
        {"role": "system", "content": "You are a terse geography tutor."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert body["seed"] == 7  # gen_ai.openai.request.seed
    assert ok["response_text"] == "The capital of France is Paris."
    assert json.loads(rows["chatcmpl-loopback0003"]["request_json"])["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_loopback_weather",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "rainy, 57°F", "tool_call_id": "call_loopback_weather"},
    ]
    assert json.loads(rows["chatcmpl-loopback0002"]["response_text"])[0]["function"]["name"] == "get_weather"
    ids = failed_ids(LEGACY)
    assert (rows[ids["429"]]["error_type"], rows[ids["400"]]["error_type"]) == ("rate_limit", "context_length")


def test_openllmetry_current_and_flattened_legacy(tmp_path: Path, shipped_catalog: Catalog) -> None:
    _, rows = imported(tmp_path, shipped_catalog, OPENLLMETRY)
    ok = rows["chatcmpl-loopback0001"]
    assert (ok["input_tokens"], ok["cached_input_tokens"]) == (1536, 1024)
    price = shipped_catalog.rates("gpt-4o-mini")
    assert price is not None
    expected = (512 * price.input_per_mtok + 1024 * price.cached_rate + 12 * price.output_per_mtok) / 1e6
    assert ok["cost_usd"] == pytest.approx(expected)
    tools = json.loads(rows["chatcmpl-loopback0002"]["request_json"])["tools"]
    assert tools[0]["function"]["name"] == "get_weather" and tools[0]["type"] == "function"

    legacy, old = imported(tmp_path / "legacy", shipped_catalog, OPENLLMETRY_LEGACY)
    assert "skipped 6 spans that are not GenAI inference calls (5 without GenAI attributes, 1 embedding)" in (
        legacy.notes
    )
    assert legacy.rows_written == 5
    for rid in ("chatcmpl-loopback0001", "chatcmpl-loopback0003"):
        # the same prompt; only the arguments' JSON spacing differs (the older names keep the string as sent)
        assert messages(old[rid]) == messages(rows[rid])
        assert old[rid]["response_text"] == rows[rid]["response_text"]
    assert (old["chatcmpl-loopback0001"]["cached_input_tokens"], old["chatcmpl-loopback0001"]["end_user_id"]) == (
        1024,
        "user-42",
    )
    assert json.loads(old["chatcmpl-loopback0002"]["request_json"])["tools"] == tools
    assert rows[failed_ids(OPENLLMETRY)["429"]]["error_type"] == "rate_limit"
    assert old[failed_ids(OPENLLMETRY_LEGACY)["400"]]["error_type"] == "context_length"


def test_the_collectors_own_output_is_read_and_its_spans_skipped(tmp_path: Path, shipped_catalog: Catalog) -> None:
    source = Source([COLLECTOR, COLLECTOR_LOGS])
    assert list(Otel().rows(source)) == []
    assert source.notes == ["skipped 8 spans that are not GenAI inference calls (8 without GenAI attributes)"]
    with pytest.raises(ConfigError, match="no records"):
        run_import([COLLECTOR], tmp_path / "logs", "p", shipped_catalog)
    report, _ = imported(tmp_path, shipped_catalog, COLLECTOR, SPANS, COLLECTOR_LOGS)
    assert report.format == "otel" and report.rows_written == 6
    assert any(n.startswith("skipped 14 spans") for n in report.notes)


def test_sniffing(tmp_path: Path) -> None:
    otel = Otel()
    for path in FIXTURES.glob("*.jsonl"):
        assert detect([path]).name == "otel", path
    assert detect([EVENTS, EVENTS_LOGS]).name == "otel"
    assert otel.sniff(json.loads('{"resourceSpans":[]}')) and otel.sniff({"resourceLogs": [{"scopeLogs": []}]})
    for other in ({"resourceSpans": "x"}, {"resourceMetrics": []}, {"request": {"messages": []}}, [], None):
        assert not otel.sniff(other)
    # The other formats' files are not claimed.
    others = [
        p for p in FIXTURES.parent.glob("*/*") if p.parent.name != "otel" and p.suffix in (".json", ".jsonl", ".csv")
    ]
    for path in others:
        assert not otel.sniff(first_record(path)), path


def with_span_change(src: Path, dst: Path, response_id: str, key: str, value: dict[str, Any]) -> tuple[Path, int]:
    """A copy of ``src`` where one span's attribute ``key`` has another AnyValue; the line it is on."""
    lines = src.read_text().splitlines()
    for number, raw in enumerate(lines, start=1):
        request = json.loads(raw)
        for rs in request["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = span.get("attributes", [])
                    if {"key": "gen_ai.response.id", "value": {"stringValue": response_id}} in attrs:
                        for a in attrs:
                            if a["key"] == key:
                                a["value"] = value
                        lines[number - 1] = json.dumps(request)
                        dst.write_text("\n".join(lines) + "\n")
                        return dst, number
    raise AssertionError(response_id)


def test_a_malformed_span_is_refused_with_file_line_and_field(tmp_path: Path, shipped_catalog: Catalog) -> None:
    bad, line = with_span_change(
        SPANS, tmp_path / "bad.jsonl", "chatcmpl-loopback0003", "gen_ai.usage.input_tokens", {"stringValue": "lots"}
    )
    with bad.open("a") as fh:
        fh.write('{"resourceMetrics": []}\n')
    report, rows = imported(tmp_path, shipped_catalog, bad)
    assert (report.rows_written, report.refused) == (5, 2)
    refusals = {r.field: r for r in report.refusals}
    assert refusals["spans[].attributes[gen_ai.usage.input_tokens]"].first == [f"{bad}:{line}"]
    assert "'lots'" in refusals["spans[].attributes[gen_ai.usage.input_tokens]"].reason
    assert refusals["resourceSpans"].first == [f"{bad}:{len(SPANS.read_text().splitlines()) + 1}"]
    assert "chatcmpl-loopback0003" not in rows
    # --strict: the first refusal stops the import and nothing is written.
    with pytest.raises(ConfigError, match=rf"line {line}: spans\[\]\.attributes\[gen_ai\.usage\.input_tokens\]"):
        run_import([bad], tmp_path / "strict", "p", shipped_catalog, strict=True)
    assert not (tmp_path / "strict").exists() or not list((tmp_path / "strict").rglob("*.parquet"))


def test_reimport_adds_nothing(tmp_path: Path, shipped_catalog: Catalog) -> None:
    first, _ = imported(tmp_path, shipped_catalog, SPANS)
    again = run_import([SPANS], tmp_path / "logs", "p", shipped_catalog)
    assert (first.rows_written, again.rows_written, again.duplicates_skipped) == (6, 0, 6)


def one_row(span: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return Otel().row(span, resource or {}, {}, _Tally())


def base_span(**attrs: Any) -> dict[str, Any]:
    values = {
        "gen_ai.operation.name": {"stringValue": "chat"},
        "gen_ai.request.model": {"stringValue": "gpt-4o"},
        **attrs,
    }
    return {
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "startTimeUnixNano": "1775052000000000000",
        "endTimeUnixNano": 1775052000250000000,  # numbers are accepted too
        "attributes": [{"key": k, "value": v} for k, v in values.items()],
    }


def test_providers_error_types_ids_and_attribute_values() -> None:
    s = {"stringValue": ""}
    for system, provider in [
        ("az.ai.openai", "azure"),
        ("azure.ai.openai", "azure"),
        ("gcp.vertex_ai", "vertex_ai"),
        ("gcp.gemini", "google"),
        ("aws.bedrock", "bedrock"),
        ("mistral_ai", "mistral"),
        ("some.new.vendor", "some.new.vendor"),
    ]:
        row = one_row(base_span(**{"gen_ai.system": dict(s, stringValue=system)}))
        assert row is not None and row["provider"] == provider
    row = one_row(base_span(**{"gen_ai.request.model": {"stringValue": "claude-haiku-4-5"}}))
    assert row is not None and row["provider"] == "anthropic"  # no provider attribute: from the model
    assert row["request_id"] == "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174"
    assert row["latency_ms"] == pytest.approx(250.0)
    failed = base_span(**{"error.type": {"stringValue": "500"}})
    failed["status"] = {"code": 2, "message": "boom"}
    row = one_row(failed)
    assert row is not None and (row["status"], row["error_type"]) == ("error", "server_error")
    timeout = base_span(**{"error.type": {"stringValue": "APITimeoutError"}})
    row = one_row(timeout)
    assert row is not None and (row["status"], row["error_type"]) == ("error", "timeout")
    # Cached tokens reported outside input_tokens (not as semconv says) are added to it.
    tally = _Tally()
    outside = base_span(
        **{"gen_ai.usage.input_tokens": {"intValue": "10"}, "gen_ai.usage.cache_read_input_tokens": {"intValue": 90}}
    )
    row = Otel().row(outside, {"enduser.id": "u1"}, {}, tally)
    assert row is not None and (row["input_tokens"], row["cached_input_tokens"], tally.cache_outside_input) == (
        100,
        90,
        1,
    )
    assert row["end_user_id"] == "u1"
    assert one_row(base_span(**{"gen_ai.operation.name": {"stringValue": "invoke_agent"}})) is None
    # AnyValue and ids as the OTLP/JSON spec writes them.
    assert any_value({"doubleValue": "NaN"}) != any_value({"doubleValue": "NaN"})  # a float NaN
    assert any_value({"boolValue": True}) is True and any_value({"intValue": 7}) == 7
    assert any_value(
        {"kvlistValue": {"values": [{"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}]}}
    ) == {"a": [1]}
    assert otlp_id("W47/95gDgQPSabYzgT/GDA==") == "5b8efff798038103d269b633813fc60c"  # base64 → hex
    assert otlp_id("EEE19B7EC3C1B174") == "eee19b7ec3c1b174"


def test_parts_to_openai_messages() -> None:
    assert parts_messages(
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is this?"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
                {"type": "reasoning", "content": "dropped"},
            ],
        }
    ) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        }
    ]
    # The registry's example spells the tool result ``result``; the schema ``response``.
    assert parts_messages(
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": {"t": 1}}]}
    ) == [{"role": "tool", "tool_call_id": "c1", "content": '{"t":1}'}]
    assert parts_messages(
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}}]}
    ) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}],
        }
    ]


def test_rows_are_streamed_per_line() -> None:
    items = list(Otel().rows(Source([SPANS])))
    assert all(isinstance(i, Row) for i in items) and not any(isinstance(i, Refusal) for i in items)
    lines = [i.line for i in items if isinstance(i, Row)]
    assert lines == sorted(lines) and lines[0] == 1
    cached = next(i for i in items if isinstance(i, Row) and i.values["request_id"] == "msg_01LoopbackCache")
    assert cached.cache_write_tokens == 250 and not cached.batch
