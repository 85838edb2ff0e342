"""Similarity: the real local model, the SQLite cache, vectorised scoring, and OpenAI through a loopback server."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.errors import ConfigError, ProviderError
from engine.pricing import Catalog
from engine.similarity import (
    LOCAL_MODEL,
    OPENAI_BATCH_SIZE,
    Embedder,
    EmbeddingCache,
    EmbedOutput,
    LocalEmbedder,
    OpenAIEmbedder,
    bucket_of,
    cosine_rows,
    embed_texts,
    get_embedder,
    histogram,
    score_pairs,
)
from engine.synth import TOPICS, PromptKey, answer

# --------------------------------------------------------------------------- fixtures and doubles


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the module."""
    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    return embedder


def _fake_vector(text: str, dim: int = 8) -> np.ndarray:
    """A deterministic, un-normalised vector per text (the loopback server and the counting embedder use it)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim) + 0.5


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@dataclass
class CountingEmbedder(Embedder):
    """A test double at the plug-in boundary: deterministic vectors, one token per word, every call recorded."""

    name: str = "counting"
    price_per_mtok: float = 1.0
    calls: list[list[str]] = field(default_factory=list)

    def embed(self, texts: list[str]) -> EmbedOutput:
        self.calls.append(list(texts))
        rows = np.array([_fake_vector(t) for t in texts], dtype=np.float32).reshape(len(texts), 8)
        return EmbedOutput(_unit(rows).astype(np.float32), sum(len(t.split()) for t in texts))

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


@dataclass
class EmbeddingsServer:
    """An OpenAI-compatible ``POST /v1/embeddings`` on loopback, recording each request."""

    base_url: str
    requests: list[dict[str, Any]]


def _embeddings_app(requests: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if body["model"] == "broken":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(text).tolist()}
            for i, text in enumerate(inputs)
        ]
        # Out of order on purpose: clients must place vectors by ``index``.
        data.reverse()
        tokens = sum(len(text.split()) for text in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddingsServer]:
    requests: list[dict[str, Any]] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(_embeddings_app(requests), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uv.started, "the loopback embeddings server did not start"
    yield EmbeddingsServer(f"http://127.0.0.1:{port}/v1", requests)
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def openai_requests(server: EmbeddingsServer) -> list[dict[str, Any]]:
    server.requests.clear()
    return server.requests


# --------------------------------------------------------------------------- the local model


def test_local_embedder_returns_normalised_float32_rows(local: LocalEmbedder) -> None:
    out = local.embed(["How do I reset my password?", "Refunds take five days.", "x"])
    assert out.vectors.shape == (3, 384)
    assert out.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    assert out.tokens == 0
    assert local.name == LOCAL_MODEL
    assert local.cost_usd(1_000_000) == 0.0
    assert local.embed([]).vectors.shape == (0, 384)


def test_local_model_is_loaded_once_per_process(local: LocalEmbedder) -> None:
    assert LocalEmbedder().model is local.model


def test_identical_texts_score_one(local: LocalEmbedder) -> None:
    key = PromptKey(0, 0, 0, 0, 0)
    texts = [answer(key, 4), "Hello world.", "Lisbon in spring."]
    out = score_pairs(local, texts, list(texts), None)
    np.testing.assert_allclose(out.similarity, 1.0, atol=1e-6)
    assert out.tokens == 0


def _prompts() -> list[PromptKey]:
    # Two subjects and wordings of each of the 16 topics: 32 prompts, each answered twice.
    return [PromptKey(t, s, s % 3, s, 0) for t in range(len(TOPICS)) for s in (0, 1)]


def test_same_prompt_answers_are_closer_than_cross_topic(local: LocalEmbedder) -> None:
    keys = _prompts()
    first = [answer(k, 4, variant=0) for k in keys]
    second = [answer(k, 4, variant=1) for k in keys]
    # Shifting by two keys pairs every answer with one of the next topic.
    shifted = second[2:] + second[:2]
    assert all(keys[i].topic != keys[(i + 2) % len(keys)].topic for i in range(len(keys)))

    same = score_pairs(local, first, second, None).similarity
    cross = score_pairs(local, first, shifted, None).similarity

    # Measured with all-MiniLM-L6-v2: same-prompt mean 0.81 (median 0.85, min 0.41),
    # cross-topic mean 0.06 (max 0.33).
    assert not np.isnan(same).any() and not np.isnan(cross).any()
    assert same.mean() > 0.65
    assert cross.mean() < 0.20
    assert same.mean() > cross.mean() + 0.5
    assert np.median(same) > np.max(cross)


def test_missing_or_blank_texts_are_unscored(local: LocalEmbedder) -> None:
    baseline = ["Open the sign-in page.", None, "", "   \n", "Simmer for twenty minutes.", "Book tickets online."]
    candidate = ["Open the sign-in page.", "Some answer.", "Other answer.", "Yes.", None, "Buy tickets on the web."]
    out = score_pairs(local, baseline, candidate, None)
    assert np.isnan(out.similarity[1:5]).all()
    assert out.similarity[0] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < out.similarity[5] < 1.0


def test_nothing_is_embedded_when_no_pair_is_scorable() -> None:
    embedder = CountingEmbedder()
    out = score_pairs(embedder, [None, "", "a"], ["b", "c", " "], None)
    assert np.isnan(out.similarity).all()
    assert out.similarity.dtype == np.float64
    assert out.tokens == 0
    assert embedder.calls == []
    assert score_pairs(embedder, [], [], None).similarity.shape == (0,)


def test_score_pairs_embeds_a_text_shared_by_both_sides_once() -> None:
    embedder = CountingEmbedder()
    out = score_pairs(embedder, ["same words", "alpha beta", "same words"], ["same words", "gamma", "delta"], None)
    assert len(embedder.calls) == 1
    assert sorted(embedder.embedded) == ["alpha beta", "delta", "gamma", "same words"]
    assert out.tokens == 2 + 2 + 1 + 1
    assert out.similarity[0] == pytest.approx(1.0, abs=1e-6)


def test_score_pairs_refuses_unaligned_sides() -> None:
    with pytest.raises(ConfigError):
        score_pairs(CountingEmbedder(), ["a"], ["a", "b"], None)


# --------------------------------------------------------------------------- cosine, histogram, buckets


def test_cosine_rows_is_rowwise_and_clipped() -> None:
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    b = np.array([[1.0, 0.0], [-1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    sim = cosine_rows(a, b)
    assert sim.dtype == np.float64
    np.testing.assert_allclose(sim, [1.0, 0.0, 0.96, 0.0], atol=1e-6)
    with pytest.raises(ConfigError):
        cosine_rows(a, b[:2])


def test_bucket_edges() -> None:
    h = histogram(np.array([0.0, 0.0999, 0.1, 0.3, 0.7, 0.9, 0.95, 1.0]))
    assert [b.count for b in h.buckets] == [2, 1, 0, 1, 0, 0, 0, 1, 0, 3]
    assert [(b.lower, b.upper) for b in h.buckets][:2] == [(0.0, 0.1), (0.1, 0.2)]
    assert (h.buckets[-1].lower, h.buckets[-1].upper) == (0.9, 1.0)
    assert len(h.buckets) == 10


def test_histogram_summary_and_headline() -> None:
    similarity = np.concatenate([np.full(730, 0.9), np.full(270, 0.5), np.full(25, np.nan)])
    h = histogram(similarity)
    assert h.scored_count == 1000
    assert h.unscored_count == 25
    assert h.threshold == 0.85
    assert h.agreement == pytest.approx(0.73)
    assert h.mean_similarity == pytest.approx(0.73 * 0.9 + 0.27 * 0.5)
    assert h.headline == "73% agreement (≥0.85) over 1,000 scored pairs"
    assert histogram(similarity, threshold=0.9).headline == "73% agreement (≥0.90) over 1,000 scored pairs"
    assert histogram(similarity, threshold=0.95).headline == "0% agreement (≥0.95) over 1,000 scored pairs"


def test_headline_rounds_half_up_and_counts_singular() -> None:
    # 1 of 8 is 12.5%: rounded half up to 13 (Python's round() would say 12).
    assert histogram(np.array([0.9] + [0.1] * 7)).headline == "13% agreement (≥0.85) over 8 scored pairs"
    assert histogram(np.array([0.85])).headline == "100% agreement (≥0.85) over 1 scored pair"


def test_histogram_without_scored_pairs() -> None:
    h = histogram(np.array([np.nan, np.nan]))
    assert h.scored_count == 0 and h.unscored_count == 2
    assert h.mean_similarity is None and h.agreement is None
    assert sum(b.count for b in h.buckets) == 0
    assert h.headline == "No pairs were scored (2 unscored)"
    assert histogram(np.array([])).headline == "No pairs were scored"


@pytest.mark.parametrize("threshold", [-0.01, 1.01, float("nan")])
def test_threshold_outside_unit_interval_is_refused(threshold: float) -> None:
    with pytest.raises(ConfigError) as err:
        histogram(np.array([0.5]), threshold=threshold)
    assert err.value.param == "threshold"


_similarities = hnp.arrays(
    np.float64,
    st.integers(0, 300),
    elements=st.one_of(st.floats(0.0, 1.0), st.just(float("nan"))),
)


@given(similarity=_similarities, threshold=st.floats(0.0, 1.0))
def test_histogram_counts_sum_to_scored_pairs(similarity: np.ndarray, threshold: float) -> None:
    h = histogram(similarity, threshold=threshold)
    scored = similarity[~np.isnan(similarity)]
    assert sum(b.count for b in h.buckets) == h.scored_count == scored.size
    assert h.scored_count + h.unscored_count == similarity.size
    for b in h.buckets:
        upper_ok = (scored <= b.upper) if b.upper == 1.0 else (scored < b.upper)
        assert b.count == int(np.count_nonzero((scored >= b.lower) & upper_ok))
    if scored.size:
        assert h.agreement == pytest.approx(np.mean(scored >= threshold))
        assert h.mean_similarity == pytest.approx(scored.mean())
    else:
        assert h.agreement is None and h.mean_similarity is None


def test_bucket_of() -> None:
    similarity = np.array([0.0, 0.59, 0.6, 0.84, 0.85, 1.0, np.nan])
    assert bucket_of(similarity).tolist() == ["major", "major", "mild", "mild", "high", "high", None]
    assert bucket_of(similarity, boundaries=(0.5, 0.95)).tolist() == [
        "major",
        "mild",
        "mild",
        "mild",
        "mild",
        "high",
        None,
    ]
    with pytest.raises(ConfigError):
        bucket_of(similarity, boundaries=(0.9, 0.5))
    for bad in [(0.5, 1.5), (0.6,)]:
        with pytest.raises(ConfigError) as err:
            bucket_of(similarity, boundaries=bad)  # type: ignore[arg-type]
        assert err.value.param == "boundaries"


# --------------------------------------------------------------------------- embedding once


def test_embed_texts_dedupes_within_a_call() -> None:
    embedder = CountingEmbedder()
    out = embed_texts(embedder, ["one two", "three", "one two", "three", "four"], None)
    assert embedder.calls == [["one two", "three", "four"]]
    assert out.tokens == 4
    assert out.vectors.shape == (5, 8)
    np.testing.assert_array_equal(out.vectors[0], out.vectors[2])
    np.testing.assert_array_equal(out.vectors[1], out.vectors[3])
    np.testing.assert_allclose(out.vectors[4], _unit(_fake_vector("four")[None])[0], rtol=1e-6)
    assert embed_texts(embedder, [], None).vectors.shape[0] == 0
    assert len(embedder.calls) == 1


def test_cache_serves_a_second_call_and_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "embeddings.db"
    texts = ["alpha beta", "gamma", "alpha beta", "delta epsilon zeta"]
    embedder = CountingEmbedder()
    with EmbeddingCache(path) as cache:
        first = embed_texts(embedder, texts, cache)
        assert len(cache) == 3
        second = embed_texts(embedder, texts, cache)
    assert len(embedder.calls) == 1
    assert first.tokens == 2 + 1 + 3
    assert second.tokens == 0
    np.testing.assert_array_equal(first.vectors, second.vectors)

    with EmbeddingCache(path) as reopened:
        third = embed_texts(embedder, [*texts, "eta"], reopened)
        assert embedder.calls[1:] == [["eta"]]
        assert third.tokens == 1
        np.testing.assert_array_equal(third.vectors[:4], first.vectors)
        hits = reopened.get_many("counting", ["gamma", "nope", "gamma"])
        assert sorted(hits) == [0, 2]
        assert reopened.get_many("another-model", texts) == {}

    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_cache_keeps_models_apart(tmp_path: Path) -> None:
    a, b = CountingEmbedder(name="model-a"), CountingEmbedder(name="model-b")
    with EmbeddingCache(tmp_path / "e.db") as cache:
        embed_texts(a, ["hello"], cache)
        embed_texts(b, ["hello"], cache)
    assert a.calls == [["hello"]] and b.calls == [["hello"]]


def test_cached_scores_match_fresh_ones(local: LocalEmbedder, tmp_path: Path) -> None:
    keys = _prompts()[:6]
    baseline = [answer(k, 3, 0) for k in keys]
    candidate = [answer(k, 3, 1) for k in keys]
    fresh = score_pairs(local, baseline, candidate, None).similarity
    with EmbeddingCache(tmp_path / "e.db") as cache:
        score_pairs(local, baseline, candidate, cache)
    with EmbeddingCache(tmp_path / "e.db") as cache:
        cached = score_pairs(local, baseline, candidate, cache).similarity
    np.testing.assert_allclose(cached, fresh, atol=1e-6)


# --------------------------------------------------------------------------- get_embedder


def test_get_embedder_builds_each_spec(shipped_catalog: Catalog) -> None:
    assert isinstance(get_embedder(catalog=shipped_catalog), LocalEmbedder)
    assert isinstance(get_embedder("local", catalog=shipped_catalog), LocalEmbedder)
    assert isinstance(get_embedder("all-MiniLM-L6-v2", catalog=shipped_catalog), LocalEmbedder)
    small = get_embedder("openai:text-embedding-3-small", catalog=shipped_catalog, api_key="sk-test")
    large = get_embedder("openai:text-embedding-3-large", catalog=shipped_catalog, api_key="sk-test")
    assert isinstance(small, OpenAIEmbedder) and isinstance(large, OpenAIEmbedder)
    assert (small.name, small.price_per_mtok) == ("text-embedding-3-small", 0.02)
    assert (large.name, large.price_per_mtok) == ("text-embedding-3-large", 0.13)
    assert small.cost_usd(1_000_000) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "spec", ["", "bogus", "openai:", "openai:gpt-4o", "openai:all-MiniLM-L6-v2", "local:other", "cohere:embed-v3"]
)
def test_get_embedder_refuses_unknown_specs(spec: str, shipped_catalog: Catalog) -> None:
    with pytest.raises(ConfigError) as err:
        get_embedder(spec, catalog=shipped_catalog, api_key="sk-test")
    assert err.value.param == "embeddingModel"
    assert "local" in err.value.message


def test_openai_embedder_needs_a_key(shipped_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        get_embedder("openai:text-embedding-3-small", catalog=shipped_catalog)
    assert err.value.param == "embeddingModel"


# --------------------------------------------------------------------------- OpenAI over loopback HTTP


def test_openai_embedder_batches_and_counts_tokens(
    server: EmbeddingsServer, openai_requests: list[dict[str, Any]], shipped_catalog: Catalog
) -> None:
    embedder = get_embedder(
        "openai:text-embedding-3-small", catalog=shipped_catalog, api_key="sk-test", base_url=server.base_url
    )
    texts = [f"text number {i}" for i in range(OPENAI_BATCH_SIZE * 2 + 76)]
    out = embedder.embed(texts)

    assert [len(r["body"]["input"]) for r in openai_requests] == [512, 512, 76]
    assert {r["body"]["model"] for r in openai_requests} == {"text-embedding-3-small"}
    assert {r["authorization"] for r in openai_requests} == {"Bearer sk-test"}
    assert out.tokens == 3 * len(texts)
    assert out.vectors.dtype == np.float32 and out.vectors.shape == (len(texts), 8)
    expected = _unit(np.array([_fake_vector(t) for t in texts]))
    np.testing.assert_allclose(out.vectors, expected, rtol=1e-5, atol=1e-6)
    assert embedder.cost_usd(out.tokens) == pytest.approx(out.tokens * 0.02 / 1e6)


def test_openai_scores_and_cache_bill_only_misses(
    server: EmbeddingsServer, openai_requests: list[dict[str, Any]], tmp_path: Path
) -> None:
    embedder = OpenAIEmbedder(api_key="sk-test", base_url=server.base_url, price_per_mtok=0.02)
    baseline = ["the same answer", "first baseline", None]
    candidate = ["the same answer", "first candidate here", "an answer"]
    with EmbeddingCache(tmp_path / "e.db") as cache:
        first = score_pairs(embedder, baseline, candidate, cache)
        second = score_pairs(embedder, baseline, candidate, cache)
    assert len(openai_requests) == 1
    assert sorted(openai_requests[0]["body"]["input"]) == ["first baseline", "first candidate here", "the same answer"]
    assert first.tokens == 3 + 2 + 3
    assert second.tokens == 0
    assert first.similarity[0] == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(first.similarity[2])
    np.testing.assert_array_equal(first.similarity, second.similarity)
    embedder.close()


def test_openai_failure_is_a_provider_error(server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder("broken", api_key="sk-test", base_url=server.base_url, price_per_mtok=0.0, max_retries=0)
    with pytest.raises(ProviderError, match="broken"):
        embedder.embed(["hello"])
