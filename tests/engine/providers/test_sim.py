"""The simulated provider, driven over real HTTP through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from engine.errors import ConfigError
from engine.providers._base import PAIR_HEADER, REPORTED_COST_HEADER
from engine.providers._sim import (
    DEFAULT_SIM_CONFIG,
    MESSAGE_OVERHEAD_TOKENS,
    SIMULATOR_HEADER,
    Divergence,
    SimConfig,
    SimProfile,
    SimServer,
    baseline_sentences,
    count_prompt_tokens,
    draw_delay_s,
    draw_outcome,
    load_sim_config,
)
from engine.synth import TOPICS, PromptKey, answer, prompt_index

PROFILES = {
    "close": SimProfile(),
    "mild": SimProfile(divergence=Divergence(close=0, mild=1, far=0)),
    "far": SimProfile(divergence=Divergence(close=0, mild=0, far=1)),
    "verbose": SimProfile(verbosity=2.0),
    "rate-limited": SimProfile(rate_limit=1.0, retry_after_s=7),
    "broken": SimProfile(server_error=1.0),
    "garbled": SimProfile(malformed=1.0),
    "hanging": SimProfile(timeout=1.0, hang_s=0),
    "flaky": SimProfile(rate_limit=0.25, server_error=0.25),
}


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(SimConfig(models=PROFILES, time_scale=0)) as running:
        yield running


def synthetic_keys(count: int) -> list[PromptKey]:
    """Prompts of every topic, spread over subjects and wordings."""
    keys = list(prompt_index().values())
    return keys[:: len(keys) // count][:count]


def messages(key: PromptKey) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": key.system()}, {"role": "user", "content": key.text()}]


def topic_of(text: str) -> int:
    """The topic whose opening sentence starts ``text``."""
    for index, topic in enumerate(TOPICS):
        for subject in topic.subjects:
            opening = topic.sentences[0].format(subject=subject)
            if text.startswith(opening[:1].upper() + opening[1:]):
                return index
    raise AssertionError(f"no topic opens {text[:80]!r}")


async def ask(base_url: str, model: str, msgs: list[ChatCompletionMessageParam], **kwargs: Any) -> ChatCompletion:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
        return await client.chat.completions.create(model=model, messages=msgs, **kwargs)


async def texts(base_url: str, model: str, keys: list[PromptKey]) -> list[str]:
    """The answers of ``model`` to the synthetic prompts, one call each over one client."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
        answers = []
        for key in keys:
            completion = await client.chat.completions.create(model=model, messages=messages(key))
            answers.append(completion.choices[0].message.content or "")
        return answers


def test_close_model_repeats_the_baseline_answer(server: SimServer) -> None:
    keys = synthetic_keys(16)
    baselines = [answer(key, baseline_sentences(key.text()), 0) for key in keys]
    assert asyncio.run(texts(server.base_url, "close", keys)) == baselines
    assert asyncio.run(texts(server.base_url, "close", keys)) == baselines


def test_response_follows_the_chat_completion_schema(server: SimServer) -> None:
    key = synthetic_keys(1)[0]

    async def run() -> None:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="close",
                messages=messages(key),
            )
            assert raw.headers[SIMULATOR_HEADER] == "true"
            completion = raw.parse()
            assert completion.object == "chat.completion"
            assert completion.id.startswith("chatcmpl-")
            assert completion.model == "close"
            assert completion.system_fingerprint == "rehearsal-simulator"
            assert len(completion.choices) == 1
            assert completion.choices[0].finish_reason == "stop"
            assert completion.choices[0].message.role == "assistant"

    asyncio.run(run())


def test_far_model_answers_about_another_topic(server: SimServer) -> None:
    keys = synthetic_keys(16)
    for key, close, far in zip(
        keys,
        asyncio.run(texts(server.base_url, "close", keys)),
        asyncio.run(texts(server.base_url, "far", keys)),
        strict=True,
    ):
        assert topic_of(close) == key.topic
        assert topic_of(far) != key.topic
        assert TOPICS[topic_of(far)].feature != TOPICS[key.topic].feature


def test_mild_model_stays_on_topic_with_other_sentences(server: SimServer) -> None:
    keys = synthetic_keys(16)
    mild = asyncio.run(texts(server.base_url, "mild", keys))
    baselines = [answer(key, baseline_sentences(key.text()), 0) for key in keys]
    assert [topic_of(text) for text in mild] == [key.topic for key in keys]
    assert sum(text != base for text, base in zip(mild, baselines, strict=True)) >= 12


