"""``openai-batch``: an OpenAI Batch API output file (and error file), joined to its input file.

Pass every file of a batch (``rehearsal logs import batch_input.jsonl batch_output.jsonl
batch_errors.jsonl``); each is told apart by its content, not its name:

- an **input** line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {chat
  request}}`` (the Batch API's ``BatchRequestInput``; ``url`` is the ``endpoint`` of
  ``src/openai/types/batch_create_params.py`` in ``openai/openai-python``);
- an **output** or **error** line is ``{"id": "batch_req_…", "custom_id", "response": {"status_code",
  "request_id", "body"} | null, "error": {"code", "message"} | null}`` (``BatchRequestOutput`` of the
  OpenAPI spec). A 200's ``body`` is a ``ChatCompletion`` (``src/openai/types/chat/chat_completion.py``,
  usage in ``src/openai/types/completion_usage.py``); a failed request's body is ``{"error":
  ErrorObject}`` (``src/openai/types/shared/error_object.py``); a request that never ran (the batch
  expired or was cancelled) has ``response: null`` and ``error`` (``code``/``message`` as in
  ``src/openai/types/batch_error.py``).

Mapping (our column ← their field):

- ``request_id`` ← the output line's ``id`` (``batch_req_…``: unique across batches and the same on every
  re-import; ``custom_id`` is unique only within one batch), else ``response.request_id``;
- ``timestamp`` ← ``response.body.created`` (unix seconds). A failed line carries no time: it gets the
  latest ``created`` of the files' completions (the batch was running then), and the report says so;
- ``model`` ← ``response.body.model`` (the snapshot that served it, as logged), else the input body's
  ``model``; ``provider`` ← ``azure`` for Azure OpenAI batches (``url`` without ``/v1``, or Azure's
  ``prompt_filter_results`` / ``content_filter_results`` in the body), else the model's vendor
  (``provider_from_model``), else ``openai``;
- tokens ← ``usage.prompt_tokens`` / ``completion_tokens`` / ``prompt_tokens_details.cached_tokens``
  (``prompt_tokens_details.cache_write_tokens`` → ``Row.cache_write_tokens``);
- ``status`` ← ``ok`` for a 2xx ``status_code``; ``error_type`` ← ``error_type(status_code, error code,
  type and message)``; ``batch_expired`` → ``timeout``;
- ``end_user_id`` ← the input body's ``safety_identifier``, else ``user``; ``tags`` ← ``batch``,
  ``custom_id:<custom_id>`` (the one id the user's own systems know the request by) and the input
  body's ``metadata`` map as ``key:value``;
- ``request_json`` ← the input line's ``body`` without ``stream``/``stream_options`` (``None`` when the
  output line's ``custom_id`` has no input line); ``response_text`` ← the first choice's message;
- ``cost_usd`` ← ``None`` (the files carry no cost: the import prices every row at the catalog's batch
  rates, ``Row.batch``); ``latency_ms`` ← ``None`` (a batch has no per-request latency).

Only ``/v1/chat/completions`` batches become rows: lines of ``/v1/embeddings``, ``/v1/responses`` and other
endpoints are refused with the endpoint named (the Responses API's input items and output items do not
map one-to-one onto chat messages, so they are not converted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from engine.importers import register
from engine.importers._base import (
    FileError,
    RecordError,
    Refusal,
    Row,
    Source,
    compact,
    dig,
    error_type,
    first_record,
    message_text,
    provider_from_model,
    records,
    tags,
    timestamp,
    tokens,
)

#: Request body keys left out of ``request_json`` (a batch never streams).
_DROPPED = ("stream", "stream_options")
#: What an output body's ``object`` says about the endpoint when the input line is missing.
_OBJECT_URLS = {
    "chat.completion": "/v1/chat/completions",
    "list": "/v1/embeddings",
    "response": "/v1/responses",
    "text_completion": "/v1/completions",
}


def _kind(record: Any) -> Literal["input", "output"] | None:
    """``input`` for a Batch input line, ``output`` for an output/error line, else ``None``."""
    if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
        return None
    if isinstance(record.get("url"), str) and "method" in record and isinstance(record.get("body"), dict):
        return "input"
    if "response" in record and "error" in record and not {"url", "method", "body"} & record.keys():
        response, error = record["response"], record["error"]
        if isinstance(response, dict | None) and isinstance(error, dict | None):
            return "output"
    return None


def _is_chat(url: str) -> bool:
    return url.split("?", 1)[0].rstrip("/").endswith("chat/completions")


@dataclass(slots=True)
class _Input:
    """What an output line needs from its input line."""

    url: str
    model: str | None
    request_json: str | None
    end_user_id: str | None
    tags: list[str]


@dataclass(slots=True)
class _Pending:
    """A failed line, waiting for the batch's time."""

    file: str
    line: int
    values: dict[str, Any]


