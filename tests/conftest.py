"""Shared fixtures: a small catalog for hand-computed cases and a generated log store."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import engine.fanout  # noqa: F401  (first: its Ray defaults, loopback and token auth, precede any `import ray`)
from engine.logs import SCHEMA, write_partitioned
from engine.pricing import Catalog, load_catalog
from engine.synth import generate

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent
#: Last day (exclusive) of the generated store.
STORE_END = dt.date(2026, 4, 20)


@pytest.fixture(scope="session")
def shipped_catalog() -> Catalog:
    return load_catalog(REPO / "configs" / "pricing.yaml")


@pytest.fixture(scope="session")
def toy_catalog() -> Catalog:
    """Round prices so expectations can be computed by hand."""
    return Catalog.model_validate(
        {
            "models": {
                "big": {
                    "provider": "acme",
                    "input_per_mtok": 10,
                    "output_per_mtok": 20,
                    "cached_input_per_mtok": 5,
                    "ttft_ms": 500,
                    "output_tokens_per_s": 50,
                    "quality_tier": 1,
                },
                "small": {
                    "provider": "acme",
                    "input_per_mtok": 1,
                    "output_per_mtok": 2,
                    "cached_input_per_mtok": 0.5,
                    "ttft_ms": 100,
                    "output_tokens_per_s": 100,
                    "quality_tier": 3,
                },
                "other": {
                    "provider": "zeta",
                    "input_per_mtok": 2,
                    "output_per_mtok": 1,
                    "ttft_ms": 200,
                    "output_tokens_per_s": 200,
                    "quality_tier": 2,
                },
            }
        }
    )


def log_frame(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Log rows with defaults for every column not given."""
    start = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
    filled = []
    for i, row in enumerate(rows):
        base: dict[str, Any] = {
            "project_id": "p",
            "request_id": f"r{i}",
            "timestamp": start + dt.timedelta(minutes=i),
            "model": "big",
            "provider": "acme",
            "input_tokens": 1000,
            "output_tokens": 100,
            "cached_input_tokens": 0,
            "latency_ms": 1000.0,
            "cost_usd": 0.012,
            "status": "ok",
            "error_type": None,
            "end_user_id": "u1",
            "tags": [],
            "routing_config_version": 1,
            "request_json": None,
            "response_text": None,
        }
        filled.append(base | row)
    return pl.DataFrame(filled, schema=SCHEMA)


@pytest.fixture(scope="session")
def log_store(tmp_path_factory: pytest.TempPathFactory, shipped_catalog: Catalog) -> Path:
    """Eight days of synthetic traffic for project ``demo`` ending before ``STORE_END``."""
    root = tmp_path_factory.mktemp("logs")
    frame = generate(shipped_catalog, project_id="demo", days=8, rows_per_day=3000, seed=7, end=STORE_END)
    write_partitioned(frame, root, "demo")
    return root
