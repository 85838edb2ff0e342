"""``litellm``: LiteLLM's ``StandardLoggingPayload``, one JSON object per call.

This is the record every LiteLLM logging integration is handed (``kwargs["standard_logging_object"]`` in a
``CustomLogger``'s ``log_success_event`` / ``log_failure_event``) and what its storage loggers write as is:
the S3 and GCS bucket loggers (one object per file, or JSON lines), the generic API logger (a JSON array,
JSON lines or single objects). SDK and proxy calls alike; success and failure records.

Where the mapping comes from (github:BerriAI/litellm, read at v1.110.2):

* ``litellm/types/utils.py`` — ``StandardLoggingPayload`` (``id``, ``call_type``, ``status``
  ``"success"|"failure"``, ``custom_llm_provider``, ``prompt_tokens`` / ``completion_tokens``,
  ``startTime`` / ``endTime`` / ``completionStartTime`` in unix seconds, ``response_time``, ``model``,
  ``model_group``, ``response_cost``, ``cache_hit``, ``request_tags``, ``end_user``, ``messages``,
  ``response``, ``error_str``, ``error_information``, ``model_parameters``, ``hidden_params``),
  ``StandardLoggingMetadata`` (``usage_object``, ``user_api_key_end_user_id``, …),
  ``StandardLoggingHiddenParams`` (``usage_object``) and ``StandardLoggingPayloadErrorInformation``
  (``error_code`` — the HTTP status as text —, ``error_class``, ``error_message``).
* ``litellm/litellm_core_utils/litellm_logging.py`` — ``get_standard_logging_object_payload``: ``id`` is the
  provider response id, else ``litellm_call_id`` (a cache hit's is suffixed ``_cache_hit<time>``);
  ``response_time`` is ``endTime - startTime``, but ``completionStartTime - startTime`` (time to first
  token) for a stream, so the latency here is ``endTime - startTime``; ``end_user`` is
  ``metadata.user_api_key_end_user_id`` or the proxy request body's ``user``; ``metadata.usage_object`` is
  the response's usage as a dict (``StandardLoggingPayloadSetup.get_usage_as_dict``); ``model_parameters``
  are the OpenAI request parameters without the prompt (``ModelParamHelper``).
* ``litellm/llms/anthropic/chat/transformation.py`` ``calculate_usage`` (and the OpenAI usage it mirrors):
  ``prompt_tokens`` counts every prompt token, cache reads and writes included;
  ``prompt_tokens_details.cached_tokens`` (= ``cache_read_input_tokens``) are the reads,
  ``cache_creation_input_tokens`` (= ``prompt_tokens_details.cache_creation_tokens``) the writes.

Mapping: ``request_id`` ← ``id``; ``timestamp`` ← ``startTime``; ``model`` ← ``model`` as logged (LiteLLM
logs the provider's name, e.g. ``claude-3-5-haiku-20241022``), ``provider`` ← ``custom_llm_provider`` (else
what the model name implies); tokens as above; ``latency_ms`` ← ``endTime - startTime``; ``cost_usd`` ←
``response_cost`` (0 when LiteLLM could not price the model: the import prices it then); ``status`` ←
``status`` (payloads older than that field: ``failure`` when they carry an ``error_str``); ``error_type`` ←
``error_information`` (class, then HTTP code) or ``error_str``;
``end_user_id`` ← ``end_user``; ``tags`` ← ``request_tags``; ``request_json`` ← ``messages`` with
``model_parameters``; ``response_text`` ← the response's first choice.

Skipped and counted in the report's notes, not refused (they are well-formed, just not provider calls to
replay): **cache hits** (``cache_hit: true``) — LiteLLM answered from its own cache, made no provider call
and logs cost 0, so a row would let a replay price a candidate against a call that cost nothing (and the
import would price the 0 at list price); and calls that are not text generation (embeddings, images,
audio, files, batches, …: ``call_type``). Prompts LiteLLM redacted (``turn_off_message_logging``) or
truncated keep their row without ``request_json``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

from engine.importers import register
from engine.importers._base import (
    RecordError,
    Refusal,
    Row,
    Source,
    chat_body,
    dig,
    error_type,
    message_text,
    number,
    provider_from_model,
    records,
    tags,
    timestamp,
    tokens,
)

#: ``CallTypes`` (litellm/types/utils.py) that generate text: the calls a routing replay is about.
#: ``""`` is an old or hand-built record without a call type.
GENERATION_CALL_TYPES = frozenset(
    {
        "",
        "completion",
        "acompletion",
        "text_completion",
        "atext_completion",
        "responses",
        "aresponses",
        "anthropic_messages",
        "aanthropic_messages",
        "generate_content",
        "agenerate_content",
        "generate_content_stream",
        "agenerate_content_stream",
        "pass_through_endpoint",
    }
)
#: What LiteLLM puts in place of redacted prompts and answers (litellm/constants.py ``REDACTED_BY_LITELLM``).
REDACTED = "redacted-by-litellm"
#: The marker of a prompt LiteLLM cut to fit its store (litellm/constants.py ``LITELLM_TRUNCATED_PAYLOAD_FIELD``).
TRUNCATED = "litellm_truncated"
NO_PROMPT = "the record holds no prompt"
#: Request body keys that are LiteLLM's own controls, not OpenAI chat parameters (dropped from ``request_json``).
LITELLM_BODY_KEYS = frozenset(
    {
        "metadata",
        "litellm_metadata",
        "tags",
        "guardrails",
        "caching",
        "cache",
        "ttl",
        "fallbacks",
        "context_window_fallbacks",
        "num_retries",
        "secret_fields",
        "user_config",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
    }
)


class Skip(Exception):
    """A well-formed record that is not a provider call to replay; ``why`` is counted in the notes."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Tally:
    """What a LiteLLM import skipped or left without a prompt, as notes for the report."""

    def __init__(self, no_prompt_hint: str = "") -> None:
        self.hint = no_prompt_hint
        self.skipped: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self.no_prompt: Counter[str] = Counter()

    def skip(self, why: str, where: str) -> None:
        """Count one skipped record."""
        self.skipped[why] += 1
        self.first.setdefault(why, where)

    def notes(self) -> list[str]:
        """The report's sentences."""
        out = [f"skipped {n:,} record(s): {why} (first at {self.first[why]})" for why, n in self.skipped.most_common()]
        for why, n in self.no_prompt.most_common():
            hint = f" ({self.hint})" if self.hint and why == NO_PROMPT else ""
            out.append(f"{n:,} row(s) have no request_json: {why}{hint}")
        return out


