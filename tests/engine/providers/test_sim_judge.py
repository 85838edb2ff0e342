"""The simulated provider as an LLM judge: over real HTTP through the real ``openai`` SDK, and its pure parts."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from engine.errors import ConfigError
from engine.judge import (
    DEFAULT_RUBRIC,
    JUDGE_SYSTEM,
    JUDGE_USER,
    combine_orders,
    judge_messages,
    parse_winner,
    request_text,
    to_verdict,
)
from engine.providers._base import PAIR_HEADER
from engine.providers._sim import (
    DEFAULT_SIM_CONFIG,
    Divergence,
    SimConfig,
    SimJudgeProfile,
    SimProfile,
    SimServer,
    baseline_sentences,
    count_prompt_tokens,
    is_judge_call,
    load_sim_config,
    sim_answer,
)
from engine.providers._sim_judge import (
    CLEAR_MARGIN,
    JUDGE_MARKER,
    NEAR_IDENTICAL,
    JudgeRequest,
    JudgeScores,
    JudgeVerdict,
    broken_reply,
    content_verdict,
    content_words,
    fence,
    is_judge_system,
    jaccard,
    parse_judge_user,
    relevance,
    request_prompt,
    score_answers,
    sim_judge_reply,
    topic_vocabulary,
    verdict_json,
)
from engine.synth import TOPICS, PromptKey, answer, prompt_index

PERFECT = SimJudgeProfile()
PROFILES = {
    "judge": SimProfile(judge=PERFECT),
    "biased": SimProfile(judge=SimJudgeProfile(position_bias=1)),
    "sloppy": SimProfile(judge=SimJudgeProfile(parse_failure=1)),
    "fenced": SimProfile(judge=SimJudgeProfile(fenced=1)),
    "random": SimProfile(judge=SimJudgeProfile(agreement=0)),
    "rate-limited": SimProfile(rate_limit=1.0, retry_after_s=3),
    "garbled": SimProfile(malformed=1.0),
}
UNKNOWN_PROMPT = "Which garbage collector should our Kubernetes-hosted JVM service use under heavy load?"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(SimConfig(models=PROFILES, time_scale=0)) as running:
        yield running


def synthetic_keys(count: int) -> list[PromptKey]:
    """Prompts of every topic, spread over subjects and wordings."""
    keys = list(prompt_index().values())
    return keys[:: len(keys) // count][:count]


def logged_request(key: PromptKey) -> str:
    """The logged conversation of a synthetic prompt as the judge sees it."""
    body = {"messages": [{"role": "system", "content": key.system()}, {"role": "user", "content": key.text()}]}
    return request_text(json.dumps(body))


def logged_answer(key: PromptKey) -> str:
    """The baseline answer the log holds for ``key``."""
    return answer(key, baseline_sentences(key.text()), 0)


def far_answer(key: PromptKey) -> str:
    """An answer about another topic altogether."""
    return sim_answer("far", key.text(), verbosity=1.0, divergence=Divergence(close=0, mild=0, far=1)).text


def judge_call(request: str, a: str, b: str) -> list[ChatCompletionMessageParam]:
    return cast(list[ChatCompletionMessageParam], judge_messages(DEFAULT_RUBRIC, request, a, b))


async def judge_all(
    base_url: str, model: str, calls: list[list[ChatCompletionMessageParam]], pairs: list[str] | None = None
) -> list[ChatCompletion]:
    """One judge call per message list over one client (with a pair id each when given)."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
        out = []
        for i, msgs in enumerate(calls):
            extra: dict[str, Any] = {"extra_headers": {PAIR_HEADER: pairs[i]}} if pairs else {}
            out.append(await client.chat.completions.create(model=model, messages=msgs, **extra))
        return out


def replies(base_url: str, model: str, calls: list[list[ChatCompletionMessageParam]], **kw: Any) -> list[str]:
    return [c.choices[0].message.content or "" for c in asyncio.run(judge_all(base_url, model, calls, **kw))]


# --- through the HTTP server --------------------------------------------------------------------------------------


