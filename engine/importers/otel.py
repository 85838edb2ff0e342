"""``otel``: OpenTelemetry GenAI spans in OTLP/JSON, as the Collector's ``file`` exporter writes them.

A traces file holds one ``ExportTraceServiceRequest`` per line (``resourceSpans → scopeSpans →
spans``); a logs file given with it (``resourceLogs → scopeLogs → logRecords``) may carry the
prompts and answers as GenAI events, joined to their span by ``traceId`` + ``spanId``. Each file is
told apart by its content. Every span that is a GenAI inference call (``gen_ai.operation.name`` of
``chat``, ``text_completion`` or ``generate_content``, or, in the older conventions without it, a
span with ``gen_ai.system`` and ``gen_ai.request.model`` whose ``llm.request.type``, if any, is
``chat`` or ``completion``) becomes one row; other spans (the application's own, embeddings, tool
and agent spans) are skipped and counted in a note.

Where the mapping comes from:

- OTLP/JSON: ``docs/specification.md`` ("JSON Protobuf Encoding") and
  ``opentelemetry/proto/{trace,logs,common}/v1/*.proto`` in ``open-telemetry/opentelemetry-proto``:
  lowerCamelCase keys, hex ``traceId``/``spanId`` (case-insensitive), 64-bit integers as decimal
  strings (numbers accepted), enums as integers (``status.code`` 2 = error), attributes as
  ``[{"key", "value": AnyValue}]``; the log record's event name is ``eventName`` (older SDKs: the
  ``event.name`` attribute).
- GenAI attributes: ``model/gen-ai/registry.yaml``, ``model/gen-ai/spans.yaml``,
  ``model/gen-ai/events.yaml``, ``model/gen-ai/deprecated/*.yaml``, ``docs/gen-ai/gen-ai-spans.md``
  and the JSON schemas ``docs/gen-ai/gen-ai-{input,output}-messages.json`` and
  ``gen-ai-system-instructions.json`` in ``open-telemetry/semantic-conventions`` (the last tree
  before they moved to ``semantic-conventions-genai``, commit c9e48b1d1^):
  ``gen_ai.provider.name`` (formerly ``gen_ai.system``), ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.response.id``, ``gen_ai.usage.input_tokens`` (formerly
  ``prompt_tokens``; it includes cached tokens), ``gen_ai.usage.output_tokens`` (formerly
  ``completion_tokens``), ``gen_ai.usage.cache_read.input_tokens``,
  ``gen_ai.usage.cache_creation.input_tokens``, ``error.type``, ``gen_ai.input.messages`` /
  ``gen_ai.output.messages`` / ``gen_ai.system_instructions`` (a JSON string on spans, structured
  on events) and the events ``gen_ai.client.inference.operation.details`` (current) and
  ``gen_ai.{system,user,assistant,tool}.message`` / ``gen_ai.choice`` (deprecated).
- Names the producers write besides: ``gen_ai.usage.cache_write.input_tokens``
  (``opentelemetry-util-genai`` ≥ 1.3 in ``open-telemetry/opentelemetry-python-contrib``),
  ``gen_ai.openai.request.seed`` (openai-v2 ≤ 2.1), and OpenLLMetry's (``traceloop/openllmetry``,
  ``opentelemetry-semantic-conventions-ai``): ``gen_ai.prompt.{i}.role/content/tool_call_id``,
  ``gen_ai.prompt.{i}.tool_calls.{j}.id/name/arguments``, ``gen_ai.completion.{i}.*``,
  ``gen_ai.usage.cache_read_input_tokens``, ``gen_ai.usage.cache_creation_input_tokens``,
  ``llm.request.type``, ``llm.request.functions.{i}.*``, ``llm.user``.
- The end user: ``user.id`` (``model/user/registry.yaml``), ``enduser.id``
  (``model/enduser/registry.yaml``), ``llm.user``, ``traceloop.association.properties.user_id``.

OTLP carries no cost: ``cost_usd`` is left unknown and the import prices every row from the catalog.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engine.importers import register
from engine.importers._base import (
    RecordError,
    Refusal,
    Row,
    Source,
    chat_body,
    compact,
    error_type,
    first_record,
    message_text,
    provider_from_model,
    records,
    timestamp,
    tokens,
)

#: Operations that are one model call (``gen_ai.operation.name``).
INFERENCE = frozenset({"chat", "text_completion", "generate_content"})
#: OpenLLMetry's ``llm.request.type`` values that are one model call.
LEGACY_INFERENCE = frozenset({"chat", "completion"})

#: ``gen_ai.provider.name`` / ``gen_ai.system`` values (current and deprecated) → our provider names.
PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure_ai",
    "az.ai.inference": "azure_ai",
    "aws.bedrock": "bedrock",
    "gcp.vertex_ai": "vertex_ai",
    "vertex_ai": "vertex_ai",
    "gcp.gemini": "google",
    "gemini": "google",
    "gcp.gen_ai": "google",
    "cohere": "cohere",
    "ibm.watsonx.ai": "watsonx",
    "mistral_ai": "mistral",
    "x_ai": "xai",
    "xai": "xai",
    "deepseek": "deepseek",
    "groq": "groq",
    "perplexity": "perplexity",
}

_USER_KEYS = ("user.id", "enduser.id", "llm.user", "traceloop.association.properties.user_id")
_TAG_KEYS = ("service.name", "deployment.environment.name", "deployment.environment")
_INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHE_READ_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
_CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
#: ``gen_ai.request.*`` attributes → OpenAI chat request parameters.
_PARAMS = (
    ("temperature", ("gen_ai.request.temperature",)),
    ("top_p", ("gen_ai.request.top_p",)),
    ("max_tokens", ("gen_ai.request.max_tokens",)),
    ("presence_penalty", ("gen_ai.request.presence_penalty",)),
    ("frequency_penalty", ("gen_ai.request.frequency_penalty",)),
    ("seed", ("gen_ai.request.seed", "gen_ai.openai.request.seed")),
    ("stop", ("gen_ai.request.stop_sequences",)),
    ("n", ("gen_ai.request.choice.count",)),
)
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_MESSAGE_EVENT = re.compile(r"^gen_ai\.(system|user|assistant|tool)\.message$")
_PROMPT_KEY = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_FUNCTION_KEY = re.compile(r"^llm\.request\.functions\.(\d+)\.(name|description|parameters)$")
_TOOL_CALL_KEY = re.compile(r"^tool_calls\.(\d+)\.(id|name|arguments|type)$")
_HTTP_CODE = re.compile(r"\b(?:Error code|status(?: code)?|HTTP)[: ]+([45]\d\d)\b", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-fA-F]+$")


# -- OTLP/JSON ----------------------------------------------------------------------------------------


def any_value(value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue`` (``{"stringValue": …}``, ``{"intValue": "5"}``, …)."""
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        raw = value["intValue"]
        try:
            return int(raw)
        except (TypeError, ValueError):
            return raw
    if "doubleValue" in value:
        raw = value["doubleValue"]
        try:
            return float(raw)
        except (TypeError, ValueError):
            return raw
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values"), "kvlistValue")
    if "bytesValue" in value:
        return value["bytesValue"]  # base64, as the JSON mapping writes bytes
    return None


