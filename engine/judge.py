"""LLM-as-judge, the pure parts: buckets, stratified sampling, the prompt contract, verdicts, Wilson intervals.

The judge sees the original request and two answers labelled A and B and
must reply with one JSON object ``{"winner": "A" | "B" | "tie", "reason": "…"}``.
Which of the two is the candidate is drawn per pair from a seeded RNG (or
both orders are asked), and the winner is mapped back to the candidate's
side: ``better``, ``equivalent`` or ``worse``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from engine.errors import ConfigError

BUCKETS = ("high", "mild", "major")
VERDICTS = ("better", "equivalent", "worse")
Verdict = Literal["better", "equivalent", "worse"]
MAX_PAIRS = 1500
#: Tokens budgeted for the judge's reply (the JSON verdict and a one-sentence reason).
VERDICT_TOKENS = 80
#: The share of pairs whose two orders disagreed at which a run's summary carries ``position_bias_warning``.
POSITION_FLIP_WARN = 0.2
CHARS_PER_TOKEN = 4.0
Z_95 = 1.96

DEFAULT_RUBRIC = (
    "Judge which answer serves the person who sent the request better. Weigh factual correctness first, "
    "then whether the answer actually addresses the request, then completeness and clarity. Length and "
    "style alone do not make an answer better; call it a tie when neither is meaningfully better."
)

#: The system message; the simulated provider recognises judge calls by its first line.
JUDGE_SYSTEM = (
    "You are an impartial judge comparing two answers to the same request.\n"
    "Read the request, then answer A and answer B, and decide which one is better according to the rubric.\n"
    'Reply with exactly one JSON object and nothing else: {"winner": "A" | "B" | "tie", "reason": "<one sentence>"}'
)
JUDGE_USER = "## Rubric\n{rubric}\n\n## Request\n{request}\n\n## Answer A\n{a}\n\n## Answer B\n{b}"


def rubric_hash(rubric: str) -> str:
    """sha256 of the rubric text, to tell runs with different rubrics apart."""
    return hashlib.sha256(rubric.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Allocation:
    """Pairs to judge per bucket after moving a short bucket's shortfall to buckets with spare pairs."""

    requested: dict[str, int]
    available: dict[str, int]
    effective: dict[str, int]

    @property
    def total(self) -> int:
        """Pairs that will be judged."""
        return sum(self.effective.values())

    def notes(self) -> list[str]:
        """Plain sentences about any redistribution."""
        short = {b: self.requested[b] - self.available[b] for b in BUCKETS if self.available[b] < self.requested[b]}
        if not short:
            return []
        parts = ", ".join(f"{b} has {self.available[b]} of {self.requested[b]}" for b in short)
        moved = {b: self.effective[b] - self.requested[b] for b in BUCKETS if self.effective[b] > self.requested[b]}
        if moved:
            gained = ", ".join(f"{b} +{n}" for b, n in moved.items())
            return [f"Some buckets are short ({parts}); their shortfall went to buckets with spare pairs ({gained})."]
        return [f"Some buckets are short ({parts}) and no bucket has spare pairs to make up for it."]