def test_verbosity_scales_the_answer_length(server: SimServer) -> None:
    keys = synthetic_keys(8)
    expected = [answer(key, min(8, 2 * baseline_sentences(key.text())), 0) for key in keys]
    assert asyncio.run(texts(server.base_url, "verbose", keys)) == expected


def test_unknown_prompt_gets_an_honest_answer_in_its_own_words(server: SimServer) -> None:
    prompt = "Which garbage collector should our Kubernetes-hosted JVM service use under heavy load?"

    async def run() -> tuple[str | None, str | None]:
        msgs: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
        first = (await ask(server.base_url, "close", msgs)).choices[0].message.content
        again = (await ask(server.base_url, "close", msgs)).choices[0].message.content
        return first, again

    first, again = asyncio.run(run())
    assert first is not None and first == again
    assert first.startswith('The rehearsal simulator cannot really answer "Which garbage collector should our')
    assert "no language model runs behind it" in first


def test_usage_is_consistent_with_the_texts(server: SimServer) -> None:
    key = synthetic_keys(3)[1]
    msgs = messages(key)
    completion = asyncio.run(ask(server.base_url, "close", msgs))
    usage = completion.usage
    text = completion.choices[0].message.content
    assert usage is not None and text is not None
    expected_prompt = sum(math.ceil(len(text) / 4) + MESSAGE_OVERHEAD_TOKENS for text in (key.system(), key.text()))
    assert usage.prompt_tokens == expected_prompt == count_prompt_tokens(msgs)
    assert usage.completion_tokens == math.ceil(len(text) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0


def test_rate_limit_is_a_429_with_retry_after(server: SimServer) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        asyncio.run(ask(server.base_url, "rate-limited", messages(synthetic_keys(1)[0])))
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers[SIMULATOR_HEADER] == "true"
    assert caught.value.code == "rate_limit_exceeded"


def test_server_error_is_a_500(server: SimServer) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        asyncio.run(ask(server.base_url, "broken", messages(synthetic_keys(1)[0])))
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


def test_malformed_body_fails_to_decode(server: SimServer) -> None:
    # openai 3.x does not wrap it: a 200 with a cut-off JSON body raises the decoder's own error.
    with pytest.raises(json.JSONDecodeError):
        asyncio.run(ask(server.base_url, "garbled", messages(synthetic_keys(1)[0])))
    assert server.calls[-1].outcome == "malformed"
    assert server.calls[-1].status_code == 200


def test_an_unlisted_model_is_a_404_when_only_known_models_are_served() -> None:
    config = SimConfig(models={"close": SimProfile()}, time_scale=0, known_models_only=True)
    with SimServer(config) as strict:
        with pytest.raises(openai.NotFoundError) as caught:
            asyncio.run(ask(strict.base_url, "gpt-9", messages(synthetic_keys(1)[0])))
        assert asyncio.run(ask(strict.base_url, "close", messages(synthetic_keys(1)[0]))).choices
        calls = strict.calls
    assert caught.value.status_code == 404 and caught.value.code == "model_not_found"
    assert caught.value.message.endswith("The model `gpt-9` does not exist or you do not have access to it.")
    assert [(c.model, c.outcome, c.status_code) for c in calls] == [("gpt-9", "not_found", 404), ("close", "ok", 200)]


def test_a_profile_can_report_each_answers_cost_like_a_litellm_proxy() -> None:
    priced = SimProfile(reported_cost_per_mtok=2.0, reported_cost_missing=0.25)
    config = SimConfig(models={"priced": priced, "close": SimProfile()}, time_scale=0)

    async def costs(base_url: str, model: str) -> list[tuple[str | None, int]]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
            found = []
            for key in synthetic_keys(80):
                raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages(key))
                usage = raw.parse().usage
                assert usage is not None
                found.append((raw.headers.get(REPORTED_COST_HEADER), usage.total_tokens))
            return found

    with SimServer(config) as sim:
        priced_costs = asyncio.run(costs(sim.base_url, "priced"))
        plain_costs = asyncio.run(costs(sim.base_url, "close"))
    reported = [(float(h), tokens) for h, tokens in priced_costs if h is not None]
    assert 40 <= len(reported) < 80  # about a quarter left out
    assert all(cost == pytest.approx(tokens * 2.0 / 1e6) for cost, tokens in reported)
    assert all(h is None for h, _ in plain_costs)


