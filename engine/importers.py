"""Turn other log formats into the log store's layout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import ConfigError
from engine.logs import SCHEMA, write_partitioned
from engine.pricing import Catalog, ModelPrice


def _text_of(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if message.get("tool_calls"):
        calls = json.dumps(message["tool_calls"], separators=(",", ":"))
        return f"{content}\n{calls}" if content else calls
    return content if isinstance(content, str) else None


def _timestamp(value: Any, line: int) -> dt.datetime:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"line {line}: timestamp {value!r} is not ISO-8601 or unix seconds", param="timestamp"
            ) from None
        return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    raise ConfigError(f"line {line}: missing timestamp (or 'created' in the response)", param="timestamp")


def _cost(price: ModelPrice | None, inp: int, cached: int, out: int) -> float:
    if price is None:
        return 0.0
    return ((inp - cached) * price.input_per_mtok + cached * price.cached_rate + out * price.output_per_mtok) / 1e6


def openai_record(record: dict[str, Any], line: int, catalog: Catalog) -> dict[str, Any]:
    """One log row from ``{"request": {...}, "response": {...}, ...}`` (OpenAI chat format with usage).

    Optional top-level keys: ``id``, ``timestamp``, ``latency_ms``, ``end_user_id``,
    ``tags``, ``provider``, ``cost_usd``, ``error`` (``{"type": …}`` for failed calls).
    """
    request = record.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        raise ConfigError(f"line {line}: 'request' must be a chat request object with 'messages'", param="request")
    response = record.get("response") or {}
    error = record.get("error")
    usage = response.get("usage") or {}
    model = response.get("model") or request.get("model")
    if not model:
        raise ConfigError(f"line {line}: no model in request or response", param="model")
    inp = int(usage.get("prompt_tokens", 0))
    out = int(usage.get("completion_tokens", 0))
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0)
    choices = response.get("choices") or []
    text = _text_of(choices[0].get("message", {})) if choices else None
    price = catalog.models.get(model)
    return {
        "request_id": str(record.get("id") or response.get("id") or f"import_{line}"),
        "timestamp": _timestamp(record.get("timestamp", response.get("created")), line),
        "model": model,
        "provider": record.get("provider") or (price.provider if price else "openai"),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_input_tokens": cached,
        "latency_ms": float(record.get("latency_ms", 0.0)),
        "cost_usd": float(record["cost_usd"]) if "cost_usd" in record else _cost(price, inp, cached, out),
        "status": "error" if error else "ok",
        "error_type": (error.get("type") if isinstance(error, dict) else str(error)) if error else None,
        "end_user_id": record.get("end_user_id") or request.get("user"),
        "tags": [str(t) for t in record.get("tags", [])],
        "routing_config_version": record.get("routing_config_version"),
        "request_json": json.dumps(request, separators=(",", ":")),
        "response_text": None if error else text,
    }


def import_openai_jsonl(path: str | Path, out: str | Path, project_id: str, catalog: Catalog) -> tuple[int, list[Path]]:
    """Import a JSONL file of chat request/response records; returns (rows, files written).

    Every line is validated before anything is written.
    """
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: line {i} is not valid JSON ({exc.msg})", param="file") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}: line {i} is not a JSON object", param="file")
            rows.append(openai_record(record, i, catalog))
    if not rows:
        raise ConfigError(f"{path} holds no records", param="file")
    schema = {k: v for k, v in SCHEMA.items() if k != "project_id"}
    frame = pl.DataFrame(rows, schema=schema)
    return frame.height, write_partitioned(frame, out, project_id, part=f"import-{Path(path).stem}")