def allocate(requested: Mapping[str, int], available: Mapping[str, int]) -> Allocation:
    """Clamp each bucket to what it has and hand the shortfall to buckets with spare pairs.

    Deterministic: the shortfall is split as evenly as possible across buckets
    with spare pairs, each capped by its spare, leftovers in the order
    ``major``, ``mild``, ``high`` (divergent pairs are the ones worth judging).
    """
    want = {b: int(requested.get(b, 0)) for b in BUCKETS}
    have = {b: int(available.get(b, 0)) for b in BUCKETS}
    for bucket, n in want.items():
        if n < 0:
            raise ConfigError(f"stratification.{bucket} must be 0 or more", param=f"stratification.{bucket}")
    if sum(want.values()) > MAX_PAIRS:
        raise ConfigError(
            f"stratification asks for {sum(want.values()):,} pairs; at most {MAX_PAIRS:,} per judge run",
            param="stratification",
        )
    effective = {b: min(want[b], have[b]) for b in BUCKETS}
    shortfall = sum(want.values()) - sum(effective.values())
    order = ("major", "mild", "high")
    while shortfall > 0:
        spare = [b for b in order if have[b] > effective[b]]
        if not spare:
            break
        share = max(1, shortfall // len(spare))
        for bucket in spare:
            give = min(share, have[bucket] - effective[bucket], shortfall)
            effective[bucket] += give
            shortfall -= give
            if shortfall == 0:
                break
    return Allocation(want, have, effective)


def draw_pairs(pairs: pl.DataFrame, allocation: Allocation, seed: int) -> pl.DataFrame:
    """A seeded sample of ``allocation.effective[b]`` pairs from each bucket (column ``bucket``)."""
    ranked = pairs.with_columns(_key=pl.col("request_id").hash(seed)).sort("_key", "request_id")
    ranked = ranked.with_columns(_rank=pl.int_range(pl.len()).over("bucket"))
    quota = pl.col("bucket").replace_strict(allocation.effective, default=0, return_dtype=pl.Int64)
    return ranked.filter(pl.col("_rank") < quota).drop("_key", "_rank")


def candidate_first(request_ids: Sequence[str], seed: int) -> np.ndarray:
    """Per pair, whether the candidate is shown as answer A (a seeded coin per pair)."""
    out = np.empty(len(request_ids), dtype=bool)
    for i, request_id in enumerate(request_ids):
        digest = hashlib.sha256(f"{seed}:{request_id}".encode()).digest()
        out[i] = digest[0] & 1 == 1
    return out


def request_text(request_json: str) -> str:
    """The conversation of a logged request as plain text (roles and contents)."""
    try:
        body = json.loads(request_json)
    except (TypeError, json.JSONDecodeError):
        return str(request_json)
    lines = []
    for message in body.get("messages", []) if isinstance(body, dict) else []:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        lines.append(f"{message.get('role', 'user')}: {content}")
    return "\n".join(lines)


def judge_messages(rubric: str, request: str, a: str, b: str) -> list[dict[str, str]]:
    """The chat messages of one judge call."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": JUDGE_USER.format(rubric=rubric, request=request, a=a, b=b)},
    ]


def estimate_tokens(rubric: str, request: str, a: str, b: str) -> int:
    """Prompt tokens of a judge call, from its text length."""
    text = JUDGE_SYSTEM + JUDGE_USER.format(rubric=rubric, request=request, a=a, b=b)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_winner(reply: str | None) -> tuple[Literal["A", "B", "tie"] | None, str | None]:
    """The winner and reason from a judge's reply; ``(None, None)`` when it breaks the contract."""
    if not reply:
        return None, None
    fenced = _FENCE.match(reply)
    text = fenced.group(1) if fenced else reply.strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    winner = obj.get("winner")
    reason = obj.get("reason")
    if isinstance(winner, str) and winner.strip().lower() == "tie":
        return "tie", reason if isinstance(reason, str) else None
    if winner in ("A", "B"):
        return winner, reason if isinstance(reason, str) else None
    return None, None


def to_verdict(winner: Literal["A", "B", "tie"] | None, candidate_is_a: bool) -> Verdict | None:
    """The verdict from the candidate's side."""
    if winner is None:
        return None
    if winner == "tie":
        return "equivalent"
    return "better" if (winner == "A") == candidate_is_a else "worse"


def combine_orders(first: Verdict | None, second: Verdict | None) -> tuple[Verdict | None, bool | None]:
    """Both-orders judging: agreeing verdicts stand, disagreeing ones become ``equivalent``.

    Returns the verdict and whether the two orders disagreed (``None`` when
    either call failed to parse: such a pair is a parse error).
    """
    if first is None or second is None:
        return None, None
    if first == second:
        return first, False
    return "equivalent", True


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 and k = n the exact bounds are 0 and 1; rounding must not move them inside.
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return lower, upper


def breakdown(verdicts: Sequence[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Proportions of each verdict and their Wilson 95% intervals."""
    n = len(verdicts)
    counts = {v: sum(1 for x in verdicts if x == v) for v in VERDICTS}
    shares = {v: (counts[v] / n if n else 0.0) for v in VERDICTS}
    cis = {}
    for v in VERDICTS:
        lower, upper = wilson(counts[v], n)
        cis[v] = {"lower": lower, "upper": upper}
    return shares, cis


def summarize(rows: Sequence[Mapping[str, Any]], spend_usd: float, *, both_orders: bool) -> dict[str, Any]:
    """The judge summary in the guide's shape (plus ``position_flip_rate`` when both orders were asked)."""
    parsed = [r for r in rows if r.get("verdict") is not None]
    verdicts = [str(r["verdict"]) for r in parsed]
    shares, cis = breakdown(verdicts)
    by_bucket = {}
    for bucket in BUCKETS:
        in_bucket = [str(r["verdict"]) for r in parsed if r.get("bucket") == bucket]
        by_bucket[bucket] = {"n": len(in_bucket), "verdicts": breakdown(in_bucket)[0]}
    summary: dict[str, Any] = {
        "judged_count": len(parsed),
        "parse_errors": len(rows) - len(parsed),
        "spend_usd": spend_usd,
        "verdict_breakdown": shares,
        "verdict_breakdown_ci_95": cis,
        "by_bucket": by_bucket,
    }
    if both_orders:
        flips = [r["position_flip"] for r in parsed if r.get("position_flip") is not None]
        rate = (sum(bool(f) for f in flips) / len(flips)) if flips else None
        summary["position_flip_rate"] = rate
        summary["position_bias_warning"] = (
            f"Position bias: on {rate:.0%} of pairs the two orders got opposite verdicts, so the judge followed "
            "which answer came first, not what they said; those pairs count as equivalent, so the equivalent "
            "share overstates agreement. Try another judge model."
            if rate is not None and rate >= POSITION_FLIP_WARN
            else None
        )
    return summary
