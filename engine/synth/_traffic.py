"""Realistic synthetic gateway traffic for the demo, the tests and the benchmarks.

Volume follows a daily cycle, token counts have heavy tails, latency grows
with output tokens plus noise, errors come in the usual kinds at realistic
rates, and prompts and answers are topic-coherent text (see ``_topics``).
Everything derives from one seed: the same arguments write the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from engine.pricing import Catalog
from engine.synth._topics import TOPICS

#: Baseline traffic mix (model -> share); two vendors and more, at real relative prices.
TRAFFIC_MIX: dict[str, float] = {
    "gpt-4o": 0.30,
    "gpt-4o-mini": 0.22,
    "gpt-4.1": 0.10,
    "claude-sonnet-4": 0.20,
    "claude-3-5-haiku": 0.12,
    "gemini-2.5-flash": 0.06,
}
#: Answer length relative to the mix's average, per model.
VERBOSITY = {"claude-sonnet-4": 1.2, "claude-3-5-haiku": 1.05, "gpt-4o-mini": 0.85, "gemini-2.5-flash": 1.1}
#: Error rate per model (any kind).
ERROR_RATE = {
    "gpt-4o": 0.015,
    "gpt-4o-mini": 0.010,
    "gpt-4.1": 0.012,
    "claude-sonnet-4": 0.025,
    "claude-3-5-haiku": 0.015,
    "gemini-2.5-flash": 0.020,
}
ERROR_TYPES = ("rate_limit", "server_error", "timeout", "invalid_request")
ERROR_MIX = (0.50, 0.25, 0.20, 0.05)
#: Client timeout used for the ``timeout`` error rows.
TIMEOUT_MS = 60_000.0

_GREETINGS = ("", "Hi! ", "Hello, ", "Quick question: ", "Hey team, ")
_SUFFIXES = (
    "",
    " Thanks!",
    " Please keep it short.",
    " I'm in a hurry.",
    " (asking for a colleague)",
    " Any tips are welcome.",
)
_SYSTEM = {
    "support": "You are a helpful customer-support assistant for a SaaS product.",
    "coding": "You are an expert software engineer. Answer with clear explanations and code.",
    "assistant": "You are a friendly general-purpose assistant.",
    "summarize": "You summarize documents accurately and concisely.",
    "writing": "You are a professional writer and editor.",
    "search": "You answer questions using the company's knowledge base.",
    "tutor": "You are a patient tutor who explains step by step.",
}


@dataclass(frozen=True)
class PromptKey:
    """Which topic, subject and wording a synthetic prompt was built from."""

    topic: int
    subject: int
    template: int
    greeting: int
    suffix: int

    @property
    def index(self) -> int:
        """A dense id over every possible prompt."""
        t = TOPICS[self.topic]
        return (
            ((self.topic * 8 + self.subject) * len(t.prompts) + self.template) * len(_GREETINGS) + self.greeting
        ) * len(_SUFFIXES) + self.suffix

    def text(self) -> str:
        """The user message."""
        t = TOPICS[self.topic]
        body = t.prompts[self.template].format(subject=t.subjects[self.subject])
        return f"{_GREETINGS[self.greeting]}{body}{_SUFFIXES[self.suffix]}"

    def system(self) -> str:
        """The system message."""
        return _SYSTEM[TOPICS[self.topic].feature]


def _all_prompts() -> list[PromptKey]:
    return [
        PromptKey(ti, si, pi, gi, xi)
        for ti, t in enumerate(TOPICS)
        for si in range(len(t.subjects))
        for pi in range(len(t.prompts))
        for gi in range(len(_GREETINGS))
        for xi in range(len(_SUFFIXES))
    ]


@lru_cache(maxsize=1)
def prompt_index() -> dict[str, PromptKey]:
    """Every synthetic user message -> its key (used by the simulated provider)."""
    return {k.text(): k for k in _all_prompts()}


def answer(key: PromptKey, sentences: int, variant: int = 0) -> str:
    """An answer to ``key`` of ``sentences`` sentences, all from its topic.

    ``variant`` picks which of the topic's sentences follow the opening one;
    variant 0 is the logged (baseline) answer.
    """
    t = TOPICS[key.topic]
    subject = t.subjects[key.subject]
    order = np.random.default_rng([key.index, variant]).permutation(np.arange(1, len(t.sentences)))
    chosen = [0, *order[: max(0, sentences - 1)].tolist()]
    parts = (t.sentences[i].format(subject=subject) for i in chosen)
    return " ".join(p[:1].upper() + p[1:] for p in parts)


def generate(
    catalog: Catalog,
    *,
    project_id: str,
    days: int,
    rows_per_day: int,
    seed: int = 0,
    end: dt.date | None = None,
    metadata_only: bool = False,
) -> pl.DataFrame:
    """Synthetic log rows for ``days`` UTC days ending the day before ``end`` (default: today)."""
    rng = np.random.default_rng(seed)
    end = end or dt.datetime.now(dt.UTC).date()
    first = dt.datetime.combine(end - dt.timedelta(days=days), dt.time(), tzinfo=dt.UTC)
    n = days * rows_per_day
    day = np.repeat(np.arange(days), rows_per_day)
    # Diurnal cycle: quiet around 03:00 UTC, busiest mid-afternoon.
    hours = np.arange(24)
    weights = 1.0 + 0.75 * np.sin((hours - 9) / 24 * 2 * np.pi)
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    seconds = day * 86_400 + hour * 3600 + rng.uniform(0, 3600, size=n)
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]

    models = np.array(list(TRAFFIC_MIX))
    model_idx = rng.choice(len(models), size=n, p=np.array(list(TRAFFIC_MIX.values())))
    model = models[model_idx]
    prices = [catalog.price(m) for m in models]

    users = max(50, rows_per_day // 20)
    user = np.minimum(rng.zipf(1.3, size=n), users) - 1
    user_tier = np.array(["free", "pro", "enterprise"])[
        np.searchsorted([0.6, 0.9], np.random.default_rng(seed + 1).uniform(size=users))
    ]

    input_tokens = np.clip(rng.lognormal(np.log(650), 1.0, size=n) + 120, 20, 128_000).astype(np.int64)
    verbosity = np.array([VERBOSITY.get(m, 1.0) for m in models])[model_idx]
    output_tokens = np.clip(rng.lognormal(np.log(230), 0.8, size=n) * verbosity, 1, 8192).astype(np.int64)
    cached = np.where(rng.uniform(size=n) < 0.35, (input_tokens * rng.uniform(0.3, 0.9, size=n)).astype(np.int64), 0)

    ttft = np.array([p.ttft_ms for p in prices])[model_idx]
    tps = np.array([p.output_tokens_per_s for p in prices])[model_idx]
    latency = ttft * rng.lognormal(0, 0.25, size=n) + output_tokens / tps * 1000 * rng.lognormal(0, 0.15, size=n)

    busy = weights[hour[order]] / weights.max()
    error_p = np.array([ERROR_RATE.get(m, 0.015) for m in models])[model_idx] * (0.6 + 0.8 * busy)
    errored = rng.uniform(size=n) < error_p
    error_type = np.array(ERROR_TYPES, dtype=object)[rng.choice(4, size=n, p=ERROR_MIX)]
    error_type[~errored] = None
    output_tokens = np.where(errored, 0, output_tokens)
    latency = np.select(
        [error_type == "rate_limit", error_type == "timeout", error_type == "server_error", errored],
        [
            rng.uniform(30, 300, size=n),
            np.full(n, TIMEOUT_MS),
            ttft * rng.uniform(0.5, 3.0, size=n),
            rng.uniform(50, 200, size=n),
        ],
        latency,
    )
    in_rate = np.array([p.input_per_mtok for p in prices])[model_idx]
    cached_rate = np.array([p.cached_rate for p in prices])[model_idx]
    out_rate = np.array([p.output_per_mtok for p in prices])[model_idx]
    cost = ((input_tokens - cached) * in_rate + cached * cached_rate + output_tokens * out_rate) / 1e6
    cost = np.where(errored, 0.0, cost)

    prompts = _all_prompts()
    prompt_id = rng.integers(0, len(prompts), size=n)
    topic_of = np.array([k.topic for k in prompts])[prompt_id]
    feature = np.array([t.feature for t in TOPICS])[topic_of]
    sentences = np.clip(np.rint(output_tokens / 40), 1, 8).astype(np.int64)

    frame = pl.DataFrame(
        {
            "request_id": [f"req_{seed:x}_{i:09d}" for i in range(n)],
            "timestamp": pl.Series(((first.timestamp() + seconds) * 1e6).astype(np.int64)).cast(
                pl.Datetime("us", "UTC")
            ),
            "model": model,
            "provider": np.array([p.provider for p in prices])[model_idx],
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached,
            "latency_ms": np.round(latency, 1),
            "cost_usd": cost,
            "status": np.where(errored, "error", "ok"),
            "error_type": pl.Series(error_type.tolist(), dtype=pl.String),
            "end_user_id": pl.Series([f"user_{u:05d}" for u in range(users)])[user],
            "_feature": feature,
            "_tier": user_tier[user],
            "routing_config_version": np.where(day < days // 2, 1, 2).astype(np.int64),
        }
    )
    frame = frame.with_columns(
        tags=pl.concat_list(
            pl.lit("env:prod"), pl.concat_str(pl.lit("feature:"), "_feature"), pl.concat_str(pl.lit("tier:"), "_tier")
        )
    ).drop("_feature", "_tier")
    if metadata_only:
        return frame.with_columns(request_json=pl.lit(None, pl.String), response_text=pl.lit(None, pl.String))
    return frame.with_columns(
        request_json=_requests(prompts, prompt_id, model_idx, models),
        response_text=_answers(prompts, prompt_id, sentences, errored),
    )


def _requests(prompts: list[PromptKey], prompt_id: np.ndarray, model_idx: np.ndarray, models: np.ndarray) -> pl.Series:
    key = prompt_id * len(models) + model_idx
    unique, inverse = np.unique(key, return_inverse=True)
    bodies = []
    for k in unique.tolist():
        prompt = prompts[k // len(models)]
        body = {
            "model": str(models[k % len(models)]),
            "messages": [
                {"role": "system", "content": prompt.system()},
                {"role": "user", "content": prompt.text()},
            ],
            "temperature": 0.7,
            "max_tokens": 1024,
        }
        bodies.append(json.dumps(body))
    return pl.Series(bodies, dtype=pl.String)[inverse]


def _answers(prompts: list[PromptKey], prompt_id: np.ndarray, sentences: np.ndarray, errored: np.ndarray) -> pl.Series:
    key = prompt_id * 16 + sentences
    unique, inverse = np.unique(key, return_inverse=True)
    texts = pl.Series([answer(prompts[k // 16], k % 16) for k in unique.tolist()], dtype=pl.String)[inverse]
    return pl.select(pl.when(pl.lit(errored)).then(None).otherwise(pl.lit(texts))).to_series()