def attributes(items: Any, where: str) -> dict[str, Any]:
    """``[{"key": k, "value": AnyValue}, …]`` as a dict (a later duplicate key wins)."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise RecordError(where, "attributes are not a list of key/value pairs")
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def otlp_id(value: Any) -> str:
    """A trace or span id as lowercase hex; base64 (the plain protobuf JSON mapping) is converted."""
    if not isinstance(value, str) or not value:
        return ""
    if _HEX.match(value) and len(value) in (16, 32):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except ValueError:
        return value.lower()


def _nanos(value: Any, field: str) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise RecordError(field, f"{value!r} is not a time in unix nanoseconds") from None
    if out < 0:
        raise RecordError(field, f"{value!r} is not a time in unix nanoseconds")
    return out


# -- GenAI content → an OpenAI chat body ------------------------------------------------------------


def _json_or_value(value: Any) -> Any:
    """Span attributes carry messages as a JSON string; events carry them structured."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else compact(value if value is not None else {})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else compact(value)


def parts_messages(message: Any) -> list[dict[str, Any]]:
    """One GenAI message (``{"role", "parts": [...]}``) as OpenAI chat messages.

    Text parts → content, ``tool_call`` parts → ``tool_calls``, ``tool_call_response`` parts →
    ``role: tool`` messages, image ``uri``/``blob`` parts → ``image_url`` parts; reasoning and other
    parts are dropped.
    """
    if not isinstance(message, dict):
        return []
    role = str(message.get("role") or "user")
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in message.get("parts") or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            content.append({"type": "text", "text": _text(part.get("content", ""))})
        elif kind == "tool_call":
            call = {
                "type": "function",
                "function": {"name": part.get("name") or "", "arguments": _arguments(part.get("arguments"))},
            }
            calls.append({"id": part.get("id"), **call} if part.get("id") else call)
        elif kind == "tool_call_response":
            # the schema names the field ``response``; the registry's example says ``result``
            reply = part.get("response", part.get("result"))
            results.append({"role": "tool", "tool_call_id": part.get("id"), "content": _text(reply)})
        elif kind in ("uri", "blob") and part.get("modality") == "image":
            url = (
                part.get("uri")
                if kind == "uri"
                else f"data:{part.get('mime_type') or 'image/png'};base64,{part.get('content')}"
            )
            content.append({"type": "image_url", "image_url": {"url": url}})
    out = list(results)
    if content or calls or not results:
        body: dict[str, Any] = {"role": role, "content": _content(content)}
        if calls:
            body["tool_calls"] = calls
        if message.get("name"):
            body["name"] = message["name"]
        if role != "tool" or not results:
            out.append(body)
    return out


