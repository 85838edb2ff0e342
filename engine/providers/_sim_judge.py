"""The simulated provider as an LLM judge: pure, deterministic verdicts on judge calls.

A judge call (``engine.judge.judge_messages``) carries the judge system
message and a user message in the ``engine.judge.JUDGE_USER`` layout: the
rubric, the logged request rendered as ``role: content`` lines, and answers
A and B. The simulator reads the three parts back, finds the prompt's topic
when the prompt is a synthetic one (``engine.synth.prompt_index``), scores
how on-topic each answer is (word overlap with the topic's sentence bank and
the prompt's subject, or with the request text for prompts it does not know)
and how alike the two answers are (word-set Jaccard), and decides:
near-identical answers tie, a clearly more on-topic answer wins, and answers
about as relevant as each other tie or split by a deterministic coin.

A ``SimJudgeProfile`` then makes the judge as imperfect as a real one: it
sometimes breaks the JSON contract, wraps its JSON in a Markdown fence,
prefers answer A whatever it says, or ignores the content and picks at
random. Every draw is a SHA-256 of (model, the full user message, attempt).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.judge import JUDGE_SYSTEM
from engine.providers._sim_text import stable_unit
from engine.synth import TOPICS, PromptKey, prompt_index

__all__ = [
    "CLEAR_MARGIN",
    "JUDGE_MARKER",
    "NEAR_IDENTICAL",
    "NEAR_TIE_SHARE",
    "OFF_TOPIC",
    "JudgeDraw",
    "JudgeRequest",
    "JudgeScores",
    "JudgeVerdict",
    "SimJudgeProfile",
    "SimJudgeReply",
    "Winner",
    "broken_reply",
    "content_verdict",
    "content_words",
    "fence",
    "is_judge_system",
    "jaccard",
    "parse_judge_user",
    "relevance",
    "request_prompt",
    "score_answers",
    "sim_judge_reply",
    "topic_vocabulary",
    "verdict_json",
]

Probability = Annotated[float, Field(ge=0, le=1)]
Winner = Literal["A", "B", "tie"]
#: How a judge reply was decided: by the answers' content, by position bias, at random, or broken on purpose.
JudgeDraw = Literal["content", "position_bias", "random", "parse_failure"]

#: The first line of the judge system message: what marks a chat request as a judge call.
JUDGE_MARKER = JUDGE_SYSTEM.splitlines()[0]
#: Word-set Jaccard from which two answers count as saying the same thing.
NEAR_IDENTICAL = 0.6
#: Share of near-identical (not word-for-word identical) pairs the content logic calls a tie.
NEAR_TIE_SHARE = 0.9
#: Relevance difference from which one answer is clearly more on-topic than the other.
CLEAR_MARGIN = 0.15
#: Relevance under which an answer counts as off-topic.
OFF_TOPIC = 0.35

_RUBRIC_HEAD = "## Rubric\n"
_REQUEST_HEAD = "\n\n## Request\n"
_A_HEAD = "\n\n## Answer A\n"
_B_HEAD = "\n\n## Answer B\n"
_ROLE_LINE = re.compile(r"^(system|developer|user|assistant|tool|function): ")
_TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_STOPWORD_TEXT = """
    about above after again also and another any are because been before being below between both but can
    could did does doing down during each few for from further had has have having her here hers him his how
    into its it's just like more most much must need not now off once only other our ours out over own please
    same she should some such than that the their theirs them then there these they this those through too
    under until use very want was way were what when where which while who whom why will with would yes yet
    you your yours you're i'm
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class SimJudgeProfile(BaseModel):
    """How a simulated model behaves as an LLM judge; the defaults describe a perfect judge.

    Each probability has its own independent draw on every judge call that
    is not an injected error. Position bias comes first (the reply says "A");
    otherwise ``agreement`` decides between the content logic and a random
    pick. A ``parse_failure`` draw then breaks the reply, whatever it was
    going to say; a reply left valid is wrapped in a fence on a ``fenced`` draw.
    """

    model_config = ConfigDict(extra="forbid")

    parse_failure: Probability = Field(
        0.0,
        description="Probability that a reply breaks the JSON contract (prose such as 'Answer A is better.', "
        "prose before the JSON, or JSON cut off), so `engine.judge.parse_winner` returns no winner.",
    )
    fenced: Probability = Field(
        0.0,
        description="Probability that a valid reply comes wrapped in a ```json Markdown fence (still valid for "
        "`engine.judge.parse_winner`).",
    )
    position_bias: Probability = Field(0.0, description="Probability of answering 'A' whatever the two answers say.")
    agreement: Probability = Field(
        1.0,
        description="Probability that the verdict follows the answers' content (relevance to the request and "
        "similarity to each other); otherwise it is a random pick among A, B and tie.",
    )


@dataclass(frozen=True)
class JudgeRequest:
    """The three parts of a judge call's user message, as ``engine.judge.JUDGE_USER`` laid them out."""

    rubric: str
    request: str
    a: str
    b: str

    @property
    def prompt(self) -> str:
        """The user's prompt: the last ``user:`` line of the request (the whole request when there is none)."""
        return request_prompt(self.request)


