"""What the simulated provider answers: pure, deterministic text choices.

For a synthetic prompt (one ``engine.synth`` generates) the simulator rebuilds
the logged baseline answer from the same topic banks and then stays close to
it, drifts within the topic, or answers about another topic altogether, as a
model's profile says. Prompts it has never seen (imported real logs) get a
short generic answer made from the prompt's own words that says plainly that
no model wrote it. Every draw comes from a SHA-256 of its inputs, so the same
model and prompt always give the same answer, in any process.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.synth import TOPICS, PromptKey, answer, prompt_index

Probability = Annotated[float, Field(ge=0, le=1)]
DivergenceKind = Literal["close", "mild", "far"]

#: Fewest and most sentences the simulator assumes the logged answer had.
BASELINE_SENTENCES = (2, 6)

_GENERIC_SENTENCES = (
    'The rehearsal simulator cannot really answer "{focus}": no language model runs behind it.',
    "The terms that stand out in your message are {terms}.",
    "A good answer would explain {first} in the context of your question and point to reliable sources.",
    "Your message has {words} words, and this reply is sized like a typical answer to it.",
    "Replay the prompt against a real provider to see what a model would say about {first}.",
    "Nothing in this reply was looked up or checked, so do not rely on its content.",
    "Only the length, timing and errors of this reply are realistic, so cost and latency estimates stay useful.",
    "If {first} matters to a decision, ask a real model or a person who knows the subject.",
)
_WORD = re.compile(r"[^\W\d_][\w'-]{3,}")
_STOPWORD_TEXT = """
    about above after again also another any are because been before being below between both but can
    could does doing down during each few from further have having here how into just like more most
    much must need only other over please same should some such than that their theirs them then there
    these they this those through under until very want what when where which while whom will with would
    your yours you're i'm
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class Divergence(BaseModel):
    """How far a model's answers stray from the logged baseline answer; the three shares sum to 1."""

    model_config = ConfigDict(extra="forbid")

    close: Probability = Field(
        1.0, description="Share of answers that are essentially the baseline: same sentences, same order."
    )
    mild: Probability = Field(
        0.0, description="Share of answers on the same topic with a different selection and order of sentences."
    )
    far: Probability = Field(0.0, description="Share of answers about a different topic altogether.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Divergence:
        total = self.close + self.mild + self.far
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"close + mild + far must sum to 1, got {total:.6g}")
        return self


@dataclass(frozen=True)
class SimAnswer:
    """One simulated answer and how it was chosen."""

    text: str
    divergence: DivergenceKind
    sentences: int
    #: Whether the prompt is a synthetic one the simulator knows the baseline answer of.
    synthetic: bool


def stable_digest(*parts: object) -> bytes:
    """SHA-256 of the parts (joined unambiguously): the seed of every simulator draw."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def stable_unit(*parts: object) -> float:
    """A uniform number in ``[0, 1)`` fixed by the parts."""
    return int.from_bytes(stable_digest(*parts)[:8], "big") / 2**64


def stable_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by the parts."""
    return np.random.default_rng(int.from_bytes(stable_digest(*parts)[:16], "big"))


def baseline_sentences(prompt: str) -> int:
    """How many sentences the simulator takes the logged answer to ``prompt`` to have (2..6, from its hash)."""
    low, high = BASELINE_SENTENCES
    return low + int.from_bytes(stable_digest("sentences", prompt)[:8], "big") % (high - low + 1)


def scaled_sentences(prompt: str, verbosity: float, *, most: int = 8) -> int:
    """The baseline sentence count scaled by ``verbosity`` and rounded half up, within ``1..most``."""
    return min(most, max(1, math.floor(baseline_sentences(prompt) * verbosity + 0.5)))


def draw_divergence(divergence: Divergence, model: str, prompt: str) -> DivergenceKind:
    """Close, mild or far for this model and prompt, with the profile's shares."""
    u = stable_unit("divergence", model, prompt)
    if u < divergence.close:
        return "close"
    if u < divergence.close + divergence.mild:
        return "mild"
    return "far"


def sim_answer(model: str, prompt: str, *, verbosity: float, divergence: Divergence) -> SimAnswer:
    """The answer ``model`` gives to the user message ``prompt`` under a profile's verbosity and divergence."""
    kind = draw_divergence(divergence, model, prompt)
    n = scaled_sentences(prompt, verbosity)
    key = prompt_index().get(prompt)
    if kind == "far":
        other = _far_key(key, model, prompt)
        return SimAnswer(answer(other, n, 0), kind, n, synthetic=key is not None)
    if kind == "mild":
        n = max(2, n)
    variant = 0 if kind == "close" else 1 + int.from_bytes(stable_digest("variant", model, prompt)[:8], "big") % 7
    if key is None:
        return SimAnswer(generic_answer(prompt, n, variant), kind, n, synthetic=False)
    return SimAnswer(answer(key, n, variant), kind, n, synthetic=True)


def _far_key(key: PromptKey | None, model: str, prompt: str) -> PromptKey:
    """A prompt of another topic (one another product feature asks about) to answer instead."""
    own = TOPICS[key.topic].feature if key is not None else None
    others = [i for i, t in enumerate(TOPICS) if t.feature != own]
    topic = others[int.from_bytes(stable_digest("far", model, prompt)[:8], "big") % len(others)]
    subject = (key.subject if key is not None else 0) % len(TOPICS[topic].subjects)
    return PromptKey(topic, subject, 0, 0, 0)


def generic_answer(prompt: str, sentences: int, variant: int = 0) -> str:
    """A short answer built from the prompt's own words that says no model wrote it.

    The opening sentence always comes first; ``variant`` picks which of the
    other sentences follow (variant 0 is the close answer).
    """
    first_line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    words = first_line.split()
    focus = " ".join(words[:12]).rstrip(".?!:;,") + (" …" if len(words) > 12 else "")
    terms = _key_terms(prompt)
    fields = {
        "focus": focus or "(an empty message)",
        "terms": _enumerate(terms) if terms else "hard to pick out",
        "first": terms[0] if terms else "your request",
        "words": len(prompt.split()),
    }
    order = stable_rng("generic", prompt, variant).permutation(np.arange(1, len(_GENERIC_SENTENCES)))
    chosen = [0, *order[: max(0, sentences - 1)].tolist()]
    return " ".join(_GENERIC_SENTENCES[i].format(**fields) for i in chosen)


def _key_terms(prompt: str, most: int = 4) -> list[str]:
    """The prompt's most telling words (longest first), skipping common words and repeats."""
    seen: dict[str, str] = {}
    for word in _WORD.findall(prompt):
        lowered = word.lower()
        if lowered not in _STOPWORDS and lowered not in seen:
            seen[lowered] = word
    return sorted(seen.values(), key=len, reverse=True)[:most]


def _enumerate(terms: list[str]) -> str:
    quoted = [f'"{t}"' for t in terms]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