def _content(parts: list[dict[str, Any]]) -> Any:
    if not parts:
        return None
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _system_message(instructions: Any) -> dict[str, Any] | None:
    """``gen_ai.system_instructions`` (a list of parts) as one system message."""
    instructions = _json_or_value(instructions)
    if isinstance(instructions, str):
        return {"role": "system", "content": instructions}
    if not isinstance(instructions, list):
        return None
    texts = [_text(p.get("content", "")) for p in instructions if isinstance(p, dict) and p.get("type") == "text"]
    return {"role": "system", "content": "\n".join(texts)} if texts else None


def genai_messages(value: Any, system: Any, field: str) -> list[dict[str, Any]] | None:
    """``gen_ai.input.messages`` (+ ``gen_ai.system_instructions``) as OpenAI messages."""
    value = _json_or_value(value)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(field, "is not a list of GenAI messages (JSON or structured)")
    out: list[dict[str, Any]] = []
    first = _system_message(system) if system is not None else None
    if first is not None:
        out.append(first)
    for message in value:
        if not isinstance(message, dict) or "role" not in message:
            raise RecordError(field, "holds a message without a role")
        out += parts_messages(message)
    return out


def _flat(attrs: dict[str, Any], kind: str) -> dict[int, dict[str, Any]]:
    """OpenLLMetry's flattened ``gen_ai.prompt.{i}.*`` / ``gen_ai.completion.{i}.*`` by index."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _PROMPT_KEY.match(key)
        if match and match.group(1) == kind:
            out.setdefault(int(match.group(2)), {})[match.group(3)] = value
    return dict(sorted(out.items()))


def flat_message(fields: dict[str, Any]) -> dict[str, Any]:
    """One flattened OpenLLMetry message as an OpenAI chat message."""
    message: dict[str, Any] = {"role": str(fields.get("role") or "user")}
    content = fields.get("content")
    if isinstance(content, str) and content.startswith("[{"):
        parsed = _json_or_value(content)  # list content is written as JSON
        if isinstance(parsed, list) and all(isinstance(p, dict) and "type" in p for p in parsed):
            content = parsed
    message["content"] = content
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        match = _TOOL_CALL_KEY.match(key)
        if match:
            calls.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if calls:
        message["tool_calls"] = [
            {
                **({"id": c["id"]} if c.get("id") else {}),
                "type": "function",
                "function": {"name": c.get("name") or "", "arguments": _arguments(c.get("arguments"))},
            }
            for _, c in sorted(calls.items())
        ]
    if fields.get("tool_call_id"):
        message["tool_call_id"] = fields["tool_call_id"]
    return message


def _tools(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``gen_ai.tool.definitions`` (or OpenLLMetry's ``llm.request.functions.{i}.*``) as OpenAI tools."""
    defined = _json_or_value(attrs.get("gen_ai.tool.definitions"))
    if isinstance(defined, list):
        tools = []
        for tool in defined:
            if isinstance(tool, dict) and tool.get("name"):
                function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
                tools.append({"type": "function", "function": function})
        return tools or None
    functions: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _FUNCTION_KEY.match(key)
        if match:
            functions.setdefault(int(match.group(1)), {})[match.group(2)] = (
                _json_or_value(value) if match.group(2) == "parameters" else value
            )
    return [{"type": "function", "function": f} for _, f in sorted(functions.items())] or None