def test_identical_answers_tie(server: SimServer) -> None:
    keys = synthetic_keys(12)
    calls = [judge_call(logged_request(k), logged_answer(k), logged_answer(k)) for k in keys]
    for text in replies(server.base_url, "judge", calls):
        winner, reason = parse_winner(text)
        assert winner == "tie"
        assert reason


def test_on_topic_answer_beats_an_off_topic_one_in_both_orders(server: SimServer) -> None:
    keys = synthetic_keys(16)
    first = [judge_call(logged_request(k), logged_answer(k), far_answer(k)) for k in keys]
    second = [judge_call(logged_request(k), far_answer(k), logged_answer(k)) for k in keys]
    a_first = [parse_winner(t) for t in replies(server.base_url, "judge", first)]
    b_first = [parse_winner(t) for t in replies(server.base_url, "judge", second)]
    assert [w for w, _ in a_first] == ["A"] * len(keys)
    assert [w for w, _ in b_first] == ["B"] * len(keys)
    for (w1, reason), (w2, _) in zip(a_first, b_first, strict=True):
        assert reason is not None and "something else" in reason
        # The logged (on-topic) answer is the candidate: better in both orders, no position flip.
        assert combine_orders(to_verdict(w1, True), to_verdict(w2, False)) == ("better", False)


def test_position_bias_always_answers_a(server: SimServer) -> None:
    keys = synthetic_keys(8)
    calls = [judge_call(logged_request(k), far_answer(k), logged_answer(k)) for k in keys]
    calls += [judge_call(logged_request(k), logged_answer(k), far_answer(k)) for k in keys]
    assert [parse_winner(t)[0] for t in replies(server.base_url, "biased", calls)] == ["A"] * len(calls)
    assert {c.judge for c in server.calls if c.model == "biased"} == {"position_bias"}


def test_parse_failures_break_the_contract(server: SimServer) -> None:
    keys = synthetic_keys(24)
    calls = [judge_call(logged_request(k), logged_answer(k), far_answer(k)) for k in keys]
    texts = replies(server.base_url, "sloppy", calls)
    assert all(parse_winner(t) == (None, None) for t in texts)
    assert all(t for t in texts)
    kinds = {"prose" if not t.lstrip().startswith(("{", "Let me")) else t[:1] for t in texts}
    assert len(kinds) >= 2, "more than one way of breaking the contract"
    assert {c.judge for c in server.calls if c.model == "sloppy"} == {"parse_failure"}


def test_fenced_replies_still_parse(server: SimServer) -> None:
    keys = synthetic_keys(8)
    calls = [judge_call(logged_request(k), far_answer(k), logged_answer(k)) for k in keys]
    texts = replies(server.base_url, "fenced", calls)
    assert all(t.startswith("```json\n") and t.endswith("\n```") for t in texts)
    assert [parse_winner(t)[0] for t in texts] == ["B"] * len(keys)


def test_replies_are_deterministic(server: SimServer) -> None:
    keys = synthetic_keys(10)
    calls = [judge_call(logged_request(k), logged_answer(k), far_answer(k)) for k in keys]
    calls += [judge_call(logged_request(k), logged_answer(k), answer(k, 3, 2)) for k in keys]
    pairs = [f"det-{i}" for i in range(len(calls))]
    again = [f"det-again-{i}" for i in range(len(calls))]
    for model in ("judge", "random"):
        first = replies(server.base_url, model, calls, pairs=[f"{model}-{p}" for p in pairs])
        # Other pair ids, so each call is a first attempt again: the same input gets the same reply.
        assert replies(server.base_url, model, calls, pairs=[f"{model}-{p}" for p in again]) == first
        with SimServer(SimConfig(models=PROFILES, time_scale=0)) as fresh:
            assert replies(fresh.base_url, model, calls, pairs=[f"{model}-{p}" for p in pairs]) == first
    random_winners = Counter(parse_winner(t)[0] for t in first)
    assert set(random_winners) == {"A", "B", "tie"}, "a judge that ignores the content picks every outcome"