@dataclass(frozen=True)
class JudgeScores:
    """What the content logic measured about the two answers."""

    #: Share of answer A's words that belong to the request's vocabulary (0..1).
    relevance_a: float
    #: Share of answer B's words that belong to the request's vocabulary (0..1).
    relevance_b: float
    #: Word-set Jaccard of the two answers (0..1).
    similarity: float
    #: Whether the prompt is a synthetic one (scored against its topic's sentence bank).
    synthetic: bool
    #: The prompt's subject when it is synthetic (as the topic names it), else ``None``.
    subject: str | None = None


@dataclass(frozen=True)
class JudgeVerdict:
    """A winner and the one sentence that says why."""

    winner: Winner
    reason: str


@dataclass(frozen=True)
class SimJudgeReply:
    """The assistant text of one simulated judge reply and how it was decided."""

    text: str
    draw: JudgeDraw
    #: The winner the text states (or meant to state, when it breaks the contract).
    winner: Winner
    #: Whether a valid reply was wrapped in a Markdown fence.
    fenced: bool = False


def is_judge_system(text: str) -> bool:
    """Whether a system message's text is the judge's (it starts with ``JUDGE_MARKER``)."""
    return text.lstrip().startswith(JUDGE_MARKER)


def parse_judge_user(text: str) -> JudgeRequest | None:
    """The rubric, request and answers of a judge user message; ``None`` when it is not in the judge layout."""
    if not text.startswith(_RUBRIC_HEAD):
        return None
    body = text[len(_RUBRIC_HEAD) :]
    rubric, found, rest = body.partition(_REQUEST_HEAD)
    if not found:
        return None
    request, found, rest = rest.partition(_A_HEAD)
    if not found:
        return None
    a, found, b = rest.partition(_B_HEAD)
    if not found:
        return None
    return JudgeRequest(rubric, request, a, b)


def request_prompt(request: str) -> str:
    """The user's prompt in a request rendered as ``role: content`` lines: the content of the last ``user:`` line.

    A content that spans several lines runs until the next ``role:`` line. A
    request without any ``user:`` line is taken as the prompt itself.
    """
    lines = request.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("user: ")]
    if not starts:
        return request.strip()
    first = starts[-1]
    content = [lines[first][len("user: ") :]]
    for line in lines[first + 1 :]:
        if _ROLE_LINE.match(line):
            break
        content.append(line)
    return "\n".join(content).strip()


def content_words(text: str) -> frozenset[str]:
    """The distinct telling words of ``text``: lowercased, three letters or more, common words left out."""
    return frozenset(
        word for word in (t.lower() for t in _TOKEN.findall(text)) if len(word) >= 3 and word not in _STOPWORDS
    )


def jaccard(a: str, b: str) -> float:
    """Word-set Jaccard similarity of two texts (two texts without telling words count as identical)."""
    words_a, words_b = content_words(a), content_words(b)
    union = words_a | words_b
    return len(words_a & words_b) / len(union) if union else 1.0


def relevance(answer: str, vocabulary: frozenset[str]) -> float:
    """Share of the answer's telling words that belong to ``vocabulary`` (0 for an answer without any)."""
    words = content_words(answer)
    return len(words & vocabulary) / len(words) if words else 0.0


@lru_cache(maxsize=256)
def topic_vocabulary(key: PromptKey) -> frozenset[str]:
    """The words of a synthetic prompt's topic: its sentence bank (with the prompt's subject) and the subject."""
    topic = TOPICS[key.topic]
    subject = topic.subjects[key.subject]
    bank = " ".join(sentence.format(subject=subject) for sentence in topic.sentences)
    return content_words(bank) | content_words(subject)


def _synthetic_key(prompt: str) -> PromptKey | None:
    index = prompt_index()
    key = index.get(prompt)
    if key is None and "\n" in prompt:
        key = index.get(prompt.splitlines()[0].strip())
    return key


def score_answers(judged: JudgeRequest) -> JudgeScores:
    """Relevance of each answer to the request and how alike the two are.

    A synthetic prompt's answers are scored against its topic's vocabulary;
    any other prompt's against the words of the whole request text.
    """
    key = _synthetic_key(judged.prompt)
    if key is not None:
        vocabulary = topic_vocabulary(key)
        subject: str | None = TOPICS[key.topic].subjects[key.subject]
    else:
        vocabulary = content_words(judged.request)
        subject = None
    return JudgeScores(
        relevance_a=relevance(judged.a, vocabulary),
        relevance_b=relevance(judged.b, vocabulary),
        similarity=jaccard(judged.a, judged.b),
        synthetic=key is not None,
        subject=subject,
    )


