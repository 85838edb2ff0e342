"""The simulated provider: a deterministic OpenAI-compatible HTTP server on loopback.

Tests, the demo and the benchmarks reach it through the real ``openai`` SDK,
so they exercise the same code path as a real vendor. Each model has a
profile (``SimProfile``): its latency, how often it fails and how, how long
its answers are and how far they stray from the logged baseline answer.
Everything is a function of (model, prompt, attempt), drawn from SHA-256
hashes, so a run repeats exactly; the one piece of state is a per-pair
attempt counter, which lets a retried call succeed.

It also acts as an LLM judge: a chat request whose system message starts
with the first line of ``engine.judge.JUDGE_SYSTEM`` gets a verdict in the
judge's JSON contract, decided from the two answers' content and made as
imperfect as the profile's ``judge`` section says (see ``_sim_judge``).

The layers: the profile models and pure functions (outcome draw, delay,
token counts, response bodies), then ``Simulator`` (request bytes in, reply
out, no I/O but the call log), then the Starlette app and ``SimServer``
(uvicorn in a background thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Any, Literal

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.configfile import load_yaml_model
from engine.errors import ConfigError
from engine.providers._base import PAIR_HEADER, REPORTED_COST_HEADER
from engine.providers._sim_judge import JudgeDraw, SimJudgeProfile, is_judge_system, sim_judge_reply
from engine.providers._sim_text import (
    Divergence,
    DivergenceKind,
    SimAnswer,
    baseline_sentences,
    sim_answer,
    stable_digest,
    stable_rng,
    stable_unit,
)
from engine.settings import CONFIGS_DIR

__all__ = [
    "DEFAULT_SIM_CONFIG",
    "MESSAGE_OVERHEAD_TOKENS",
    "SIMULATOR_HEADER",
    "SYSTEM_FINGERPRINT",
    "CallLog",
    "Divergence",
    "Outcome",
    "SimAnswer",
    "SimCall",
    "SimConfig",
    "SimJudgeProfile",
    "SimProfile",
    "SimReply",
    "SimRequestError",
    "SimServer",
    "Simulator",
    "baseline_sentences",
    "completion_body",
    "count_prompt_tokens",
    "count_tokens",
    "create_app",
    "draw_delay_s",
    "draw_outcome",
    "error_body",
    "is_judge_call",
    "last_user_text",
    "load_sim_config",
    "message_text",
    "models_body",
    "parse_chat_request",
    "sim_answer",
    "simulate_chat",
]

#: The shipped simulator profiles.
DEFAULT_SIM_CONFIG = CONFIGS_DIR / "sim.yaml"
#: Header on every simulator response, so nobody mistakes it for a real vendor.
SIMULATOR_HEADER = "X-Rehearsal-Simulator"
#: ``system_fingerprint`` of every completion.
SYSTEM_FINGERPRINT = "rehearsal-simulator"
#: Tokens added per chat message for the role and separators.
MESSAGE_OVERHEAD_TOKENS = 4
#: Characters per token of the simulator's token estimate.
CHARS_PER_TOKEN = 4

Outcome = Literal["ok", "rate_limit", "server_error", "timeout", "malformed", "invalid_request", "not_found"]
Probability = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class SimProfile(BaseModel):
    """How one simulated model behaves; the defaults describe a fast, reliable model that repeats the baseline."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: NonNegative = Field(500.0, description="Time to first token in milliseconds, before jitter.")
    output_tokens_per_s: Annotated[float, Field(gt=0)] = Field(
        100.0, description="Generation rate; the answer's completion tokens take `tokens / rate` seconds."
    )
    jitter: NonNegative = Field(
        0.0, description="Sigma of the lognormal factor (median 1) that multiplies each call's latency; 0 = none."
    )
    rate_limit: Probability = Field(
        0.0, description="Probability per attempt of an HTTP 429 with a `Retry-After` header of `retry_after_s`."
    )
    retry_after_s: NonNegative = Field(
        1.0, description="Seconds sent in `Retry-After` on a 429; sent as is (the client does the waiting)."
    )
    server_error: Probability = Field(0.0, description="Probability per attempt of an HTTP 500.")
    timeout: Probability = Field(
        0.0,
        description="Probability per attempt that the server hangs `hang_s` seconds (the client should time out "
        "first); a client still waiting then gets an HTTP 504.",
    )
    hang_s: NonNegative = Field(120.0, description="How long a `timeout` attempt hangs, in seconds.")
    malformed: Probability = Field(
        0.0, description="Probability per attempt of an HTTP 200 whose JSON body is cut off (not valid JSON)."
    )
    verbosity: Annotated[float, Field(gt=0)] = Field(
        1.0, description="Answer length relative to the logged baseline answer (in sentences, at least one)."
    )
    divergence: Divergence = Field(
        default_factory=Divergence,
        description="Shares of answers close to the baseline, mildly different (same topic) and far (another "
        "topic); they sum to 1. A strong model is mostly close, a weak one spreads wide.",
    )
    reported_cost_per_mtok: NonNegative | None = Field(
        None,
        description="Report each answered call's cost in an `x-litellm-response-cost` header, as a LiteLLM proxy "
        "does: (prompt + completion tokens) x this / 1e6 USD. None: no header.",
    )
    reported_cost_missing: Probability = Field(
        0.0,
        description="Probability per answered call that the cost header is left out (a proxy with no price for "
        "the model sends none). Only with `reported_cost_per_mtok`.",
    )
    judge: SimJudgeProfile = Field(
        default_factory=SimJudgeProfile,
        description="How the model behaves as an LLM judge (on calls carrying the judge system message): how "
        "often it breaks the JSON contract, fences its JSON, favours answer A, and follows the answers' content.",
    )

    @model_validator(mode="after")
    def _errors_fit(self) -> SimProfile:
        total = self.rate_limit + self.server_error + self.timeout + self.malformed
        if total > 1 + 1e-9:
            raise ValueError(f"rate_limit + server_error + timeout + malformed must be at most 1, got {total:.6g}")
        return self