def test_unknown_prompt_gets_a_contract_valid_reply(server: SimServer) -> None:
    request = request_text(json.dumps({"messages": [{"role": "user", "content": UNKNOWN_PROMPT}]}))
    on = "Use the G1 garbage collector for a JVM service under heavy load on Kubernetes; tune pause targets."
    off = "Preheat the oven to 180 degrees Celsius and grease the tin before baking."
    generic = sim_answer("close", UNKNOWN_PROMPT, verbosity=1.0, divergence=Divergence()).text
    calls = [judge_call(request, on, off), judge_call(request, off, on), judge_call(request, generic, generic)]
    calls.append(judge_call(request, generic, off))
    for model in ("judge", "fenced"):
        parsed = [parse_winner(t) for t in replies(server.base_url, model, calls)]
        assert all(w in ("A", "B", "tie") and isinstance(r, str) and r for w, r in parsed)
        assert [w for w, _ in parsed[:3]] == ["A", "B", "tie"]


def test_a_reply_without_the_judge_layout_is_still_valid(server: SimServer) -> None:
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": "Which one is better, the first or the second?"},
    ]
    (text,) = replies(server.base_url, "judge", [msgs])
    assert parse_winner(text)[0] == "tie"


def test_judge_usage_is_honest(server: SimServer) -> None:
    key = synthetic_keys(3)[2]
    msgs = judge_call(logged_request(key), logged_answer(key), far_answer(key))
    (completion,) = asyncio.run(judge_all(server.base_url, "judge", [msgs]))
    text = completion.choices[0].message.content
    assert completion.usage is not None and text is not None
    assert completion.usage.prompt_tokens == count_prompt_tokens(cast(list[dict[str, Any]], msgs))
    assert completion.usage.completion_tokens == math.ceil(len(text) / 4)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert json.loads(text) == {"winner": "A", "reason": parse_winner(text)[1]}


def test_injected_errors_apply_to_judge_calls(server: SimServer) -> None:
    key = synthetic_keys(1)[0]
    msgs = judge_call(logged_request(key), logged_answer(key), far_answer(key))
    with pytest.raises(openai.RateLimitError) as caught:
        asyncio.run(judge_all(server.base_url, "rate-limited", [msgs]))
    assert caught.value.response.headers["retry-after"] == "3"
    with pytest.raises(json.JSONDecodeError):
        asyncio.run(judge_all(server.base_url, "garbled", [msgs]))
    assert server.calls[-1].outcome == "malformed"


def test_both_orders_of_a_pair_are_first_attempts(server: SimServer) -> None:
    key = synthetic_keys(5)[4]
    request = logged_request(key)
    calls = [
        judge_call(request, logged_answer(key), far_answer(key)),
        judge_call(request, far_answer(key), logged_answer(key)),
        judge_call(request, logged_answer(key), far_answer(key)),  # a retry of the first order
    ]
    replies(server.base_url, "judge", calls, pairs=["both-orders"] * 3)
    calls_seen = [c for c in server.calls if c.pair_id == "both-orders"]
    assert [c.attempt for c in calls_seen] == [1, 1, 2]
    assert [c.judge for c in calls_seen] == ["content"] * 3


def test_a_candidate_call_is_not_judged(server: SimServer) -> None:
    key = synthetic_keys(1)[0]
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": key.system()},
        {"role": "user", "content": key.text()},
    ]
    (text,) = replies(server.base_url, "judge", [msgs])
    assert text == logged_answer(key)
    assert server.calls[-1].judge is None


# --- pure functions ---------------------------------------------------------------------------------------------


def test_judge_calls_are_recognised_by_the_system_message() -> None:
    assert JUDGE_SYSTEM.splitlines()[0] == JUDGE_MARKER
    assert is_judge_system(JUDGE_SYSTEM)
    assert not is_judge_system("You are a helpful assistant.")
    assert is_judge_call(judge_messages("r", "user: q", "a", "b"))
    assert is_judge_call([{"role": "system", "content": [{"type": "text", "text": JUDGE_SYSTEM}]}])
    assert not is_judge_call([{"role": "user", "content": JUDGE_SYSTEM}])