# -- the GenAI events of a logs file ------------------------------------------------------------------


@dataclass
class Events:
    """The GenAI events of one span, in the order they were emitted."""

    details: dict[str, Any] | None = None
    messages: list[tuple[int, int, str, Any]] = field(default_factory=list)
    choices: list[tuple[int, Any]] = field(default_factory=list)

    def input_messages(self) -> list[dict[str, Any]] | None:
        """The prompt the events carry, as OpenAI messages."""
        if self.details is not None:
            found = genai_messages(
                self.details.get("gen_ai.input.messages"),
                self.details.get("gen_ai.system_instructions"),
                f"logRecords[{_DETAILS_EVENT}].attributes[gen_ai.input.messages]",
            )
            if found is not None:
                return found
        if not self.messages:
            return None
        out = []
        for _, _, role, body in sorted(self.messages, key=lambda m: (m[0], m[1])):
            out.append(_event_message(role, body))
        return out

    def output_message(self) -> dict[str, Any] | None:
        """The first answer the events carry, as an OpenAI message."""
        if self.details is not None:
            outputs = _json_or_value(self.details.get("gen_ai.output.messages"))
            if isinstance(outputs, list) and outputs:
                messages = parts_messages(outputs[0])
                return messages[-1] if messages else None
        if not self.choices:
            return None
        _, body = min(self.choices, key=lambda c: c[0])
        if not isinstance(body, dict):
            return None
        found = body.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        calls = message.get("tool_calls") or body.get("tool_calls")
        return _event_message("assistant", {**message, **({"tool_calls": calls} if calls else {})})


def _event_message(role: str, body: Any) -> dict[str, Any]:
    """A deprecated ``gen_ai.{role}.message`` / ``gen_ai.choice`` body as an OpenAI message."""
    body = body if isinstance(body, dict) else {"content": body}
    message: dict[str, Any] = {"role": str(body.get("role") or role), "content": body.get("content")}
    if isinstance(body.get("tool_calls"), list):
        message["tool_calls"] = [
            {
                **({"id": c["id"]} if c.get("id") else {}),
                "type": c.get("type") or "function",
                "function": {
                    "name": (c.get("function") or {}).get("name") or "",
                    "arguments": _arguments((c.get("function") or {}).get("arguments")),
                },
            }
            for c in body["tool_calls"]
            if isinstance(c, dict)
        ]
    if role == "tool" and body.get("id"):
        message["tool_call_id"] = body["id"]
    return message


def read_events(path: Path, into: dict[tuple[str, str], Events]) -> int:
    """Keep the GenAI events of an OTLP logs file, by (trace id, span id); return how many had no span."""
    orphans = 0
    seq = 0
    for _, record in records(path):
        for resource in _list(record, "resourceLogs"):
            for scope in _list(resource, "scopeLogs"):
                for log in _list(scope, "logRecords"):
                    try:
                        attrs = attributes(log.get("attributes"), "logRecords[].attributes")
                    except RecordError:
                        continue
                    name = log.get("eventName") or attrs.get("event.name") or ""
                    if not isinstance(name, str) or not name.startswith("gen_ai."):
                        continue
                    key = (otlp_id(log.get("traceId")), otlp_id(log.get("spanId")))
                    if not key[0] or not key[1]:
                        orphans += 1
                        continue
                    events = into.setdefault(key, Events())
                    body = any_value(log.get("body"))
                    when = _nanos_or_zero(log.get("timeUnixNano") or log.get("observedTimeUnixNano"))
                    seq += 1
                    if name == _DETAILS_EVENT:
                        events.details = {**attrs, **(body if isinstance(body, dict) else {})}
                    elif name == "gen_ai.choice":
                        index = body.get("index") if isinstance(body, dict) else None
                        events.choices.append((index if isinstance(index, int) else 0, body))
                    elif match := _MESSAGE_EVENT.match(name):
                        events.messages.append((when, seq, match.group(1), body))
    return orphans


