"""``openai-jsonl``: one JSON object per line, ``{"request": {...}, "response": {...}, ...}``.

``request`` is an OpenAI chat request body and ``response`` the chat completion the API returned
(with ``usage``). Optional top-level keys: ``id``, ``timestamp`` (ISO-8601 or a unix time in any
unit), ``latency_ms``, ``end_user_id``, ``tags`` (a list, a string or a map), ``provider``,
``cost_usd``, ``routing_config_version``, and ``error`` (``{"type": …, "status_code": …}`` or a string)
for failed calls. This is the shape to write when no importer exists for your tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from engine.importers import register
from engine.importers._base import (
    RecordError,
    Refusal,
    Row,
    Source,
    compact,
    dig,
    error_type,
    message_text,
    number,
    records,
    tags,
    timestamp,
    tokens,
)


class OpenAIJsonl:
    """Chat request/response pairs as JSON lines."""

    name: ClassVar[str] = "openai-jsonl"
    summary: ClassVar[str] = "OpenAI chat request/response records, one JSON object per line"

    def sniff(self, first: Any) -> bool:
        """A record with a ``request`` object (and not a Batch API line)."""
        return isinstance(first, dict) and isinstance(first.get("request"), dict) and "custom_id" not in first

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """One row per record of every file."""
        for path in source.files:
            for line, record in records(path):
                try:
                    yield Row(str(path), line, self.row(record, line))
                except RecordError as exc:
                    yield Refusal(str(path), line, exc.field, exc.message)

    def row(self, record: Any, line: int) -> dict[str, Any]:
        """The log columns of one record."""
        if not isinstance(record, dict):
            raise RecordError("record", "not a JSON object")
        request = record.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise RecordError("request", "must be a chat request object with 'messages'")
        response = record.get("response") or {}
        if not isinstance(response, dict):
            raise RecordError("response", "must be a chat completion object")
        error = record.get("error")
        usage = response.get("usage") or {}
        model = response.get("model") or request.get("model")
        if not model:
            raise RecordError("model", "no model in request or response")
        kind = None
        if error:
            kind = (
                error_type(error.get("status_code"), error.get("type") or error.get("code") or error.get("message"))
                if isinstance(error, dict)
                else error_type(None, error)
            )
        return {
            "request_id": str(record.get("id") or response.get("id") or f"import_{line}"),
            "timestamp": timestamp(record.get("timestamp", response.get("created")), "timestamp"),
            "model": str(model),
            "provider": record.get("provider") or "openai",
            "input_tokens": tokens(usage.get("prompt_tokens"), "response.usage.prompt_tokens", default=0),
            "output_tokens": tokens(usage.get("completion_tokens"), "response.usage.completion_tokens", default=0),
            "cached_input_tokens": tokens(
                dig(usage, "prompt_tokens_details", "cached_tokens"),
                "response.usage.prompt_tokens_details.cached_tokens",
                default=0,
            ),
            "latency_ms": number(record.get("latency_ms"), "latency_ms"),
            "cost_usd": number(record.get("cost_usd"), "cost_usd"),
            "status": "error" if error else "ok",
            "error_type": kind,
            "end_user_id": record.get("end_user_id") or request.get("user"),
            "tags": tags(record.get("tags")),
            "routing_config_version": record.get("routing_config_version"),
            "request_json": compact(request),
            "response_text": None if error else message_text(dig(response, "choices", 0, "message")),
        }


register(OpenAIJsonl())