def test_the_judge_user_message_parses_back_into_its_parts() -> None:
    parts = {"rubric": "Be fair.\nReally.", "request": "system: s\nuser: hi", "a": "one\n\ntwo", "b": "three"}
    assert parse_judge_user(JUDGE_USER.format(**parts)) == JudgeRequest(**parts)
    assert parse_judge_user(JUDGE_USER.format(rubric="", request="", a="", b="")) == JudgeRequest("", "", "", "")
    assert parse_judge_user("Compare these two answers please.") is None
    assert parse_judge_user("## Rubric\nr\n\n## Request\nq\n\n## Answer A\nonly one") is None


def test_request_prompt_is_the_last_user_line() -> None:
    assert request_prompt("system: be nice\nuser: first\nassistant: ok\nuser: second") == "second"
    assert request_prompt("user: line one\nline two\nassistant: done") == "line one\nline two"
    assert request_prompt("  just a prompt  ") == "just a prompt"
    key = synthetic_keys(1)[0]
    assert JudgeRequest("", logged_request(key), "", "").prompt == key.text()


def test_word_overlap_measures() -> None:
    assert content_words("The Pod is in CrashLoopBackOff, and the pod restarts.") == {
        "pod",
        "crashloopbackoff",
        "restarts",
    }
    assert jaccard("alpha beta gamma", "gamma beta alpha") == 1.0
    assert jaccard("alpha beta", "gamma delta") == 0.0
    assert jaccard("", "") == 1.0
    assert jaccard("alpha beta gamma", "alpha beta delta") == pytest.approx(0.5)
    vocabulary = frozenset({"alpha", "beta"})
    assert relevance("alpha beta gamma delta", vocabulary) == pytest.approx(0.5)
    assert relevance("", vocabulary) == 0.0


def test_topic_vocabulary_holds_the_bank_and_the_subject() -> None:
    key = next(k for k in prompt_index().values() if TOPICS[k.topic].key == "k8s_debug")
    vocabulary = topic_vocabulary(key)
    assert content_words(TOPICS[key.topic].subjects[key.subject]) <= vocabulary
    assert {"kubectl", "liveness", "readiness"} <= vocabulary
    assert relevance(logged_answer(key), vocabulary) == 1.0


def test_scores_separate_on_topic_from_off_topic_answers() -> None:
    for key in synthetic_keys(40):
        scores = score_answers(JudgeRequest(DEFAULT_RUBRIC, logged_request(key), logged_answer(key), far_answer(key)))
        assert scores.synthetic and scores.subject == TOPICS[key.topic].subjects[key.subject]
        assert scores.relevance_a - scores.relevance_b >= CLEAR_MARGIN
        assert scores.similarity < NEAR_IDENTICAL
    unknown = score_answers(JudgeRequest("", f"user: {UNKNOWN_PROMPT}", "JVM garbage collector", "banana bread"))
    assert not unknown.synthetic and unknown.subject is None
    assert unknown.relevance_a == 1.0 and unknown.relevance_b == 0.0


@pytest.mark.parametrize(
    ("scores", "coin", "winner"),
    [
        (JudgeScores(1.0, 1.0, 1.0, True), 0.99, "tie"),  # word-for-word the same: always a tie
        (JudgeScores(1.0, 0.5, 0.7, True), 0.3, "tie"),  # near-identical: mostly a tie
        (JudgeScores(1.0, 0.5, 0.7, True), 0.95, "A"),  # ...else the more relevant one
        (JudgeScores(0.9, 0.1, 0.1, True), 0.1, "A"),
        (JudgeScores(0.1, 0.9, 0.1, True), 0.1, "B"),
        (JudgeScores(0.6, 0.9, 0.1, False), 0.9, "B"),
        (JudgeScores(0.1, 0.2, 0.1, False), 0.9, "tie"),  # both off-topic
        (JudgeScores(0.9, 0.95, 0.2, True), 0.2, "tie"),  # about equal: a tie or a coin flip
        (JudgeScores(0.9, 0.95, 0.2, True), 0.6, "A"),
        (JudgeScores(0.9, 0.95, 0.2, True), 0.8, "B"),
    ],
)
def test_content_verdict(scores: JudgeScores, coin: float, winner: str) -> None:
    verdict = content_verdict(scores, coin)
    assert verdict.winner == winner
    assert verdict.reason.endswith(".") and len(verdict.reason) < 120


