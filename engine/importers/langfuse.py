"""``langfuse``: Langfuse generations as its public API returns them, with an optional traces export.

The main files hold observations: pages of ``GET /api/public/observations?type=GENERATION`` (the v1 shape)
or ``GET /api/public/v2/observations?type=GENERATION&fields=…`` (the v2 shape), saved as the JSON page
(``{"data": [...], "meta": {...}}``), as JSON lines of such pages (one page a line), or as JSON lines of
observations (one a line). Observations that are not
``GENERATION`` (spans, events, tools, …) are skipped and counted: they are not LLM calls. A traces export
(``GET /api/public/traces``: records with ``id`` and ``timestamp`` but no ``type``/``traceId``) may be
given as another file; each file is told by its content. The traces' ``userId``, ``tags`` and
``sessionId`` are joined to the generations by ``traceId`` (the v1 observations carry none of them).

Where the mapping comes from (github:langfuse/langfuse, github:langfuse/langfuse-python):

* ``fern/apis/server/definition/commons.yml`` — ``Observation`` / ``ObservationsView`` (v1: ``model``,
  ``usageDetails``, ``costDetails``, ``calculatedTotalCost``, ``latency`` in seconds, ``level``,
  ``statusMessage``, ``promptName``), ``ObservationV2`` (v2: ``totalCost``, ``userId``, ``sessionId``,
  ``tags`` from the trace), ``Trace`` (``userId``, ``sessionId``, ``tags``), ``Usage`` (the deprecated
  ``usage: {input, output, total, unit}``); langfuse-python ``langfuse/api/commons/types/observation.py``,
  ``observations_view.py``, ``observation_v2.py``, ``trace.py`` are the same models in Python.
* ``web/src/features/public-api/types/observations.ts`` — ``transformDbToApiObservation``: the v1 page
  also carries ``promptTokens`` / ``completionTokens`` / ``totalTokens``.
* ``packages/shared/src/server/repositories/observations_converters.ts`` — the v2 records name the model
  ``model`` (from ``provided_model_name``; the fern file and 4.x SDKs say ``providedModelName``: both are
  read), and return ``input`` / ``output`` as raw strings (parsed here when they hold JSON);
  ``reduceUsageOrCostDetails``: the input count is the sum of every usage key containing ``input``, the
  output count of every key containing ``output`` — what this importer does.
* ``packages/shared/src/server/ingestion/types.ts`` (``UsageDetails``) and
  ``packages/shared/src/server/otel/OtelIngestionProcessor.ts`` — the usage keys are disjoint: ``input``
  excludes cache reads (``input_cached_tokens``, ``input_cache_read``, ``cache_read_input_tokens``) and
  cache writes (``input_cache_creation[_5m|_1h]``, ``input_cache_write``, ``cache_creation_input_tokens``),
  ``output`` excludes ``output_reasoning_tokens``; so ``input_tokens`` = all ``input`` keys,
  ``cached_input_tokens`` = the cache-read keys, cache writes go to ``Row.cache_write_tokens``.

Langfuse logs no provider: it is taken from the metadata where an integration left one (LangChain's
``ls_provider``, OpenTelemetry's ``gen_ai.provider.name`` / ``gen_ai.system`` under ``attributes``), else
inferred from the model name, else ``unknown``; the report counts each. A generation whose ``input`` is not
a list of chat messages (``[...]`` or ``{"messages": [...], "tools": ...}``) — a text prompt, another
object, none — is kept without ``request_json`` (it counts in routing reports but cannot be replayed).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson

from engine.importers import register
from engine.importers._base import (
    FileError,
    RecordError,
    Refusal,
    Row,
    Source,
    chat_body,
    compact,
    dig,
    error_type,
    first_record,
    message_text,
    number,
    provider_from_model,
    records,
    tags,
    timestamp,
    tokens,
)

#: Langfuse's observation types (web/src/features/public-api/types/observations.ts ``ObservationType``).
OBSERVATION_TYPES = frozenset(
    {"GENERATION", "SPAN", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EVALUATOR", "EMBEDDING", "GUARDRAIL"}
)

#: Model parameters an OpenAI chat request takes, with the type each is coerced to (Langfuse's SDKs
#: log numbers as strings, e.g. ``"0.2"``, and an unset ``max_tokens`` as ``"inf"``).
_FLOAT_PARAMS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_INT_PARAMS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")
_OTHER_PARAMS = (
    "stop",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "service_tier",
    "logprobs",
    "logit_bias",
)
#: Keys of an ``input`` object that belong in a chat request beside its ``messages``
#: (langfuse-python ``langfuse/openai.py`` ``_extract_chat_prompt``).
_PROMPT_EXTRAS = ("tools", "tool_choice", "functions", "function_call")
_STATUS_CODE = re.compile(r"(?i)\b(?:error code|status(?:[ _]?code)?|http)\s*[:=]?\s*([1-5]\d\d)\b")


def _is_observation(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("id"), str)
        and record.get("type") in OBSERVATION_TYPES
        and "startTime" in record
        and any(k in record for k in ("traceId", "usageDetails", "promptTokens", "parentObservationId", "level"))
    )


def _is_trace(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("id"), str)
        and "timestamp" in record
        and not any(k in record for k in ("type", "traceId", "startTime", "request"))
        and isinstance(record.get("tags"), list)
        and ("htmlPath" in record or "public" in record)
    )


def _page_first(record: Any) -> Any:
    """The first item of an API page (``{"data": [...], "meta": ...}``) saved as one JSON line, else the record."""
    if isinstance(record, dict) and isinstance(record.get("data"), list) and "meta" in record:
        return record["data"][0] if record["data"] else None
    return record


def _items(path: Path) -> Iterator[tuple[int, Any]]:
    """The records of a file, with API pages saved one a line (JSON lines of pages) opened up."""
    for line, record in records(path):
        if isinstance(record, dict) and isinstance(record.get("data"), list) and "meta" in record:
            for item in record["data"]:
                yield line, item
        else:
            yield line, record


def _json_text(value: Any) -> Any:
    """A v2 raw-string ``input``/``output`` parsed where it holds JSON; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{", '"'):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _params(model_parameters: Any) -> dict[str, Any]:
    """The OpenAI request parameters among Langfuse's ``modelParameters``."""
    if not isinstance(model_parameters, dict):
        return {}
    out: dict[str, Any] = {}
    for key in (*_FLOAT_PARAMS, *_INT_PARAMS):
        value = model_parameters.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(parsed):
            continue
        if key in _INT_PARAMS:
            if not parsed.is_integer():
                continue
            out[key] = int(parsed)
        else:
            out[key] = parsed
    for key in _OTHER_PARAMS:
        value = model_parameters.get(key)
        if value is not None:
            out[key] = _json_text(value)
    return out


def _prompt(value: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """Chat messages (and tools) from a generation's ``input``, or ``None`` when it holds none."""
    value = _json_text(value)
    extras: dict[str, Any] = {}
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        extras = {k: value[k] for k in _PROMPT_EXTRAS if value.get(k) is not None}
        value = value["messages"]
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value):
        return None
    return value, extras


def _answer(value: Any) -> str | None:
    """The answer text of a generation's ``output``: a message, a choices object, a list of choices, text."""
    parsed = _json_text(value)
    if isinstance(parsed, list):
        return _answer(parsed[0]) if parsed else None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("choices"), list):
            first = dig(parsed, "choices", 0)
            text = message_text(dig(first, "message")) if isinstance(dig(first, "message"), dict) else None
            return text if text is not None else (dig(first, "text") if isinstance(dig(first, "text"), str) else None)
        if any(k in parsed for k in ("role", "content", "tool_calls")):
            return message_text(parsed)
        if isinstance(parsed.get("text"), str):
            return str(parsed["text"])
        # Structured output that is no message: the JSON itself is the answer.
        return value if isinstance(value, str) else compact(parsed)
    if isinstance(parsed, str):
        return parsed
    return None