def test_timeout_outcome_ends_in_a_504_when_the_client_outlasts_the_hang(server: SimServer) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        asyncio.run(ask(server.base_url, "hanging", messages(synthetic_keys(1)[0])))
    assert caught.value.status_code == 504
    assert caught.value.code == "timeout"


def test_hanging_server_times_the_client_out() -> None:
    config = SimConfig(models={"hanging": SimProfile(timeout=1.0, hang_s=60)}, time_scale=1.0)
    started = time.monotonic()
    with SimServer(config) as hanging:
        with pytest.raises(openai.APITimeoutError):
            asyncio.run(ask(hanging.base_url, "hanging", messages(synthetic_keys(1)[0]), timeout=0.2))
        assert [c.outcome for c in hanging.calls] == ["timeout"]
    # The server noticed the client hang up and did not sit out the 60 s hang before stopping.
    assert time.monotonic() - started < 10


async def retry_until_ok(base_url: str, keys: list[PromptKey]) -> dict[str, int]:
    """Per pair, the attempt that first succeeded (calls carry the pair id, so the server counts attempts)."""
    needed: dict[str, int] = {}
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
        for i, key in enumerate(keys):
            for attempt in range(1, 11):
                try:
                    await client.chat.completions.create(
                        model="flaky",
                        messages=messages(key),
                        extra_headers={PAIR_HEADER: f"flaky-{i}"},
                    )
                except (openai.RateLimitError, openai.InternalServerError):
                    continue
                needed[f"flaky-{i}"] = attempt
                break
    return needed


def test_a_retry_draws_afresh_and_succeeds(server: SimServer) -> None:
    keys = synthetic_keys(12)
    needed = asyncio.run(retry_until_ok(server.base_url, keys))
    assert len(needed) == len(keys), "every pair succeeds within ten attempts"
    assert max(needed.values()) > 1, "some first attempts fail at a 50% error rate"
    for pair, count in needed.items():
        calls = [c for c in server.calls if c.pair_id == pair]
        assert [c.attempt for c in calls] == list(range(1, count + 1))
        assert [c.outcome == "ok" for c in calls] == [False] * (count - 1) + [True]
    # Deterministic: a fresh server needs the same attempts for every pair.
    with SimServer(SimConfig(models=PROFILES, time_scale=0)) as fresh:
        assert asyncio.run(retry_until_ok(fresh.base_url, keys)) == needed


def test_call_log_file_records_pair_ids(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    key = synthetic_keys(1)[0]
    with SimServer(SimConfig(models=PROFILES, time_scale=0), call_log=log) as logged:
        for pair in ("r1", "r2"):
            asyncio.run(ask(logged.base_url, "close", messages(key), extra_headers={PAIR_HEADER: pair}))
        # Flushed per line: readable while the server still holds the file open.
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["pair_id"] for r in rows] == ["r1", "r2"]
        assert [r["model"] for r in rows] == ["close", "close"]
        assert [r["outcome"] for r in rows] == ["ok", "ok"]
        assert [r["attempt"] for r in rows] == [1, 1]
        assert all(r["timestamp"] and r["completion_tokens"] > 0 for r in rows)
        assert [c.pair_id for c in logged.calls] == ["r1", "r2"]


def test_call_log_survives_a_killed_client(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    config = SimConfig(models={"slow": SimProfile(ttft_ms=60_000)}, time_scale=1.0)
    key = synthetic_keys(1)[0]
    client_code = (
        "import asyncio, sys, openai\n"
        "async def main():\n"
        "    client = openai.AsyncOpenAI(base_url=sys.argv[1], api_key='sim', max_retries=0)\n"
        f"    await client.chat.completions.create(model='slow', messages={messages(key)!r},\n"
        f"        extra_headers={{{PAIR_HEADER!r}: 'doomed'}})\n"
        "asyncio.run(main())\n"
    )
    with SimServer(config, call_log=log) as slow:
        client = subprocess.Popen([sys.executable, "-c", client_code, slow.base_url])
        try:
            deadline = time.monotonic() + 30
            while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            client.kill()
            client.wait()
        rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["pair_id"], r["model"], r["attempt"]) for r in rows] == [("doomed", "slow", 1)]


def test_requests_run_concurrently() -> None:
    config = SimConfig(models={"steady": SimProfile(ttft_ms=300, output_tokens_per_s=10_000)}, time_scale=1.0)
    keys = synthetic_keys(40)

    async def run(base_url: str) -> None:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
            await asyncio.gather(*(client.chat.completions.create(model="steady", messages=messages(k)) for k in keys))

    with SimServer(config) as steady:
        started = time.monotonic()
        asyncio.run(run(steady.base_url))
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3.0, f"40 calls of ~0.3 s each took {elapsed:.2f} s"