def test_about_equal_answers_split_between_tie_a_and_b() -> None:
    scores = JudgeScores(1.0, 1.0, 0.3, True, "quadratic equations")
    winners = Counter(content_verdict(scores, i / 1000).winner for i in range(1000))
    assert winners == {"tie": 500, "A": 250, "B": 250}


def test_reply_texts_follow_or_break_the_contract() -> None:
    for verdict in (JudgeVerdict("A", "A is right."), JudgeVerdict("B", "B is right."), JudgeVerdict("tie", "Same.")):
        assert parse_winner(verdict_json(verdict)) == (verdict.winner, verdict.reason)
        assert parse_winner(fence(verdict_json(verdict))) == (verdict.winner, verdict.reason)
        for u in (0.0, 0.2, 0.4, 0.6, 0.8, 0.99):
            assert parse_winner(broken_reply(verdict, u)) == (None, None)
    assert broken_reply(JudgeVerdict("A", "why"), 0.1) == "Answer A is better."


def test_judge_draws_follow_the_profile() -> None:
    keys = synthetic_keys(400)
    users = [
        JUDGE_USER.format(rubric="r", request=logged_request(k), a=far_answer(k), b=logged_answer(k)) for k in keys
    ]
    config = load_sim_config(DEFAULT_SIM_CONFIG)
    shares = {}
    for model in ("gpt-4o", "gpt-4o-mini"):
        profile = config.models[model].judge
        out = [sim_judge_reply(profile, model, user, 1) for user in users]
        assert out == [sim_judge_reply(profile, model, user, 1) for user in users]
        draws = Counter(r.draw for r in out)
        n = len(out)
        assert draws["parse_failure"] / n == pytest.approx(profile.parse_failure, abs=0.03)
        biased = profile.position_bias * (1 - profile.parse_failure)
        assert draws["position_bias"] / n == pytest.approx(biased, abs=0.04)
        valid = [r for r in out if r.draw != "parse_failure"]
        assert sum(r.fenced for r in valid) / len(valid) == pytest.approx(profile.fenced, abs=0.04)
        assert all(parse_winner(r.text)[0] == r.winner for r in valid)
        assert all(parse_winner(r.text) == (None, None) for r in out if r.draw == "parse_failure")
        shares[model] = sum(parse_winner(r.text)[0] == "B" for r in out) / n
    # The logged answer (B) wins against an off-topic one: more often with the stronger judge.
    assert shares["gpt-4o"] > shares["gpt-4o-mini"] > 0.5
    assert shares["gpt-4o"] > 0.8


def test_attempts_draw_afresh() -> None:
    key = synthetic_keys(1)[0]
    user = JUDGE_USER.format(rubric="r", request=logged_request(key), a=logged_answer(key), b=answer(key, 3, 4))
    profile = SimJudgeProfile(agreement=0.5)
    assert len({sim_judge_reply(profile, "m", user, attempt).text for attempt in range(1, 30)}) > 1


def test_shipped_judge_profiles() -> None:
    config = load_sim_config(DEFAULT_SIM_CONFIG)
    strong, small = config.models["gpt-4o"].judge, config.models["gpt-4o-mini"].judge
    assert strong.agreement > small.agreement and strong.position_bias < small.position_bias
    assert strong.parse_failure < small.parse_failure
    assert config.default.judge != SimJudgeProfile()
    assert SimProfile().judge == SimJudgeProfile(parse_failure=0, fenced=0, position_bias=0, agreement=1)


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("models: {m: {judge: {parse_failure: 1.5}}}\n", "models.m.judge.parse_failure"),
        ("default: {judge: {agreement: -0.1}}\n", "default.judge.agreement"),
        ("models: {m: {judge: {bias: 0.1}}}\n", "models.m.judge.bias"),
    ],
)
def test_bad_judge_profiles_are_refused_with_the_field(tmp_path: Path, text: str, param: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_sim_config(path)
    assert caught.value.param == param