def _provider_hint(metadata: Any) -> str | None:
    """A provider an integration left in the metadata (LangChain, OpenTelemetry)."""
    metadata = _json_text(metadata)
    if not isinstance(metadata, dict):
        return None
    attributes = _json_text(metadata.get("attributes"))
    for value in (
        metadata.get("ls_provider"),
        dig(attributes, "gen_ai.provider.name"),
        dig(attributes, "gen_ai.system"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def _usage(record: dict[str, Any]) -> tuple[int, int, int, int, bool]:
    """``(input, output, cache reads, cache writes, has usage)`` of one generation."""
    details = record.get("usageDetails")
    if isinstance(details, dict) and any(k != "total" for k in details):
        counts = {str(k): tokens(v, f"usageDetails.{k}") for k, v in details.items()}
        inputs = {k: v for k, v in counts.items() if "input" in k}
        reads = sum(v for k, v in inputs.items() if "cache_read" in k or "cached" in k)
        writes = sum(v for k, v in inputs.items() if "cache_creation" in k or "cache_write" in k)
        output = sum(v for k, v in counts.items() if "output" in k)
        return sum(inputs.values()), output, reads, writes, True
    # Before usageDetails (Langfuse < 3): the flat counts, else the deprecated usage object.
    raw = record.get("usage")
    usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
    unit = usage.get("unit")
    prompt = record.get("promptTokens", usage.get("input"))
    completion = record.get("completionTokens", usage.get("output"))
    field_in = "promptTokens" if "promptTokens" in record else "usage.input"
    field_out = "completionTokens" if "completionTokens" in record else "usage.output"
    input_tokens = tokens(prompt, field_in, default=0)
    output_tokens = tokens(completion, field_out, default=0)
    if unit not in (None, "", "TOKENS") and (input_tokens or output_tokens):
        raise RecordError("usage.unit", f"counts {unit}, not tokens")
    return input_tokens, output_tokens, 0, 0, bool(input_tokens or output_tokens)


def _latency_ms(record: dict[str, Any], start: dt.datetime) -> float | None:
    end = record.get("endTime")
    if end not in (None, ""):
        ms = (timestamp(end, "endTime") - start).total_seconds() * 1000
        if ms >= 0:
            return ms
    seconds = number(record.get("latency"), "latency")
    return None if seconds is None else seconds * 1000


def _cost(record: dict[str, Any]) -> float | None:
    for path in (("totalCost",), ("calculatedTotalCost",), ("costDetails", "total"), ("usage", "totalCost")):
        value = number(dig(record, *path), ".".join(path))
        if value is not None:
            return value
    return None


#: What a traces file says about one trace: ``(userId, sessionId, tags)``.
_Trace = tuple[str | None, str | None, list[str]]


class _Tally:
    """What the report says about one import."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.provider_metadata = 0
        self.provider_inferred = 0
        self.provider_unknown = 0
        self.no_prompt = 0
        self.no_usage = 0
        self.joined = 0
        self.unjoined = 0
        self.no_trace_context = 0


class Langfuse:
    """Langfuse GENERATION observations (API export), joined with a traces export when one is given."""

    name: ClassVar[str] = "langfuse"
    summary: ClassVar[str] = (
        "Langfuse generations from its public API (GET /api/public/observations or /v2/observations: "
        "a JSON page or JSON lines), with an optional traces export (GET /api/public/traces)"
    )

    def sniff(self, first: Any) -> bool:
        """An observation (``type``, ``startTime``, …) or a trace (``timestamp``, ``tags``, no ``type``)."""
        first = _page_first(first)
        return _is_observation(first) or _is_trace(first)

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """A row per GENERATION of the observations files, with the traces files joined in."""
        trace_files = [p for p in source.files if _is_trace(_page_first(first_record(p)))]
        observation_files = [p for p in source.files if p not in trace_files]
        if trace_files and not observation_files:
            raise FileError(
                f"{trace_files[0]}: a Langfuse traces export holds no generations; give the observations export "
                "(GET /api/public/observations?type=GENERATION) with it"
            )
        traces = self._traces(trace_files)
        tally = _Tally()
        for path in observation_files:
            for line, record in _items(path):
                if isinstance(record, dict) and isinstance(record.get("type"), str) and record["type"] != "GENERATION":
                    tally.skipped[record["type"]] += 1
                    source.skipped += 1
                    continue
                try:
                    values, cache_write = self.row(record, traces, tally)
                except RecordError as exc:
                    yield Refusal(str(path), line, exc.field, exc.message)
                    continue
                yield Row(str(path), line, values, cache_write_tokens=cache_write)
        source.notes.extend(self._notes(tally, trace_files, traces))

    @staticmethod
    def _traces(paths: list[Path]) -> dict[str, _Trace]:
        """``trace id → (userId, sessionId, tags)`` of the traces files."""
        out: dict[str, _Trace] = {}
        for path in paths:
            for _, record in _items(path):
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    user, session = record.get("userId"), record.get("sessionId")
                    out[record["id"]] = (
                        str(user) if user not in (None, "") else None,
                        str(session) if session not in (None, "") else None,
                        tags(record.get("tags")),
                    )
        return out

    def row(self, record: Any, traces: dict[str, _Trace], tally: _Tally) -> tuple[dict[str, Any], int]:
        """The log columns of one GENERATION, and its cache-write tokens."""
        if not isinstance(record, dict):
            raise RecordError("record", "not a JSON object")
        if record.get("type") != "GENERATION":
            raise RecordError("type", "missing: not a Langfuse observation" if "type" not in record else "not a string")
        request_id = record.get("id")
        if request_id in (None, ""):
            raise RecordError("id", "missing")
        model = record.get("model") or record.get("providedModelName")
        if not isinstance(model, str) or not model.strip():
            raise RecordError("model", "the generation names no model (model / providedModelName)")
        start = timestamp(record.get("startTime"), "startTime")
        input_tokens, output_tokens, cached, cache_write, has_usage = _usage(record)
        failed = record.get("level") == "ERROR"
        if not has_usage and not failed:
            tally.no_usage += 1
        user, labels = self._context(record, traces, tally)
        prompt = _prompt(record.get("input"))
        if prompt is None:
            tally.no_prompt += 1
        status_message = record.get("statusMessage")
        code = _STATUS_CODE.search(str(status_message or ""))
        values = {
            "request_id": str(request_id),
            "timestamp": start,
            "model": model,
            "provider": self._provider(record, model, tally),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached,
            "latency_ms": _latency_ms(record, start),
            "cost_usd": _cost(record),
            "status": "error" if failed else "ok",
            "error_type": error_type(code.group(1) if code else None, status_message) if failed else None,
            "end_user_id": user,
            "tags": labels,
            "routing_config_version": None,
            "request_json": None
            if prompt is None
            else chat_body(prompt[0], "input", model=model, **_params(record.get("modelParameters")), **prompt[1]),
            "response_text": None if failed else _answer(record.get("output")),
        }
        return values, cache_write

    @staticmethod
    def _provider(record: dict[str, Any], model: str, tally: _Tally) -> str:
        hint = _provider_hint(record.get("metadata"))
        if hint:
            tally.provider_metadata += 1
            return hint
        inferred = provider_from_model(model)
        if inferred:
            tally.provider_inferred += 1
            return inferred
        tally.provider_unknown += 1
        return "unknown"

    @staticmethod
    def _context(record: dict[str, Any], traces: dict[str, _Trace], tally: _Tally) -> tuple[str | None, list[str]]:
        """``(end user, tags)``: the observation's own (v2), else its trace's; plus ``key:value`` tags."""
        trace_id = record.get("traceId")
        trace = traces.get(str(trace_id)) if trace_id is not None else None
        if traces:
            tally.joined += int(trace is not None)
            tally.unjoined += int(trace is None)
        elif "userId" not in record and "tags" not in record:
            tally.no_trace_context += 1
        trace_user, trace_session, trace_tags = trace or (None, None, [])
        user = record.get("userId") or trace_user
        session = record.get("sessionId") or trace_session
        labels = tags(record["tags"]) if isinstance(record.get("tags"), list) else list(trace_tags)
        if session:
            labels.append(f"session:{session}")
        if record.get("promptName"):
            labels.append(f"prompt:{record['promptName']}")
        environment = record.get("environment")
        if isinstance(environment, str) and environment not in ("", "default"):
            labels.append(f"environment:{environment}")
        return (str(user) if user not in (None, "") else None), list(dict.fromkeys(labels))

    @staticmethod
    def _notes(tally: _Tally, trace_files: list[Path], traces: dict[str, _Trace]) -> list[str]:
        notes = []
        if tally.skipped:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(tally.skipped.items()))
            notes.append(
                f"skipped {sum(tally.skipped.values()):,} observations that are not generations ({kinds}): "
                "they are not LLM calls"
            )
        if tally.provider_metadata or tally.provider_inferred or tally.provider_unknown:
            parts = [f"inferred it from the model name for {tally.provider_inferred:,} generations"]
            if tally.provider_metadata:
                parts.append(
                    f"took it from the metadata (LangChain's ls_provider, OpenTelemetry's gen_ai.system) "
                    f"for {tally.provider_metadata:,}"
                )
            if tally.provider_unknown:
                parts.append(f"stored 'unknown' for {tally.provider_unknown:,} whose model name names no vendor")
            notes.append("Langfuse logs no provider: " + "; ".join(parts))
        if tally.no_prompt:
            notes.append(
                f"{tally.no_prompt:,} generations have no chat-message prompt (a text prompt, another object, or "
                "none): stored without request_json — they count in routing reports but cannot be replayed"
            )
        if tally.no_usage:
            notes.append(f"{tally.no_usage:,} successful generations carry no token usage: stored with 0 tokens")
        if trace_files:
            names = ", ".join(str(p) for p in trace_files)
            note = (
                f"joined user ids, session ids and tags from {len(traces):,} traces ({names}) "
                f"to {tally.joined:,} generations"
            )
            if tally.unjoined:
                note += f"; {tally.unjoined:,} generations' traces are not in it (no user id or trace tags for them)"
            notes.append(note)
        elif tally.no_trace_context:
            notes.append(
                f"{tally.no_trace_context:,} generations carry no user id or trace tags (the v1 observations API "
                "leaves them out): give the traces export (GET /api/public/traces) as another file to join them"
            )
        return notes


register(Langfuse())