class SimConfig(BaseModel):
    """The simulator's models and its clock."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, SimProfile] = Field(
        default_factory=dict, description="Profiles by model name, as requests name the model."
    )
    default: SimProfile = Field(
        default_factory=SimProfile, description="Profile of any model not listed under `models`."
    )
    time_scale: NonNegative = Field(
        1.0, description="Multiplies every sleep of the server (latency and hangs): 1 = real time, 0 = instant."
    )
    known_models_only: bool = Field(
        False,
        description="Answer a model not listed under `models` with HTTP 404 `model_not_found`, as OpenAI does for "
        "a model that does not exist (the `default` profile then serves no one). False: `default` serves it.",
    )

    def profile(self, model: str) -> SimProfile:
        """The profile of ``model``, or the default one."""
        return self.models.get(model, self.default)


def load_sim_config(path: str | Path) -> SimConfig:
    """Read and validate a simulator config file; a ``ConfigError`` names the bad field."""
    return load_yaml_model(path, SimConfig, what="simulator config", missing_param="config")


def count_tokens(text: str) -> int:
    """The simulator's token estimate of ``text``: one token per four characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_text(message: Mapping[str, Any]) -> str:
    """The text a chat message carries: its content (string or text parts) and any tool-call arguments."""
    content = message.get("content")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    tool_calls = message.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(f"{function.get('name', '')}({function.get('arguments', '')})")
    return "\n".join(parts)


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]], tools: list[Any] | None = None) -> int:
    """Prompt tokens of a request: each message's text estimate plus a small overhead, and the tool schemas."""
    tokens = sum(count_tokens(message_text(m)) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    if tools:
        tokens += count_tokens(json.dumps(tools, separators=(",", ":")))
    return tokens


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message (the prompt the answer is about); empty when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def is_judge_call(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a chat request is a judge call: a system (or developer) message starts with the judge's first line."""
    return any(m.get("role") in ("system", "developer") and is_judge_system(message_text(m)) for m in messages)


def draw_outcome(profile: SimProfile, model: str, prompt: str, attempt: int) -> Outcome:
    """What attempt number ``attempt`` of ``model`` on ``prompt`` does: ``ok`` or one of the injected errors."""
    u = stable_unit("outcome", model, prompt, attempt)
    mix: tuple[tuple[Outcome, float], ...] = (
        ("rate_limit", profile.rate_limit),
        ("server_error", profile.server_error),
        ("timeout", profile.timeout),
        ("malformed", profile.malformed),
    )
    for outcome, probability in mix:
        if u < probability:
            return outcome
        u -= probability
    return "ok"


def draw_delay_s(
    profile: SimProfile, model: str, prompt: str, attempt: int, completion_tokens: int, time_scale: float
) -> float:
    """Seconds the server waits before answering: ``time_scale * (ttft + tokens / rate) * lognormal(jitter)``."""
    if time_scale <= 0:
        return 0.0
    factor = float(stable_rng("latency", model, prompt, attempt).lognormal(0.0, profile.jitter))
    seconds = (profile.ttft_ms + completion_tokens / profile.output_tokens_per_s * 1000) / 1000
    return time_scale * seconds * factor


def completion_body(
    model: str, text: str, *, prompt_tokens: int, completion_tokens: int, completion_id: str, created: int
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object holding one answer."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def error_body(message: str, error_type: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def models_body(names: list[str]) -> dict[str, Any]:
    """The ``GET /v1/models`` list of the simulated models."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "rehearsal-simulator"} for name in names],
    }


class SimRequestError(ValueError):
    """A chat request the simulator refuses with an HTTP 400, as OpenAI would."""

    def __init__(self, message: str, *, param: str | None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def parse_chat_request(raw: bytes) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """The model, the messages and the whole body of a chat request; a ``SimRequestError`` if it is invalid."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise SimRequestError(
            "We could not parse the JSON body of your request.", param=None, code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise SimRequestError("The request body must be a JSON object.", param=None, code="invalid_type")
    if "messages" not in body:
        raise SimRequestError(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise SimRequestError(
            "Invalid 'messages': expected a non-empty array of message objects.", param="messages", code="invalid_type"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRequestError("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if body.get("stream"):
        raise SimRequestError(
            "The rehearsal simulator does not stream; send stream=false.", param="stream", code="unsupported_value"
        )
    return model, messages, body


@dataclass(frozen=True)
class SimReply:
    """What the simulator sends back, how long it waits first, and what it drew."""

    status_code: int
    body: bytes
    outcome: Outcome
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    divergence: DivergenceKind | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: On an answered judge call, how the verdict was drawn; ``None`` on any other call.
    judge: JudgeDraw | None = None


def _json_reply(
    status_code: int, outcome: Outcome, payload: dict[str, Any], headers: dict[str, str], delay_s: float = 0.0
) -> SimReply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SimReply(status_code, body, outcome, {**headers, "content-type": "application/json"}, delay_s)


def simulate_chat(
    config: SimConfig, model: str, messages: list[dict[str, Any]], attempt: int, *, tools: list[Any] | None = None
) -> SimReply:
    """The reply to attempt number ``attempt`` of a chat request to ``model``: an answer or an injected error.

    A judge call (``is_judge_call``) is answered with a verdict drawn from the
    profile's ``judge`` section instead of an answer. With ``known_models_only``, a model
    the config does not list gets OpenAI's 404 ``model_not_found``; a profile with
    ``reported_cost_per_mtok`` reports each answer's cost in a header, as a LiteLLM proxy does.
    """
    profile = config.profile(model)
    scale = config.time_scale
    prompt = last_user_text(messages)
    headers = {"x-request-id": "req_sim_" + stable_digest("request", model, prompt, attempt).hex()[:24]}
    if config.known_models_only and model not in config.models:
        message = f"The model `{model}` does not exist or you do not have access to it."
        payload = error_body(message, "invalid_request_error", code="model_not_found")
        return _json_reply(404, "not_found", payload, headers)
    outcome = draw_outcome(profile, model, prompt, attempt)
    if outcome == "rate_limit":
        retry_after = f"{profile.retry_after_s:g}"
        message = f"Rate limit reached for {model} (rehearsal simulator). Please try again in {retry_after}s."
        payload = error_body(message, "requests", code="rate_limit_exceeded")
        return _json_reply(429, outcome, payload, {**headers, "retry-after": retry_after})
    if outcome == "server_error":
        message = "The server had an error while processing your request (rehearsal simulator)."
        delay = draw_delay_s(profile, model, prompt, attempt, 0, scale)
        return _json_reply(500, outcome, error_body(message, "server_error"), headers, delay)
    if outcome == "timeout":
        message = f"The model did not answer within {profile.hang_s:g}s (rehearsal simulator)."
        payload = error_body(message, "server_error", code="timeout")
        return _json_reply(504, outcome, payload, headers, scale * profile.hang_s)
    divergence: DivergenceKind | None = None
    judge: JudgeDraw | None = None
    if is_judge_call(messages):
        verdict = sim_judge_reply(profile.judge, model, prompt, attempt)
        answer_text, judge = verdict.text, verdict.draw
    else:
        answer = sim_answer(model, prompt, verbosity=profile.verbosity, divergence=profile.divergence)
        answer_text, divergence = answer.text, answer.divergence
    prompt_tokens = count_prompt_tokens(messages, tools)
    completion_tokens = count_tokens(answer_text)
    completion = completion_body(
        model,
        answer_text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        completion_id="chatcmpl-sim-" + stable_digest("completion", model, prompt, attempt).hex()[:24],
        created=int(time.time()),
    )
    text = json.dumps(completion, separators=(",", ":"))
    if profile.reported_cost_per_mtok is not None and not (
        stable_unit("reported-cost", model, prompt, attempt) < profile.reported_cost_missing
    ):
        cost = (prompt_tokens + completion_tokens) * profile.reported_cost_per_mtok / 1e6
        headers[REPORTED_COST_HEADER] = f"{cost:.10g}"
    if outcome == "malformed":
        # A body cut off mid-transfer: status and headers look fine, the JSON does not parse.
        text = text[: len(text) // 2]
    return SimReply(
        200,
        text.encode(),
        outcome,
        {**headers, "content-type": "application/json"},
        draw_delay_s(profile, model, prompt, attempt, completion_tokens, scale),
        divergence,
        prompt_tokens,
        completion_tokens,
        judge,
    )


# --- the stateful core: attempt counters and the call log --------------------------------------------------------


@dataclass(frozen=True)
class SimCall:
    """One request as the simulator saw it, recorded when it arrives (before any sleep)."""

    timestamp: str
    pair_id: str | None
    model: str
    attempt: int
    outcome: Outcome
    status_code: int
    divergence: DivergenceKind | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    delay_s: float = 0.0
    #: On an answered judge call, how the verdict was drawn (``content``, ``position_bias``, ``random`` or
    #: ``parse_failure``); ``None`` on any other call.
    judge: JudgeDraw | None = None


class CallLog:
    """Every call in memory and, when a path is given, one JSON line per call appended (and flushed) to a file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._calls: list[SimCall] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def record(self, call: SimCall) -> None:
        """Keep ``call`` and append it to the file."""
        with self._lock:
            self._calls.append(call)
            if self.path is None:
                return
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(asdict(call), separators=(",", ":")) + "\n")
            self._file.flush()

    @property
    def calls(self) -> list[SimCall]:
        """A snapshot of the calls so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def close(self) -> None:
        """Close the file; a later call reopens it."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Simulator:
    """Request bytes in, reply out: the simulated provider without its HTTP shell.

    Its one piece of state besides the call log is an attempt counter per
    (model, pair id) — per (model, prompt) when a request carries no pair id —
    so a retry draws its outcome afresh and can succeed. Judge calls count
    per (model, pair id, judge message) apart from the pair's other calls, so
    asking both orders of a pair, or judging with the candidate's model, does
    not turn a first call into a retry.
    """

    def __init__(self, config: SimConfig, *, call_log: str | Path | None = None) -> None:
        self.config = config
        self.call_log = CallLog(call_log)
        self._attempts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[SimCall]:
        """Every call so far, oldest first."""
        return self.call_log.calls

    def reply(self, raw: bytes, pair_id: str | None = None) -> SimReply:
        """Answer one ``POST /v1/chat/completions`` body and record the call."""
        try:
            model, messages, body = parse_chat_request(raw)
        except SimRequestError as exc:
            payload = error_body(exc.message, "invalid_request_error", param=exc.param, code=exc.code)
            reply = _json_reply(400, "invalid_request", payload, {})
            self._record(pair_id, "", 0, reply)
            return reply
        tools = body.get("tools") if isinstance(body.get("tools"), list) else None
        prompt = last_user_text(messages)
        key = pair_id if pair_id is not None else prompt
        if is_judge_call(messages):
            key = "\x1f".join(("judge", key, stable_digest("judge", prompt).hex()))
        attempt = self._next_attempt(model, key)
        reply = simulate_chat(self.config, model, messages, attempt, tools=tools)
        self._record(pair_id, model, attempt, reply)
        return reply

    def _next_attempt(self, model: str, key: str) -> int:
        with self._lock:
            attempt = self._attempts.get((model, key), 0) + 1
            self._attempts[(model, key)] = attempt
        return attempt

    def _record(self, pair_id: str | None, model: str, attempt: int, reply: SimReply) -> None:
        self.call_log.record(
            SimCall(
                timestamp=dt.datetime.now(dt.UTC).isoformat(),
                pair_id=pair_id,
                model=model,
                attempt=attempt,
                outcome=reply.outcome,
                status_code=reply.status_code,
                divergence=reply.divergence,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                delay_s=round(reply.delay_s, 6),
                judge=reply.judge,
            )
        )


# --- the HTTP shell ---------------------------------------------------------------------------------------------


class _SimulatorHeader:
    """ASGI middleware: mark every response as coming from the simulator."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(SIMULATOR_HEADER, "true")
            await send(message)

        await self.app(scope, receive, send_marked)


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _pause(request: Request, seconds: float) -> None:
    """Sleep ``seconds``, or less if the client hangs up first (a timed-out client frees the server)."""
    if seconds <= 0:
        return
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    _, pending = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _json_response(status_code: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code, media_type="application/json")


def create_app(simulator: Simulator) -> Starlette:
    """The simulator's ASGI app: ``POST /v1/chat/completions``, ``GET /v1/models``, and OpenAI-style errors."""

    async def chat_completions(request: Request) -> Response:
        reply = simulator.reply(await request.body(), request.headers.get(PAIR_HEADER))
        await _pause(request, reply.delay_s)
        return Response(reply.body, reply.status_code, headers=reply.headers)

    async def list_models(request: Request) -> Response:
        return _json_response(200, models_body(sorted(simulator.config.models)))

    async def embeddings(request: Request) -> Response:
        message = "The rehearsal simulator does not serve embeddings; rehearsal embeds texts locally."
        return _json_response(404, error_body(message, "invalid_request_error", code="unknown_url"))

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"Unknown request URL: {request.method} {request.url.path} (rehearsal simulator)."
        return _json_response(404, error_body(message, "invalid_request_error", code="unknown_url"))

    async def not_allowed(request: Request, exc: Exception) -> Response:
        message = f"Method {request.method} is not allowed on {request.url.path} (rehearsal simulator)."
        return _json_response(405, error_body(message, "invalid_request_error", code="method_not_allowed"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            simulator.call_log.close()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ],
        middleware=[Middleware(_SimulatorHeader)],
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )


class SimServer:
    """The simulator served by uvicorn in a background thread on loopback; a context manager.

    ``config=None`` serves the shipped profiles (``configs/sim.yaml``, real
    time). ``port=0`` picks a free port. Inside the ``with`` block the server
    accepts connections at ``base_url``; leaving it stops the server and
    closes the call log.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        call_log: str | Path | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.config = config if config is not None else load_sim_config(DEFAULT_SIM_CONFIG)
        self.simulator = Simulator(self.config, call_log=call_log)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def calls(self) -> list[SimCall]:
        """Every call the server has received, oldest first."""
        return self.simulator.calls

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SimServer:
        """Bind, start serving in a background thread and wait until connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the simulator server is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, or asyncio leaves TCP_NODELAY off and every reused connection waits ~40 ms
        # on delayed ACKs.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"the simulator cannot listen on {self.host}:{self.port}: {exc}", param="port") from None
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.simulator), log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"sim-provider:{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        with socket.create_connection((self.host, self.port), timeout=self.startup_timeout_s):
            pass

    def stop(self) -> None:
        """Stop the server, wait for its thread and close the call log."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self.simulator.call_log.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