@dataclass
class _Import:
    """What one import has learnt so far: the input lines, the batch's latest time, the waiting lines."""

    inputs: list[Path]
    known: dict[str, _Input | None] = field(default_factory=dict)
    latest: dt.datetime | None = None
    pending: list[_Pending] = field(default_factory=list)
    written: int = 0
    missing: int = 0
    stamped: int = 0


class OpenAIBatch:
    """OpenAI Batch API files: input, output and error JSON lines."""

    name: ClassVar[str] = "openai-batch"
    summary: ClassVar[str] = "OpenAI Batch API output and error files with the batch's input file, joined by custom_id"

    def sniff(self, first: Any) -> bool:
        """A Batch input line or output/error line."""
        return _kind(first) is not None

    def rows(self, source: Source) -> Iterator[Row | Refusal]:
        """Read the input files into a dict first, then stream the output and error files."""
        inputs, outputs = _classify(source.files)
        state = _Import(inputs)
        for path in inputs:
            yield from self._read_inputs(path, state.known)
        for path in outputs:
            yield from self._read_outputs(path, state)
        for item in state.pending:
            if state.latest is None:
                state.written -= 1
                yield Refusal(
                    item.file,
                    item.line,
                    "response.body.created",
                    "a failed request's line carries no time and no completed line of the batch gives one: "
                    "import the batch's error file together with its output file",
                )
                continue
            item.values["timestamp"] = state.latest
            state.stamped += 1
            yield Row(item.file, item.line, item.values, batch=True)
        source.notes.extend(_notes(state))

    def _read_outputs(self, path: Path, state: _Import) -> Iterator[Row | Refusal]:
        """Rows of one output or error file; failed lines wait in ``state.pending`` for the batch's time."""
        for line, record in records(path):
            if _kind(record) != "output":
                yield Refusal(
                    str(path), line, "record", "not a Batch output line (an object with custom_id, response, error)"
                )
                continue
            cid = record["custom_id"]
            try:
                values, cache_write = self._values(record, state.known.get(cid))
            except RecordError as exc:
                yield Refusal(str(path), line, exc.field, exc.message)
                continue
            state.written += 1
            if state.inputs and cid not in state.known:
                state.missing += 1
            when = values["timestamp"]
            if when is None:
                state.pending.append(_Pending(str(path), line, values))
                continue
            state.latest = when if state.latest is None else max(state.latest, when)
            yield Row(str(path), line, values, batch=True, cache_write_tokens=cache_write)

    def _read_inputs(self, path: Path, known: dict[str, _Input | None]) -> Iterator[Refusal]:
        """Fill ``known`` (custom_id → what its output line needs) from one input file."""
        for line, record in records(path):
            if _kind(record) != "input":
                yield Refusal(
                    str(path), line, "record", "not a Batch input line (an object with custom_id, method, url, body)"
                )
                continue
            entry, problem = self._input(record)
            cid = record["custom_id"]
            if cid in known and known[cid] != entry:
                known[cid] = None
            else:
                known.setdefault(cid, entry)
            if problem is not None:
                yield Refusal(str(path), line, problem.field, problem.message)

    def _input(self, record: dict[str, Any]) -> tuple[_Input, RecordError | None]:
        body: dict[str, Any] = record["body"]
        url: str = record["url"]
        model = body.get("model")
        entry = _Input(
            url=url,
            model=str(model) if model else None,
            request_json=None,
            end_user_id=_text(body.get("safety_identifier")) or _text(body.get("user")),
            tags=tags(body.get("metadata")) if isinstance(body.get("metadata"), dict) else [],
        )
        if not _is_chat(url):
            return entry, None
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            # The output line still imports (its usage is real), without the prompt.
            return entry, RecordError(
                "body.messages", "the prompt is not a list of chat messages (objects with a role): row kept without it"
            )
        entry.request_json = compact({k: v for k, v in body.items() if k not in _DROPPED})
        return entry, None

    def _values(self, record: dict[str, Any], entry: _Input | None) -> tuple[dict[str, Any], int]:
        """The log columns of one output line (``timestamp`` ``None`` for a failed line) and its cache writes."""
        cid: str = record["custom_id"]
        response: dict[str, Any] | None = record["response"]
        error: dict[str, Any] | None = record["error"]
        if response is None and error is None:
            raise RecordError("response", "neither a response nor an error")
        body: dict[str, Any] = {}
        status_code: int | None = None
        if response is not None:
            if not isinstance(response.get("body"), dict):
                raise RecordError("response.body", "missing or not a JSON object")
            body = response["body"]
            status_code = response.get("status_code")
            if not isinstance(status_code, int) or isinstance(status_code, bool):
                raise RecordError("response.status_code", f"{status_code!r} is not an HTTP status")
        url = entry.url if entry else _OBJECT_URLS.get(str(body.get("object")), "/v1/chat/completions")
        if not _is_chat(url):
            raise RecordError(
                "url" if entry else "response.body.object",
                f"a {url} request: only /v1/chat/completions batches become log rows",
            )
        request_id = _text(record.get("id")) or _text(dig(response, "request_id"))
        if not request_id:
            raise RecordError("id", "missing: the line has neither an id nor a response.request_id")
        ok = status_code is not None and 200 <= status_code < 300
        model = (body.get("model") if ok else None) or (entry.model if entry else None)
        if not model:
            raise RecordError(
                "response.body.model" if ok else "custom_id",
                "missing" if ok else "a failed request whose input line is missing: no model to log it under",
            )
        first_choice = dig(body, "choices", 0)
        azure = (
            not url.startswith("/v1/")
            or "prompt_filter_results" in body
            or (isinstance(first_choice, dict) and "content_filter_results" in first_choice)
        )
        values: dict[str, Any] = {
            "request_id": request_id,
            "timestamp": None,
            "model": str(model),
            "provider": "azure" if azure else provider_from_model(str(model)) or "openai",
            "input_tokens": 0,
            "output_tokens": 0,
            "cached_input_tokens": 0,
            "latency_ms": None,
            "cost_usd": None,
            "status": "ok" if ok else "error",
            "error_type": None if ok else _failure(status_code, error, body),
            "end_user_id": entry.end_user_id if entry else None,
            "tags": ["batch", f"custom_id:{cid}", *(entry.tags if entry else [])],
            "routing_config_version": None,
            "request_json": entry.request_json if entry else None,
            "response_text": None,
        }
        if not ok:
            return values, 0
        usage = body.get("usage")
        if not isinstance(usage, dict):
            raise RecordError("response.body.usage", "missing: a completion without token counts")
        details = "response.body.usage.prompt_tokens_details"
        values["timestamp"] = timestamp(body.get("created"), "response.body.created")
        values["input_tokens"] = tokens(usage.get("prompt_tokens"), "response.body.usage.prompt_tokens")
        values["output_tokens"] = tokens(usage.get("completion_tokens"), "response.body.usage.completion_tokens")
        values["cached_input_tokens"] = tokens(
            dig(usage, "prompt_tokens_details", "cached_tokens"), f"{details}.cached_tokens", default=0
        )
        cache_write = tokens(
            dig(usage, "prompt_tokens_details", "cache_write_tokens"), f"{details}.cache_write_tokens", default=0
        )
        if values["cached_input_tokens"] + cache_write > values["input_tokens"]:
            raise RecordError(details, "more cached and cache-written prompt tokens than prompt tokens")
        values["response_text"] = message_text(dig(body, "choices", 0, "message"))
        return values, cache_write


