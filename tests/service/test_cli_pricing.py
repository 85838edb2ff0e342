"""``rehearsal pricing show/list`` and the pricing column of ``logs inspect``, as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import genai_prices
import pytest

from engine.logs import write_partitioned
from tests.conftest import log_frame

VERSION = genai_prices.__version__


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {"REHEARSAL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == expect, proc.stderr
        return proc

    return run


def test_show_says_how_a_name_resolves_and_its_rates(cli) -> None:  # type: ignore[no-untyped-def]
    shown = cli("pricing", "show", "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0").stdout
    assert "→ aws:regional.anthropic.claude-3-5-sonnet-20241022-v2:0 (billed by aws)" in shown
    assert f"source: genai-prices {VERSION}" in shown
    for row in ("input", "cached input (read)", "cache write", "output", "latency profile"):
        assert row in shown
    quote = json.loads(cli("pricing", "show", "o3", "--date", "2025-06-01", "--json").stdout)
    assert quote["canonical"] == "openai:o3" and quote["date"] == "2025-06-01"
    assert (quote["standard"]["input_per_mtok"], quote["standard"]["output_per_mtok"]) == (10.0, 40.0)
    assert quote["batch"]["input_per_mtok"] == 5.0 and quote["batch"]["batch"] is True
    assert "2025-06-10" in quote["changes"]
    azure = json.loads(cli("pricing", "show", "gpt-4o", "--provider", "azure", "--json").stdout)
    assert azure["canonical"] == "azure:gpt-4o"


def test_show_an_override_and_an_unknown_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine = tmp_path / "mine.yaml"
    mine.write_text("models:\n  gpt-4o: {provider: openai, input_per_mtok: 2.0, output_per_mtok: 8.0}\n")
    quote = json.loads(cli("pricing", "show", "gpt-4o-2024-08-06", "--pricing", str(mine), "--json").stdout)
    assert quote["standard"]["input_per_mtok"] == 2.0
    assert quote["standard"]["source"] == f"override {mine} (gpt-4o)"
    proc = cli("pricing", "show", "acme-llm-7", expect=2)
    assert "unknown model 'acme-llm-7'" in proc.stderr and "--pricing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "expected YYYY-MM-DD" in cli("pricing", "show", "o3", "--date", "June", expect=2).stderr


def test_list_by_provider(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(cli("pricing", "list", "--provider", "anthropic", "--json").stdout)
    assert {r["provider"] for r in rows} == {"anthropic"}
    sonnet = next(r for r in rows if r["name"] == "claude-3-5-sonnet")
    assert (sonnet["input_per_mtok"], sonnet["cached_input_per_mtok"], sonnet["cache_write_per_mtok"]) == (
        3.0,
        0.3,
        3.75,
    )
    table = cli("pricing", "list", "--provider", "google").stdout
    assert "gemini-2.5-pro (tiers)" in table and f"list prices: genai-prices {VERSION}" in table
    assert "no priced models for provider 'acme'" in cli("pricing", "list", "--provider", "acme", expect=2).stderr


def test_logs_inspect_says_which_models_are_priced(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "logs"
    write_partitioned(
        log_frame([{"model": "gpt-4o-2024-08-06"}, {"model": "acme-llm-7"}, {"model": "acme-llm-7"}]), root, "p"
    )
    partitions = json.loads(cli("logs", "inspect", str(root), "--json").stdout)["partitions"]
    assert {(p["model"], p["priced"]) for p in partitions} == {("gpt-4o-2024-08-06", True), ("acme-llm-7", False)}
    shown = cli("logs", "inspect", str(root)).stdout
    assert "not priced by the catalog: acme-llm-7 (2 rows)" in shown
