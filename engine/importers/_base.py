"""What every importer shares: the interface, the record readers and the field converters.

An importer turns one tool's files into rows of the log schema (``engine.logs.SCHEMA``, without
``project_id``). It never prices, de-duplicates or writes: ``engine.importers.run_import`` does that
for every format alike, so each format module is only its field mapping.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import orjson

#: Our error taxonomy (``error_type`` of a failed row).
ERROR_TYPES = (
    "rate_limit",
    "timeout",
    "server_error",
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "content_filter",
    "context_length",
    "connection_error",
    "unknown_error",
)


class RecordError(ValueError):
    """A record that cannot become a row; ``field`` names where (``response.usage.prompt_tokens``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Row:
    """One log row from one record, with what the importer could not fill.

    ``values`` holds the log columns; ``cost_usd`` and ``latency_ms`` may be ``None`` (unknown: the
    import prices the row from the catalog, or counts the missing latency). ``batch`` marks a row billed
    at batch rates; ``cache_write_tokens`` is priced where the catalog has a rate for it.
    """

    file: str
    line: int
    values: dict[str, Any]
    batch: bool = False
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Refusal:
    """A record that was refused: where, which field, why."""

    file: str
    line: int
    field: str
    reason: str


@dataclass
class Source:
    """The files of one import, as an importer reads them; it may add notes for the report."""

    files: Sequence[Path]
    notes: list[str] = field(default_factory=list)
    skipped: int = 0  # records read but not imported, on purpose (not LLM calls): say why in ``notes``


class Importer(Protocol):
    """One log format. Register an instance with ``engine.importers.register``.

    ``sniff`` looks at the first record of a file (as ``records`` yields it) and says whether the format
    reads such files (its companion files too: a Batch input file, a Langfuse traces file).
    ``rows`` yields a ``Row`` or a ``Refusal`` per record, in file order, streaming.
    """

    name: ClassVar[str]
    summary: ClassVar[str]

    def sniff(self, first: Any) -> bool: ...

    def rows(self, source: Source) -> Iterator[Row | Refusal]: ...


# -- reading records ---------------------------------------------------------------------------------


class FileError(ValueError):
    """A file that cannot be read at all (not JSON, truncated): the import stops and writes nothing."""


def records(path: Path) -> Iterator[tuple[int, Any]]:
    """Every record of a file with its line number.

    A file is JSON lines, one JSON document (an array, an object with a ``data`` array as API pages
    are, or any other object), or CSV with a header row (by its ``.csv`` suffix).

    JSON lines are parsed one at a time (constant memory); a whole-document file is parsed at once.
    """
    if path.suffix.lower() == ".csv":
        yield from _csv_records(path)
        return
    with path.open("rb") as fh:
        head = fh.read(1 << 16).lstrip()
    if not head:
        return
    if head[:1] == b"[" or (head[:1] == b"{" and not _first_line_is_json(path)):
        yield from _document_records(path)
        return
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield number, orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise FileError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None


def _first_line_is_json(path: Path) -> bool:
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return False
                return True
    return True


def _document_records(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise FileError(f"{path}: not valid JSON ({exc.msg})") from None
    items = doc.get("data") if isinstance(doc, dict) and isinstance(doc.get("data"), list) else doc
    if isinstance(items, list):
        yield from ((i, item) for i, item in enumerate(items, start=1))
    else:
        yield 1, items


def _csv_records(path: Path) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            yield reader.line_num, row


def first_record(path: Path) -> Any:
    """The first record of a file (for sniffing), or ``None`` when it holds none."""
    try:
        return next((record for _, record in records(path)), None)
    except FileError:
        return None


# -- converting fields -------------------------------------------------------------------------------

_DIGITS = re.compile(r"^-?\d+(\.\d+)?$")


def timestamp(value: Any, field: str) -> dt.datetime:
    """A UTC datetime from ISO-8601 text or a unix time in seconds, milliseconds, microseconds or nanoseconds.

    The units are told apart by magnitude: any real date since 1973 in one unit is far from the others.
    """
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or value is None:
        raise RecordError(field, "missing timestamp")
    if isinstance(value, int | float):
        magnitude = abs(value)
        seconds = (
            value
            if magnitude < 1e11
            else value / 1e3
            if magnitude < 1e14
            else value / 1e6
            if magnitude < 1e17
            else value / 1e9
        )
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise RecordError(field, f"timestamp {value!r} is out of range") from None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(field, f"timestamp {value!r} is neither ISO-8601 nor a unix time") from None
    else:
        raise RecordError(field, f"timestamp {value!r} is neither ISO-8601 nor a unix time")
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def tokens(value: Any, field: str, *, default: int | None = None) -> int:
    """A non-negative token count (ints as JSON numbers or strings); ``default`` when absent."""
    if value is None or value == "":
        if default is None:
            raise RecordError(field, "missing token count")
        return default
    try:
        count = int(value) if not isinstance(value, float) or value.is_integer() else -1
    except (TypeError, ValueError):
        raise RecordError(field, f"token count {value!r} is not a whole number") from None
    if isinstance(value, bool) or count < 0:
        raise RecordError(field, f"token count {value!r} is not a whole number ≥ 0")
    return count


def number(value: Any, field: str) -> float | None:
    """A finite non-negative number, or ``None`` when absent."""
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RecordError(field, f"{value!r} is not a number") from None
    if isinstance(value, bool) or not (out >= 0 and out != float("inf")):
        raise RecordError(field, f"{value!r} is not a finite number ≥ 0")
    return out


def tags(value: Any) -> list[str]:
    """Tags from a list, a comma-separated string or a metadata map (``key:value``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, dict):
        return [f"{k}:{v}" if not isinstance(v, dict | list) else f"{k}:{compact(v)}" for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [str(t) if not isinstance(t, dict | list) else compact(t) for t in value if t is not None]
    return [str(value)]


def error_type(status_code: Any = None, text: Any = None) -> str:
    """Our ``error_type`` from an HTTP status and/or a provider's error type, code or message."""
    words = str(text or "").lower()
    for needle, kind in _ERROR_WORDS:
        if needle in words:
            return kind
    try:
        code = int(status_code) if status_code not in (None, "") else None
    except (TypeError, ValueError):
        code = None
    if code is not None:
        if code in _ERROR_CODES:
            return _ERROR_CODES[code]
        if code >= 500:
            return "server_error"
        if code >= 400:
            return "invalid_request"
    return "unknown_error"


_ERROR_WORDS = (
    ("ratelimit", "rate_limit"),
    ("rate_limit", "rate_limit"),
    ("rate limit", "rate_limit"),
    ("too many requests", "rate_limit"),
    ("context_length", "context_length"),
    ("contextwindow", "context_length"),
    ("context window", "context_length"),
    ("maximum context", "context_length"),
    ("content_filter", "content_filter"),
    ("contentpolicy", "content_filter"),
    ("content policy", "content_filter"),
    ("timeout", "timeout"),
    ("timed out", "timeout"),
    ("authentication", "authentication"),
    ("invalid api key", "authentication"),
    ("incorrect api key", "authentication"),
    ("permission", "permission"),
    ("notfound", "not_found"),
    ("not_found", "not_found"),
    ("does not exist", "not_found"),
    ("connection", "connection_error"),
    ("badrequest", "invalid_request"),
    ("bad request", "invalid_request"),
    ("invalid_request", "invalid_request"),
    ("unprocessable", "invalid_request"),
    ("internalserver", "server_error"),
    ("internal server", "server_error"),
    ("server_error", "server_error"),
    ("serviceunavailable", "server_error"),
    ("overloaded", "server_error"),
    ("apierror", "server_error"),
)
_ERROR_CODES = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "context_length",
    422: "invalid_request",
    429: "rate_limit",
    504: "timeout",
}


def compact(value: Any) -> str:
    """JSON without spaces (a request body as the store keeps it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def message_text(message: Any) -> str | None:
    """The text of an OpenAI chat message: string content, text parts joined, tool calls as JSON."""
    if not isinstance(message, dict):
        return message if isinstance(message, str) else None
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("text"))
    if message.get("tool_calls"):
        calls = compact(message["tool_calls"])
        return f"{content}\n{calls}" if content else calls
    return content if isinstance(content, str) else None


def chat_body(messages: Any, field: str, **params: Any) -> str:
    """``request_json``: an OpenAI chat request with ``messages`` (a list of role/content objects)."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise RecordError(field, "the prompt is not a list of chat messages (objects with a role)")
    body = {"messages": messages, **{k: v for k, v in params.items() if v is not None}}
    return compact(body)


def dig(record: Any, *path: str | int) -> Any:
    """``record[a][b]…`` or ``None`` where any step is missing."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(record, list) or not -len(record) <= step < len(record):
                return None
            record = record[step]
        elif isinstance(record, dict):
            record = record.get(step)
        else:
            return None
    return record


_VENDOR_PREFIXES = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "davinci", "babbage", "ft:gpt"), "openai"),
    (("claude",), "anthropic"),
    (("gemini", "gemma"), "google"),
    (("mistral", "mixtral", "codestral", "ministral", "magistral", "pixtral"), "mistral"),
    (("command",), "cohere"),
    (("grok",), "xai"),
    (("deepseek",), "deepseek"),
    (("llama", "meta-llama"), "meta"),
)


def provider_from_model(model: str) -> str | None:
    """The vendor a model name implies: its ``vendor/`` prefix, else its family's name; ``None`` if neither."""
    if "/" in model:
        return model.split("/", 1)[0].lower() or None
    lowered = model.lower()
    for prefixes, vendor in _VENDOR_PREFIXES:
        if lowered.startswith(prefixes):
            return vendor
    return None