def content_verdict(scores: JudgeScores, coin: float) -> JudgeVerdict:
    """The verdict the answers' content calls for; ``coin`` (uniform in ``[0, 1)``) settles close calls.

    Near-identical answers (Jaccard at least ``NEAR_IDENTICAL``) tie — always
    when their words are the same, else with probability ``NEAR_TIE_SHARE``.
    Otherwise a clearly more relevant answer (by ``CLEAR_MARGIN`` or more)
    wins; two off-topic answers tie; and two about equally relevant answers
    tie half the time, the other half the coin picks A or B.
    """
    if scores.similarity >= NEAR_IDENTICAL:
        if scores.similarity >= 1.0 or coin < NEAR_TIE_SHARE:
            return JudgeVerdict("tie", "Both answers say essentially the same thing.")
        coin = (coin - NEAR_TIE_SHARE) / (1 - NEAR_TIE_SHARE)
    about = f"the question about {scores.subject}" if scores.subject else "the request"
    diff = scores.relevance_a - scores.relevance_b
    if abs(diff) >= CLEAR_MARGIN:
        winner: Winner = "A" if diff > 0 else "B"
        loser = "B" if winner == "A" else "A"
        if min(scores.relevance_a, scores.relevance_b) < OFF_TOPIC:
            reason = f"Answer {winner} addresses {about}, while answer {loser} is about something else."
        else:
            reason = f"Answer {winner} stays closer to {about} than answer {loser} does."
        return JudgeVerdict(winner, reason)
    if max(scores.relevance_a, scores.relevance_b) < OFF_TOPIC:
        return JudgeVerdict("tie", f"Neither answer addresses {about}, so neither is better.")
    if coin < 0.5:
        return JudgeVerdict("tie", f"Both answers address {about} about equally well.")
    pick: Winner = "A" if coin < 0.75 else "B"
    return JudgeVerdict(pick, f"Both answers address {about}, and answer {pick} is a little more focused.")


def verdict_json(verdict: JudgeVerdict) -> str:
    """The reply the judge contract asks for: ``{"winner": …, "reason": …}`` as JSON text."""
    return json.dumps({"winner": verdict.winner, "reason": verdict.reason})


def fence(text: str) -> str:
    """``text`` wrapped in a ```json Markdown fence, as chat models like to reply."""
    return f"```json\n{text}\n```"


def broken_reply(verdict: JudgeVerdict, u: float) -> str:
    """A reply that breaks the JSON contract (``u`` in ``[0, 1)`` picks how): prose, chatter, or cut-off JSON."""
    if u < 1 / 3:
        if verdict.winner == "tie":
            return "It's a tie: both answers are about as good as each other."
        return f"Answer {verdict.winner} is better."
    if u < 2 / 3:
        return f"Let me compare the two answers first. {verdict_json(verdict)}"
    text = verdict_json(verdict)
    return text[: len(text) // 2]


_RANDOM_REASONS: dict[Winner, str] = {
    "A": "Answer A reads as slightly more helpful overall.",
    "B": "Answer B reads as slightly more helpful overall.",
    "tie": "The two answers are of similar quality.",
}


def _order_free_verdict(judged: JudgeRequest, model: str) -> JudgeVerdict:
    """The content verdict, the same whichever answer is shown first (an unbiased judge is order-free)."""
    swap = judged.b < judged.a
    canonical = dataclasses.replace(judged, a=judged.b, b=judged.a) if swap else judged
    coin = stable_unit("judge", "coin", model, canonical.request, canonical.a, canonical.b)
    verdict = content_verdict(score_answers(canonical), coin)
    if not swap or verdict.winner == "tie":
        return verdict
    other: Winner = "B" if verdict.winner == "A" else "A"
    return JudgeVerdict(other, verdict.reason.replace(f"Answer {verdict.winner}", f"Answer {other}"))


def sim_judge_reply(profile: SimJudgeProfile, model: str, user_text: str, attempt: int) -> SimJudgeReply:
    """The reply of ``model`` to a judge call whose user message is ``user_text``, on attempt ``attempt``.

    A user message that is not in the judge layout gets a tie that says so;
    the profile's draws apply to it all the same.
    """

    def unit(name: str) -> float:
        return stable_unit("judge", name, model, user_text, attempt)

    judged = parse_judge_user(user_text)
    draw: JudgeDraw
    if unit("position_bias") < profile.position_bias:
        verdict, draw = JudgeVerdict("A", "Answer A is clearer and more complete."), "position_bias"
    elif unit("agreement") >= profile.agreement:
        winner: Winner = ("A", "B", "tie")[min(2, int(unit("random") * 3))]
        verdict, draw = JudgeVerdict(winner, _RANDOM_REASONS[winner]), "random"
    elif judged is None:
        verdict = JudgeVerdict("tie", "The request does not show two answers to compare, so neither is better.")
        draw = "content"
    else:
        verdict, draw = _order_free_verdict(judged, model), "content"
    if unit("parse_failure") < profile.parse_failure:
        return SimJudgeReply(broken_reply(verdict, unit("broken")), "parse_failure", verdict.winner)
    text = verdict_json(verdict)
    if unit("fenced") < profile.fenced:
        return SimJudgeReply(fence(text), draw, verdict.winner, fenced=True)
    return SimJudgeReply(text, draw, verdict.winner)
