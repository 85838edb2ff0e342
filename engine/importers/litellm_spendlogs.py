r"""``litellm-spendlogs``: rows of the LiteLLM proxy's ``LiteLLM_SpendLogs`` table, exported as CSV or JSON.

Export with ``psql "$DATABASE_URL" -c "\\copy (SELECT * FROM \\"LiteLLM_SpendLogs\\") TO 'spendlogs.csv' CSV HEADER"``
(JSON columns arrive as JSON text, timestamps as ``2024-11-05 10:00:00.123``, which is UTC: Prisma writes
UTC into ``timestamp(3)`` columns), or as JSON lines with
``psql "$DATABASE_URL" -At -c 'SELECT row_to_json(t) FROM "LiteLLM_SpendLogs" t' > spendlogs.jsonl``
(JSON columns as JSON values). A JSON array of rows (``SELECT json_agg(t) ...``) is read too. Columns
are found by name, so their order and any extra or missing optional columns do not matter.

Where the mapping comes from (github:BerriAI/litellm, read at v1.110.2):

* ``litellm/proxy/schema.prisma`` ``model LiteLLM_SpendLogs`` — the columns: ``request_id``, ``call_type``,
  ``spend``, ``prompt_tokens``, ``completion_tokens``, ``startTime``, ``endTime``, ``request_duration_ms``,
  ``model``, ``model_group``, ``custom_llm_provider``, ``metadata`` (JSON), ``cache_hit`` (text),
  ``request_tags`` (JSON), ``end_user``, ``messages`` / ``response`` / ``proxy_server_request`` (JSON),
  ``status``.
* ``litellm/proxy/spend_tracking/spend_tracking_utils.py`` ``get_logging_payload`` — how a row is built:
  ``cache_hit`` is ``str(bool)`` and a cache hit's ``request_id`` is suffixed ``_cache_hit<time>``;
  ``status`` is ``"failure"`` only when the proxy's failure hook marked the request metadata
  (``hooks/proxy_track_cost_callback.py``, which also puts ``error_information`` — ``error_code``,
  ``error_class`` — into ``metadata``); ``metadata.additional_usage_values`` holds the usage beyond the
  three counts (``cache_read_input_tokens``, ``cache_creation_input_tokens``, ``prompt_tokens_details``),
  ``metadata.usage_object`` the whole usage; ``messages`` stays ``{}`` (only realtime calls fill it in
  current versions; older ones stored the prompt there), ``proxy_server_request`` holds the request body
  and ``response`` the answer only when ``general_settings.store_prompts_in_spend_logs`` is true, else both
  are ``{}``. ``proxy/db/db_spend_update_writer.py`` ``update_database`` stores ``spend`` as the call's
  cost or 0.0 (so 0 for a failed call).
* ``litellm/proxy/_types.py`` ``SpendLogsMetadata`` — the keys of ``metadata``.

Mapping: ``request_id`` ← ``request_id``; ``timestamp`` ← ``startTime``; ``model`` ← ``model`` as logged
(else ``model_group``), ``provider`` ← ``custom_llm_provider`` (else what the model name implies); tokens ←
``prompt_tokens`` / ``completion_tokens``, cache reads and writes from ``metadata`` as above;
``latency_ms`` ← ``request_duration_ms`` (else ``endTime - startTime``); ``cost_usd`` ← ``spend`` (a success
at 0 is priced from the catalog by the import); ``status`` ← ``status`` (else ``metadata.status``);
``error_type`` ← ``metadata.error_information``; ``end_user_id`` ← ``end_user``; ``tags`` ←
``request_tags``; ``request_json`` ← ``proxy_server_request`` (else a prompt in ``messages``);
``response_text`` ← ``response``. Cache hits and calls that are not text generation are skipped and
counted, as in the ``litellm`` format (see there why).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import orjson

from engine.importers import register
from engine.importers._base import (
    RecordError,
    Refusal,
    Row,
    Source,
    number,
    records,
    tags,
    timestamp,
    tokens,
)
from engine.importers.litellm import (
    Skip,
    Tally,
    answer_text,
    cache_tokens,
    generation_call,
    is_cache_hit,
    litellm_error_type,
    provider_of,
    request_body,
    text_or_none,
)

#: Columns without a default in ``schema.prisma`` (``NOT NULL``): every export has them.
_SIGNATURE = frozenset({"request_id", "call_type", "spend", "startTime", "endTime"})


def _json(value: Any, field: str, *, text: bool) -> Any:
    """A JSON column's value; ``None`` when NULL.

    A CSV export (``text``) holds JSON text, which must parse. A JSON export holds the value itself, but
    some tools write jsonb as JSON text there too: a string is parsed when it is JSON, else kept.
    """
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        if text:
            raise RecordError(field, "is not valid JSON") from None
        return value


class LiteLLMSpendLogs:
    """``LiteLLM_SpendLogs`` rows as CSV with a header, JSON lines or a JSON array."""

    name: ClassVar[str] = "litellm-spendlogs"
    summary: ClassVar[str] = "LiteLLM proxy LiteLLM_SpendLogs table rows (CSV export or JSON lines)"

    def sniff(self, first: Any) -> bool:
        """A row: the columns without a default, and no ``hidden_params`` (a logging payload's)."""
        return isinstance(first, dict) and first.keys() >= _SIGNATURE and "hidden_params" not in first

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """A row or refusal per table row, in file order; skipped rows are counted in the notes."""
        tally = Tally(
            "LiteLLM keeps prompts and answers in LiteLLM_SpendLogs only with "
            "general_settings.store_prompts_in_spend_logs: true"
        )
        for path in source.files:
            for line, record in records(path):
                try:
                    values, cache_write = self.row(record, tally, csv=path.suffix.lower() == ".csv")
                except Skip as skip:
                    tally.skip(skip.why, f"{path}:{line}")
                    source.skipped += 1
                    continue
                except RecordError as exc:
                    yield Refusal(str(path), line, exc.field, exc.message)
                    continue
                yield Row(str(path), line, values, cache_write_tokens=cache_write)
        source.notes.extend(tally.notes())

    def row(self, record: Any, tally: Tally, *, csv: bool = False) -> tuple[dict[str, Any], int]:
        """The log columns of one table row and its cache-write tokens; ``Skip`` or ``RecordError`` otherwise.

        ``csv``: the row comes from a CSV export, whose JSON columns are JSON text.
        """
        if not isinstance(record, dict):
            raise RecordError("record", "not a JSON object")
        generation_call(record.get("call_type"))
        if is_cache_hit(record.get("cache_hit")):
            raise Skip("LiteLLM cache hits (cache_hit 'True'; no provider call, spend 0)")
        metadata = _json(record.get("metadata"), "metadata", text=csv)
        if metadata is not None and not isinstance(metadata, dict):
            raise RecordError("metadata", "is not a JSON object")
        metadata = metadata or {}
        status = text_or_none(record.get("status")) or metadata.get("status") or "success"
        if status not in ("success", "failure"):
            raise RecordError("status", f"{status!r} is neither 'success' nor 'failure'")
        failed = status == "failure"
        model = text_or_none(record.get("model")) or text_or_none(record.get("model_group"))
        if model is None:
            raise RecordError("model", "missing")
        request_id = text_or_none(record.get("request_id"))
        if request_id is None:
            raise RecordError("request_id", "missing")
        start = timestamp(record.get("startTime"), "startTime")
        usage, usage_field = metadata.get("additional_usage_values"), "metadata.additional_usage_values"
        if not isinstance(usage, dict) or not usage:
            usage, usage_field = metadata.get("usage_object"), "metadata.usage_object"
        cached, cache_write = cache_tokens(usage, usage_field)
        prompt, prompt_field, params = self._prompt(record, csv)
        values = {
            "request_id": request_id,
            "timestamp": start,
            "model": model,
            "provider": provider_of(record.get("custom_llm_provider"), model, "custom_llm_provider"),
            "input_tokens": tokens(record.get("prompt_tokens"), "prompt_tokens", default=0),
            "output_tokens": tokens(record.get("completion_tokens"), "completion_tokens", default=0),
            "cached_input_tokens": cached,
            "latency_ms": self._latency_ms(record, start),
            "cost_usd": number(record.get("spend"), "spend"),
            "status": "error" if failed else "ok",
            "error_type": litellm_error_type(metadata.get("error_information"), None) if failed else None,
            "end_user_id": text_or_none(record.get("end_user")),
            "tags": tags(_json(record.get("request_tags"), "request_tags", text=csv)),
            "routing_config_version": None,
            "request_json": request_body(
                prompt,
                prompt_field,
                text_or_none(params.get("model")) or text_or_none(record.get("model_group")) or model,
                params,
                tally,
            ),
            "response_text": None if failed else answer_text(_json(record.get("response"), "response", text=csv)),
        }
        return values, cache_write

    @staticmethod
    def _prompt(record: dict[str, Any], csv: bool) -> tuple[Any, str, dict[str, Any]]:
        """``(messages, field, request params)``: the stored request body's, else the ``messages`` column's."""
        body = _json(record.get("proxy_server_request"), "proxy_server_request", text=csv)
        if isinstance(body, dict) and isinstance(body.get("body"), dict):  # the whole request, not only its body
            body = body["body"]
        if isinstance(body, dict) and body.get("messages") not in (None, [], ""):
            return body.get("messages"), "proxy_server_request.messages", body
        messages = _json(record.get("messages"), "messages", text=csv)
        return messages, "messages", {}

    @staticmethod
    def _latency_ms(record: dict[str, Any], start: Any) -> float | None:
        duration = number(record.get("request_duration_ms"), "request_duration_ms")
        if duration is not None:
            return duration
        if record.get("endTime") in (None, ""):
            return None
        end = timestamp(record.get("endTime"), "endTime")
        if end < start:
            raise RecordError("endTime", "is before startTime")
        return (end - start).total_seconds() * 1000


register(LiteLLMSpendLogs())
