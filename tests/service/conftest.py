"""What the CLI and ``serve`` tests share: a real-time loopback provider and the environment pointing at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.providers._sim import SimConfig, SimProfile, SimServer


@pytest.fixture
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimServer]:
    """Real time but quick: ~0.1 s a call (a module's ``SIM_TTFT_MS`` slows it), with a call log."""
    ttft_ms = getattr(request.module, "SIM_TTFT_MS", 80)
    config = SimConfig(models={"gpt-4o-mini": SimProfile(ttft_ms=ttft_ms, output_tokens_per_s=5000)}, time_scale=1)
    with SimServer(config, call_log=tmp_path / "calls.jsonl") as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, log_store: Path, sim: SimServer) -> dict[str, str]:
    """A subprocess environment: a fresh home, the shared log store, the simulator as ``pc_openai_default``."""
    credentials = tmp_path / "credentials.yaml"
    credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "REHEARSAL_HOME": str(tmp_path / "home"),
        "REHEARSAL_LOGS": str(log_store),
        "REHEARSAL_CREDENTIALS": str(credentials),
        "REHEARSAL_SAMPLE_MIN": "1",
        "REHEARSAL_RETRY_BACKOFF_S": "0",
        "REHEARSAL_WORKERS": "1",
        "REHEARSAL_CONCURRENCY": "4",
        "REHEARSAL_RUN_WATCH_S": "1",
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