def test_missing_messages_is_a_400(server: SimServer) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:
            await client.post("/chat/completions", body={"model": "close"}, cast_to=object)

    with pytest.raises(openai.BadRequestError) as caught:
        asyncio.run(run())
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.response.headers[SIMULATOR_HEADER] == "true"


def test_models_are_listed_and_embeddings_are_refused(server: SimServer) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:
            models = [m.id async for m in client.models.list()]
            with pytest.raises(openai.NotFoundError) as caught:
                await client.embeddings.create(model="text-embedding-3-small", input="hello")
            assert caught.value.response.headers[SIMULATOR_HEADER] == "true"
            assert "embed" in caught.value.message
            return models

    assert asyncio.run(run()) == sorted(PROFILES)


def test_outcome_draws_are_deterministic_and_follow_the_profile() -> None:
    profile = SimProfile(rate_limit=0.02, server_error=0.01, timeout=0.005, malformed=0.005)
    prompts = [f"prompt {i}" for i in range(20_000)]
    outcomes = [draw_outcome(profile, "m", p, 1) for p in prompts]
    assert outcomes == [draw_outcome(profile, "m", p, 1) for p in prompts]
    share = {kind: outcomes.count(kind) / len(prompts) for kind in ("rate_limit", "server_error", "timeout")}
    assert share["rate_limit"] == pytest.approx(0.02, abs=0.005)
    assert share["server_error"] == pytest.approx(0.01, abs=0.004)
    assert share["timeout"] == pytest.approx(0.005, abs=0.003)
    assert outcomes.count("ok") / len(prompts) == pytest.approx(0.96, abs=0.01)


def test_delay_follows_the_latency_profile() -> None:
    steady = SimProfile(ttft_ms=400, output_tokens_per_s=50)
    assert draw_delay_s(steady, "m", "p", 1, 100, time_scale=1.0) == pytest.approx(2.4)
    assert draw_delay_s(steady, "m", "p", 1, 100, time_scale=0.5) == pytest.approx(1.2)
    assert draw_delay_s(steady, "m", "p", 1, 100, time_scale=0.0) == 0.0
    jittery = SimProfile(ttft_ms=400, output_tokens_per_s=50, jitter=0.3)
    delays = [draw_delay_s(jittery, "m", f"p{i}", 1, 100, time_scale=1.0) for i in range(2000)]
    assert delays == [draw_delay_s(jittery, "m", f"p{i}", 1, 100, time_scale=1.0) for i in range(2000)]
    assert sorted(delays)[1000] == pytest.approx(2.4, rel=0.05)
    assert min(delays) < 2.0 < 2.8 < max(delays)


def test_shipped_config_loads() -> None:
    config = load_sim_config(DEFAULT_SIM_CONFIG)
    names = {"gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano", "claude-3-5-haiku", "claude-haiku-4-5"}
    assert names | {"claude-sonnet-4-5", "gemini-2.5-flash"} <= set(config.models)
    assert config.models["gpt-4o"].divergence.close > config.models["gpt-4.1-nano"].divergence.close
    assert config.profile("unheard-of") == config.default
    for profile in config.models.values():
        assert 0.005 <= profile.rate_limit <= 0.03
        assert profile.server_error + profile.timeout + profile.malformed < 0.02


def test_divergence_must_sum_to_one(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("models:\n  small:\n    divergence: {close: 0.5, mild: 0.3, far: 0.1}\n")
    with pytest.raises(ConfigError) as caught:
        load_sim_config(path)
    assert caught.value.param == "models.small.divergence"
    assert "models.small.divergence" in caught.value.message and "sum to 1" in caught.value.message


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("default: {rate_limit: 0.6, server_error: 0.6}\n", "default"),
        ("default: {ttft_ms: -1}\n", "default.ttft_ms"),
        ("time_scale: -1\n", "time_scale"),
        ("models: {m: {verbosity: 0}}\n", "models.m.verbosity"),
        ("models: {m: {latency: 3}}\n", "models.m.latency"),
    ],
)
def test_bad_profiles_are_refused_with_the_field(tmp_path: Path, text: str, param: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_sim_config(path)
    assert caught.value.param == param


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_sim_config(tmp_path / "nope.yaml")
    assert caught.value.param == "config"