def _classify(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The input files and the output/error files, told apart by their first records."""
    inputs: list[Path] = []
    outputs: list[Path] = []
    for path in files:
        first = first_record(path)
        if first is None:
            continue  # an empty file: nothing to read
        kind = _kind(first)
        if kind is None:
            raise FileError(
                f"{path}: neither a Batch input file (custom_id, method, url, body) nor a Batch output or "
                "error file (id, custom_id, response, error)"
            )
        (inputs if kind == "input" else outputs).append(path)
    if inputs and not outputs:
        raise FileError(
            "only Batch input files were given: pass the batch's output file (and its error file) with them"
        )
    return inputs, outputs


def _notes(state: _Import) -> list[str]:
    """The report's sentences about what the Batch files lack and what the import did about it."""
    if not state.written:
        return []
    notes = [
        "OpenAI Batch API files carry no cost: their rows are priced from the catalog at its batch rates "
        "(the Batch API bills below list prices).",
        "A batch has no per-request latency (requests wait in a queue for up to the completion window): "
        "its rows' latency is unknown.",
    ]
    if not state.inputs:
        notes.append(
            "No Batch input file was given: the rows carry no prompt (request_json), and failed requests, whose "
            "lines name no model, are refused; pass the batch's input file too to keep them."
        )
    ambiguous = sum(1 for entry in state.known.values() if entry is None)
    if ambiguous:
        notes.append(
            f"{ambiguous:,} custom_id(s) appear on more than one input line with different requests (two "
            "batches' files imported together?): their rows carry no prompt; import one batch at a time."
        )
    if state.missing:
        notes.append(
            f"{state.missing:,} output line(s) have no line in the input file(s) given (same custom_id): their rows "
            "carry no prompt (request_json)."
        )
    if state.stamped and state.latest is not None:
        notes.append(
            f"{state.stamped:,} failed request(s) carry no time of their own: they are stamped with the batch's "
            f"last completion time ({state.latest.isoformat()})."
        )
    return notes


def _failure(status_code: Any, error: dict[str, Any] | None, body: dict[str, Any] | None) -> str:
    """Our ``error_type`` of a failed line: from the line's ``error`` or the error body and the status."""
    if error is not None and error.get("code") == "batch_expired":
        return "timeout"
    detail = error if error is not None else dig(body, "error")
    if not isinstance(detail, dict):
        return error_type(status_code, detail)
    words = " ".join(str(detail[k]) for k in ("code", "type", "message") if detail.get(k))
    return error_type(status_code, words)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


register(OpenAIBatch())