def _nanos_or_zero(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _list(node: Any, key: str) -> list[dict[str, Any]]:
    items = node.get(key) if isinstance(node, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


# -- the importer -----------------------------------------------------------------------------------


def _is_otlp(first: Any, top: str, scope: str) -> bool:
    items = first.get(top)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return False
    return not items or any(scope in i or "resource" in i for i in items)


@dataclass
class _Tally:
    skipped: Counter[str] = field(default_factory=Counter)
    no_prompt: int = 0
    unknown_provider: int = 0
    cache_outside_input: int = 0
    repeated_ids: int = 0
    matched: set[tuple[str, str]] = field(default_factory=set)
    response_ids: dict[str, str] = field(default_factory=dict)


class Otel:
    """OpenTelemetry GenAI spans (OTLP/JSON), with their GenAI log events when a logs file is given."""

    name: ClassVar[str] = "otel"
    summary: ClassVar[str] = (
        "OpenTelemetry GenAI spans as OTLP/JSON (the Collector's file exporter), plus an optional OTLP logs file"
    )

    def sniff(self, first: Any) -> bool:
        """An OTLP ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` in JSON."""
        return isinstance(first, dict) and (
            _is_otlp(first, "resourceSpans", "scopeSpans") or _is_otlp(first, "resourceLogs", "scopeLogs")
        )

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """A row per GenAI inference span of the traces files, their logs files' events joined in."""
        traces: list[Path] = []
        events: dict[tuple[str, str], Events] = {}
        orphans = 0
        for path in source.files:
            first = first_record(path)
            if isinstance(first, dict) and "resourceLogs" in first:
                orphans += read_events(path, events)
            else:
                traces.append(path)
        tally = _Tally()
        for path in traces:
            for line, record in records(path):
                if not isinstance(record, dict) or not isinstance(record.get("resourceSpans"), list):
                    yield Refusal(str(path), line, "resourceSpans", "not an OTLP ExportTraceServiceRequest")
                    continue
                yield from self._request(path, line, record, events, tally)
        source.skipped += sum(tally.skipped.values())
        self._notes(source, tally, events, orphans)

    def _request(
        self, path: Path, line: int, record: dict[str, Any], events: dict[tuple[str, str], Events], tally: _Tally
    ) -> Iterator[Row | Refusal]:
        for resource_spans in _list(record, "resourceSpans"):
            try:
                resource = attributes((resource_spans.get("resource") or {}).get("attributes"), "resource.attributes")
            except RecordError as exc:
                yield Refusal(str(path), line, exc.field, exc.message)
                continue
            for scope in _list(resource_spans, "scopeSpans"):
                for span in _list(scope, "spans"):
                    try:
                        values = self.row(span, resource, events, tally)
                    except RecordError as exc:
                        yield Refusal(str(path), line, f"spans[].{exc.field}", exc.message)
                        continue
                    if values is not None:
                        yield Row(str(path), line, values, cache_write_tokens=values.pop("_cache_write"))

    def row(
        self, span: dict[str, Any], resource: dict[str, Any], events: dict[tuple[str, str], Events], tally: _Tally
    ) -> dict[str, Any] | None:
        """The log columns of one span (plus ``_cache_write``); ``None`` for one that is not inference."""
        attrs = attributes(span.get("attributes"), "attributes")
        skip = not_inference(attrs)
        if skip is not None:
            tally.skipped[skip] += 1
            return None
        system = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")

        trace_id, span_id = otlp_id(span.get("traceId")), otlp_id(span.get("spanId"))
        start = _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano")
        if start is None:
            raise RecordError("startTimeUnixNano", "missing")
        end = _nanos(span.get("endTimeUnixNano"), "endTimeUnixNano")
        if end is not None and end < start:
            raise RecordError("endTimeUnixNano", "the span ends before it starts")
        request_model = attrs.get("gen_ai.request.model")
        model = attrs.get("gen_ai.response.model") or request_model
        if not model:
            raise RecordError(
                "attributes[gen_ai.request.model]", "no model (gen_ai.request.model or gen_ai.response.model)"
            )
        model = str(model)
        request_id = self._request_id(attrs, trace_id, span_id, tally)
        provider = PROVIDERS.get(str(system).lower(), str(system).lower()) if system else provider_from_model(model)
        if not provider:
            tally.unknown_provider += 1
            provider = "unknown"

        input_tokens = _count(attrs, _INPUT_KEYS)
        output_tokens = _count(attrs, _OUTPUT_KEYS)
        cached = _count(attrs, _CACHE_READ_KEYS)
        written = _count(attrs, _CACHE_WRITE_KEYS)
        if cached + written > input_tokens:
            # the producer counted input tokens without the cache (Anthropic's own way), not as semconv says
            tally.cache_outside_input += 1
            input_tokens += cached + written

        found = span.get("status")
        status: dict[str, Any] = found if isinstance(found, dict) else {}
        code = status.get("code")
        failed = code in (2, "2", "STATUS_CODE_ERROR") or bool(attrs.get("error.type"))
        key = (trace_id, span_id)
        span_events = events.get(key)
        if span_events is not None:
            tally.matched.add(key)
        request_json = self._request_json(attrs, span_events, request_model or model)
        if request_json is None:
            tally.no_prompt += 1
        return {
            "request_id": request_id,
            "timestamp": timestamp(start, "startTimeUnixNano"),
            "model": model,
            "provider": provider,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached,
            "latency_ms": (end - start) / 1e6 if end is not None else None,
            "cost_usd": None,
            "status": "error" if failed else "ok",
            "error_type": self._error_type(attrs, status, span) if failed else None,
            "end_user_id": _end_user(attrs, resource),
            "tags": [f"{k}:{resource[k]}" for k in _TAG_KEYS if resource.get(k) not in (None, "")],
            "routing_config_version": None,
            "request_json": request_json,
            "response_text": None if failed else self._response_text(attrs, span_events),
            "_cache_write": written,
        }

    @staticmethod
    def _request_id(attrs: dict[str, Any], trace_id: str, span_id: str, tally: _Tally) -> str:
        """``gen_ai.response.id`` (the completion's id, as other logs name the call), else ``traceId-spanId``."""
        response_id = attrs.get("gen_ai.response.id")
        if response_id not in (None, ""):
            response_id = str(response_id)
            seen = tally.response_ids.setdefault(response_id, span_id)
            if seen != span_id:
                tally.repeated_ids += 1
            return response_id
        if not span_id:
            raise RecordError("spanId", "missing, and no gen_ai.response.id to name the call by")
        return f"{trace_id}-{span_id}"

    @staticmethod
    def _request_json(attrs: dict[str, Any], span_events: Events | None, model: str) -> str | None:
        field = "attributes[gen_ai.input.messages]"
        messages = genai_messages(attrs.get("gen_ai.input.messages"), attrs.get("gen_ai.system_instructions"), field)
        if messages is None:
            flat = _flat(attrs, "prompt")
            if flat:
                field = "attributes[gen_ai.prompt]"
                messages = [flat_message(fields) for fields in flat.values()]
        if messages is None and span_events is not None:
            field = "logRecords"
            messages = span_events.input_messages()
        if not messages:
            return None
        params: dict[str, Any] = {"model": model}
        for name, keys in _PARAMS:
            params[name] = _first(attrs, *keys)
        if attrs.get("gen_ai.request.stream") is True:
            params["stream"] = True
        params["tools"] = _tools(attrs)
        return chat_body(messages, field, **params)

    @staticmethod
    def _response_text(attrs: dict[str, Any], span_events: Events | None) -> str | None:
        outputs = _json_or_value(attrs.get("gen_ai.output.messages"))
        message: dict[str, Any] | None = None
        if isinstance(outputs, list) and outputs:
            converted = parts_messages(outputs[0])
            message = converted[-1] if converted else None
        else:
            flat = _flat(attrs, "completion")
            if flat:
                message = flat_message(next(iter(flat.values())))
            elif span_events is not None:
                message = span_events.output_message()
        return message_text(message) if message is not None else None

    @staticmethod
    def _error_type(attrs: dict[str, Any], status: dict[str, Any], span: dict[str, Any]) -> str:
        """Our taxonomy from ``error.type``, the status message, ``exception`` span events and the HTTP status.

        ``error.type`` is an exception name or a status code; the status is taken from
        ``http.response.status_code`` or, failing that, from a message that quotes it ("Error code: 429").
        """
        kind = str(attrs.get("error.type") or "")
        message = str(status.get("message") or "")
        texts = [kind, message]
        for event in span.get("events") or []:
            if isinstance(event, dict) and event.get("name") == "exception":
                details = attributes(event.get("attributes"), "events[exception].attributes")
                texts += [str(details.get("exception.type") or ""), str(details.get("exception.message") or "")]
        code = attrs.get("http.response.status_code") or attrs.get("http.status_code")
        if code is None and kind.isdigit():
            code = kind
        if code is None:
            quoted = _HTTP_CODE.search(message)
            code = quoted.group(1) if quoted else None
        return error_type(code, " ".join(t for t in texts if t))

    @staticmethod
    def _notes(source: Source, tally: _Tally, events: dict[tuple[str, str], Events], orphans: int) -> None:
        if tally.skipped:
            kinds = ", ".join(f"{n:,} {k}" for k, n in tally.skipped.most_common())
            source.notes.append(
                f"skipped {sum(tally.skipped.values()):,} spans that are not GenAI inference calls ({kinds})"
            )
        if tally.no_prompt:
            source.notes.append(
                f"{tally.no_prompt:,} rows carry no prompt (the instrumentation did not capture message content: "
                "e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, or pass the OTLP logs file with the "
                "traces): they cannot be replayed"
            )
        if tally.unknown_provider:
            source.notes.append(
                f"{tally.unknown_provider:,} rows name no provider (gen_ai.provider.name) and their model implies "
                "none: stored with provider 'unknown'"
            )
        if tally.cache_outside_input:
            source.notes.append(
                f"{tally.cache_outside_input:,} rows counted cached prompt tokens outside gen_ai.usage.input_tokens: "
                "they were added to the prompt tokens"
            )
        if tally.repeated_ids:
            source.notes.append(
                f"{tally.repeated_ids:,} spans repeat the gen_ai.response.id of another span (two instrumentations "
                "of one call, or a server that reuses ids): each id is imported once"
            )
        unmatched = len(set(events) - tally.matched) + orphans
        if unmatched:
            source.notes.append(f"{unmatched:,} spans' GenAI log events match no inference span of the traces files")


def _first(attrs: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if attrs.get(key) is not None:
            return attrs[key]
    return None


def _count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int:
    """A token count from the first of ``keys`` the span has (0 when none)."""
    key = next((k for k in keys if attrs.get(k) is not None), keys[0])
    return tokens(attrs.get(key), f"attributes[{key}]", default=0)


def not_inference(attrs: dict[str, Any]) -> str | None:
    """Why a span is not a GenAI inference call (its operation, or "without GenAI attributes"), else ``None``."""
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None:
        return None if operation in INFERENCE else str(operation)
    system = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    if not (system and attrs.get("gen_ai.request.model")):
        return "without GenAI attributes"
    kind = attrs.get("llm.request.type", "chat")
    return None if kind in LEGACY_INFERENCE else str(kind)


def _end_user(attrs: dict[str, Any], resource: dict[str, Any]) -> str | None:
    for scope in (attrs, resource):
        value = _first(scope, *_USER_KEYS)
        if value not in (None, ""):
            return str(value)
    return None


register(Otel())