# -- shared with litellm-spendlogs ---------------------------------------------------------------------


def generation_call(call_type: Any) -> None:
    """Raise ``Skip`` unless ``call_type`` is a text generation call."""
    kind = str(call_type or "")
    if kind not in GENERATION_CALL_TYPES:
        raise Skip(f"call_type {kind!r} is not a text generation call (nothing to replay)")


def is_cache_hit(value: Any) -> bool:
    """``cache_hit`` is a bool in the payload and ``str(bool)`` text (``"True"``) in the spend logs."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def cache_tokens(usage: Any, field: str) -> tuple[int, int]:
    """``(cache reads, cache writes)`` from a LiteLLM usage dict (0 where it carries none)."""
    if not isinstance(usage, dict):
        return 0, 0
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    if details.get("cached_tokens") is not None:
        read = tokens(details["cached_tokens"], f"{field}.prompt_tokens_details.cached_tokens")
    else:
        read = tokens(usage.get("cache_read_input_tokens"), f"{field}.cache_read_input_tokens", default=0)
    if usage.get("cache_creation_input_tokens") is not None:
        write = tokens(usage["cache_creation_input_tokens"], f"{field}.cache_creation_input_tokens")
    else:
        key = "cache_creation_tokens" if details.get("cache_creation_tokens") is not None else "cache_write_tokens"
        write = tokens(details.get(key), f"{field}.prompt_tokens_details.{key}", default=0)
    return read, write


def litellm_error_type(info: Any, text: Any) -> str:
    """Our ``error_type`` from LiteLLM's ``error_information``, else from the error string.

    The exception class decides first (``RateLimitError``, ``ContextWindowExceededError``, ``Timeout``, …),
    then the HTTP status LiteLLM stores as text in ``error_code``.
    """
    info = info if isinstance(info, dict) else {}
    kind = error_type(info.get("error_code"), info.get("error_class"))
    if kind == "unknown_error":
        kind = error_type(None, text or info.get("error_message"))
    return kind


def request_body(messages: Any, field: str, model: str, params: Any, tally: Tally) -> str | None:
    """``request_json`` from a logged prompt and its request parameters.

    ``None`` (counted) when there is none, when it is not chat messages, or when LiteLLM redacted or
    truncated it. A bare string prompt becomes one user message.
    """
    if isinstance(messages, dict) and isinstance(messages.get("messages"), list):
        messages = messages["messages"]
    if messages in (None, "", {}, []):
        tally.no_prompt[NO_PROMPT] += 1
        return None
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    text = json.dumps(messages, ensure_ascii=False)
    if REDACTED in text:
        tally.no_prompt["LiteLLM redacted the prompt (turn_off_message_logging)"] += 1
        return None
    if TRUNCATED in text:
        tally.no_prompt["LiteLLM truncated the prompt to fit its store"] += 1
        return None
    extra = {
        k: v
        for k, v in (params.items() if isinstance(params, dict) else ())
        if k not in ("model", "messages") and k not in LITELLM_BODY_KEYS and not k.startswith(("litellm_", "mock_"))
    }
    try:
        return chat_body(messages, field, model=model, **extra)
    except RecordError:
        tally.no_prompt["the prompt is not a list of chat messages"] += 1
        return None


def answer_text(response: Any) -> str | None:
    """The answer in a logged response; ``None`` when there is none or LiteLLM redacted it.

    A chat completion, a text completion, a Responses API or an Anthropic Messages response, or plain text.
    """
    text = _answer(response)
    return None if text == REDACTED else text


def _answer(response: Any) -> str | None:
    if isinstance(response, str):
        return response or None
    if not isinstance(response, dict):
        return None
    message = dig(response, "choices", 0, "message")
    if message is not None:
        return message_text(message)
    text = dig(response, "choices", 0, "text")
    if isinstance(text, str):
        return text
    parts: list[str] = []
    for item in response.get("output") or []:  # Responses API
        if isinstance(item, dict):
            content = item.get("content") or []
            parts += [c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
    for block in response.get("content") or []:  # Anthropic Messages
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts) or None


def text_or_none(value: Any) -> str | None:
    """A non-empty string, else ``None``."""
    return str(value) if value not in (None, "") else None


def provider_of(value: Any, model: str, field: str) -> str:
    """The logged provider, else the one the model name implies; a ``RecordError`` on ``field`` if neither."""
    provider = text_or_none(value) or provider_from_model(model)
    if not provider:
        raise RecordError(field, "missing, and the model name implies no provider")
    return provider


# -- the format ----------------------------------------------------------------------------------------

#: Keys every ``StandardLoggingPayload`` has had since LiteLLM 1.4x (and that SpendLogs rows lack).
_SIGNATURE = frozenset(
    {"id", "call_type", "startTime", "endTime", "response_cost", "model_parameters", "hidden_params"}
)


class LiteLLM:
    """LiteLLM's standard logging payload as JSON (lines, an array, or one object a file)."""

    name: ClassVar[str] = "litellm"
    summary: ClassVar[str] = "LiteLLM StandardLoggingPayload records (CustomLogger, S3/GCS/generic API loggers)"

    def sniff(self, first: Any) -> bool:
        """A payload: the keys every version has had, and no ``request_id`` (a SpendLogs row's)."""
        return isinstance(first, dict) and first.keys() >= _SIGNATURE and "request_id" not in first

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """A row or refusal per record, in file order; skipped records are counted in the notes."""
        tally = Tally()
        for path in source.files:
            for line, record in records(path):
                try:
                    values, cache_write = self.row(record, tally)
                except Skip as skip:
                    tally.skip(skip.why, f"{path}:{line}")
                    source.skipped += 1
                    continue
                except RecordError as exc:
                    yield Refusal(str(path), line, exc.field, exc.message)
                    continue
                yield Row(str(path), line, values, cache_write_tokens=cache_write)
        source.notes.extend(tally.notes())

    def row(self, record: Any, tally: Tally) -> tuple[dict[str, Any], int]:
        """The log columns of one payload and its cache-write tokens; ``Skip`` or ``RecordError`` otherwise."""
        if not isinstance(record, dict):
            raise RecordError("record", "not a JSON object")
        generation_call(record.get("call_type"))
        if is_cache_hit(record.get("cache_hit")):
            raise Skip("LiteLLM cache hits (cache_hit: true; no provider call, cost 0)")
        status = record.get("status") or dig(record, "status_fields", "llm_api_status")
        if status is None:  # payloads from before LiteLLM logged a status
            status = "failure" if record.get("error_str") else "success"
        if status not in ("success", "failure"):
            raise RecordError("status", f"{status!r} is neither 'success' nor 'failure'")
        failed = status == "failure"
        model = text_or_none(record.get("model")) or text_or_none(record.get("model_group"))
        if model is None:
            raise RecordError("model", "missing")
        request_id = text_or_none(record.get("id")) or text_or_none(record.get("litellm_call_id"))
        if request_id is None:
            raise RecordError("id", "missing")
        start = timestamp(record.get("startTime"), "startTime")
        metadata: dict[str, Any] = record["metadata"] if isinstance(record.get("metadata"), dict) else {}
        usage, usage_field = metadata.get("usage_object"), "metadata.usage_object"
        if not isinstance(usage, dict) or not usage:
            usage, usage_field = dig(record, "hidden_params", "usage_object"), "hidden_params.usage_object"
        if not isinstance(usage, dict) or not usage:
            usage, usage_field = dig(record, "response", "usage"), "response.usage"
        cached, cache_write = cache_tokens(usage, usage_field)
        response = record.get("response")
        values = {
            "request_id": request_id,
            "timestamp": start,
            "model": model,
            "provider": provider_of(record.get("custom_llm_provider"), model, "custom_llm_provider"),
            "input_tokens": tokens(record.get("prompt_tokens"), "prompt_tokens", default=0),
            "output_tokens": tokens(record.get("completion_tokens"), "completion_tokens", default=0),
            "cached_input_tokens": cached,
            "latency_ms": _latency_ms(record),
            "cost_usd": number(record.get("response_cost"), "response_cost"),
            "status": "error" if failed else "ok",
            "error_type": litellm_error_type(record.get("error_information"), record.get("error_str"))
            if failed
            else None,
            "end_user_id": text_or_none(record.get("end_user"))
            or text_or_none(metadata.get("user_api_key_end_user_id")),
            "tags": tags(record.get("request_tags")),
            "routing_config_version": None,
            "request_json": request_body(
                record.get("messages"),
                "messages",
                text_or_none(record.get("model_group")) or model,
                record.get("model_parameters"),
                tally,
            ),
            "response_text": None if failed else answer_text(response),
        }
        return values, cache_write


def _latency_ms(record: dict[str, Any]) -> float | None:
    """``endTime - startTime`` (the whole call, streams too), else ``response_time``; ``None`` if neither."""
    start, end = number(record.get("startTime"), "startTime"), number(record.get("endTime"), "endTime")
    if start is not None and end is not None:
        if end < start:
            raise RecordError("endTime", "is before startTime")
        return (end - start) * 1000
    seconds = number(record.get("response_time"), "response_time")
    return None if seconds is None else seconds * 1000


register(LiteLLM())
