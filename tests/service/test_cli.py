"""The ``rehearsal`` command end to end, as a subprocess, on a generated store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tests.conftest import STORE_END

WINDOW = {"windowStart": "2026-04-13T00:00:00Z", "windowEnd": f"{STORE_END}T00:00:00Z"}
SPEC = {
    "name": "switch to gpt-4o-mini",
    "projectId": "demo",
    "candidatePolicy": "single",
    "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
    **WINDOW,
    "hypothesis": "cheaper",
}
MINI = {"model": "gpt-4o-mini"}
RULES = SPEC | {"candidatePolicy": "custom_rules"}


@pytest.fixture
def cli(tmp_path: Path, log_store: Path):  # type: ignore[no-untyped-def]
    env = {"REHEARSAL_HOME": str(tmp_path / "home"), "REHEARSAL_LOGS": str(log_store), "PATH": "/usr/bin:/bin"}

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == expect, proc.stderr
        return proc

    return run


def write_spec(tmp_path: Path, body: dict[str, Any] | str | bytes, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    dump = json.dumps if name.endswith(".json") else yaml.safe_dump
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body if isinstance(body, str) else dump(body))
    return str(path)


def test_run_show_list_promote(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = cli("experiment", "run", write_spec(tmp_path, SPEC), "--json")
    experiment = json.loads(proc.stdout)  # stdout is exactly the object
    assert experiment["status"] == "completed"
    assert experiment["hypothesis"] == "cheaper"
    assert experiment["candidate_summary"]["route_distribution"] == {"gpt-4o-mini:openai": 1.0}
    assert experiment["deltas"]["cost_delta_pct"] < -50
    assert experiment["baseline_summary"]["request_count"] == 7 * 3000
    shown = json.loads(cli("experiment", "show", experiment["id"], "--json").stdout)
    assert shown == experiment
    listed = json.loads(cli("experiment", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [experiment["id"]]
    table = cli("experiment", "show", experiment["id"]).stdout
    assert "Baseline vs candidate" in table and "gpt-4o-mini:openai" in table
    assert f"List prices: genai-prices {experiment['pricing']['version']} in force on" in table
    promoted = json.loads(cli("experiment", "promote", experiment["id"], "--json").stdout)
    assert promoted["experiment"]["promoted_version"] == 1 and promoted["routing_config"]["version"] == 1
    # The promoted config is now addressable as @production.
    nested = SPEC | {
        "candidatePolicy": "ab_test",
        "candidateConfig": {"variants": [{"weight": 1, "config": "@production"}]},
    }
    again = json.loads(cli("experiment", "run", write_spec(tmp_path, nested, "n.json"), "--json").stdout)
    assert again["candidate_summary"] == experiment["candidate_summary"]
    project = json.loads(cli("projects", "show", "demo", "--json").stdout)
    assert project["experiment_spend_cap_usd"] == 50 and project["logging_mode"] == "full"


#: What only paid runs, the server or MCP need; a routing-only command loads none of it.
HEAVY = ("ray", "openai", "torch", "sentence_transformers", "prefect", "fastapi", "mcp", "mcp_types")
PROBE = f"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr))
from service.cli import main
sys.argv = ["rehearsal", *sys.argv[1:]]
main()
"""


def test_help_and_a_routing_only_run_import_no_heavy_package(tmp_path: Path, log_store: Path) -> None:
    env = {"REHEARSAL_HOME": str(tmp_path / "home"), "REHEARSAL_LOGS": str(log_store), "PATH": "/usr/bin:/bin"}
    spec = write_spec(tmp_path, SPEC)
    for args in (["--help"], ["experiment", "run", spec, "--json"]):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stderr.strip().splitlines()[-1]) == [], args


def test_replaying_the_baseline_against_itself(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = SPEC | {
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o"},
        "filters": {"models": ["gpt-4o"]},
    }
    experiment = json.loads(cli("experiment", "run", write_spec(tmp_path, spec), "--json").stdout)

    def points(figures: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in figures.items() if not k.endswith("_interval")}

    assert points(experiment["baseline_summary"]) == points(experiment["candidate_summary"])
    # Nothing moves, so nothing is uncertain: every delta's interval is the point.
    for name in points(experiment["deltas"]):
        assert experiment["deltas"][f"{name}_interval"] == {"low": pytest.approx(0), "high": pytest.approx(0)}
    assert points(experiment["deltas"]) == {
        "cost_delta_usd": 0.0,
        "cost_delta_pct": 0.0,
        "latency_p50_delta_pct": 0.0,
        "latency_p95_delta_pct": 0.0,
        "error_rate_delta_pct": 0.0,
    }


def test_logs_show_prints_one_logged_request(cli, log_store: Path) -> None:  # type: ignore[no-untyped-def]
    row = pl.scan_parquet(log_store / "project_id=demo" / "**" / "*.parquet").head(1).collect().row(0, named=True)
    shown = json.loads(cli("logs", "show", row["request_id"], "--json").stdout)
    assert shown["project_id"] == "demo" and shown["request_id"] == row["request_id"]
    assert (shown["model"], shown["response_text"], shown["request_json"]) == (
        row["model"],
        row["response_text"],
        row["request_json"],
    )
    text = cli("logs", "show", row["request_id"], "--project", "demo").stdout
    assert row["model"] in text and "[answer]" in text
    missing = cli("logs", "show", "req_nope", expect=2).stderr
    assert "request_id" in missing and "req_nope" in missing and "Traceback" not in missing


#: Specs the CLI refuses, each with what its one-line error says.
BAD_INPUTS: list[tuple[Any, str]] = [
    ("name: [unclosed", "is not valid YAML"),
    ({k: v for k, v in SPEC.items() if k != "candidatePolicy"}, "candidatePolicy: Field required"),
    (
        SPEC | {"windowStart": WINDOW["windowEnd"], "windowEnd": WINDOW["windowStart"]},
        "windowEnd must be after windowStart",
    ),
    (
        SPEC | {"windowStart": "2020-01-01T00:00:00Z", "windowEnd": "2020-01-08T00:00:00Z"},
        "no log rows for project",
    ),
    (SPEC | {"candidateConfig": {"model": "gpt-9"}}, "unknown model 'gpt-9'"),
    (SPEC | {"candidatePolicy": "ensemble", "candidateConfig": {"models": ["a", "b"]}}, "[candidatePolicy]"),
    (SPEC | {"hypothesis": "x" * 2001}, "hypothesis: String should have at most 2000 characters"),
    (SPEC | {"windowStart": "last tuesday"}, "windowStart: Input should be a valid datetime"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a text file"),
    (
        RULES | {"candidateConfig": {"rules": [{"else": "@production:99999999999999999999"}]}},
        "names no saved routing config",
    ),
    (RULES | {"candidateConfig": {"rules": [{"if": "input_tokens > " + "9" * 400, "then": MINI}]}}, "digits"),
    (RULES | {"candidateConfig": {"rules": [{"if": "(" * 200 + "hour > 1" + ")" * 200, "then": MINI}]}}, "nests"),
]


def test_bad_input_is_one_line_exit_2_and_nothing_stored(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # One home for all: each refused run would have stored its experiment there, so one listing checks them all.
    for i, (body, message) in enumerate(BAD_INPUTS):
        name = f"spec{i}.yaml"
        proc = cli("experiment", "run", write_spec(tmp_path, body, name), expect=2)
        assert message in proc.stderr, (message, proc.stderr)
        assert "Traceback" not in proc.stderr, message
        assert len(proc.stderr.strip().splitlines()) == 1, (message, proc.stderr)
        assert proc.stdout == "", message
    assert json.loads(cli("experiment", "list", "--json").stdout) == []


def test_corrupt_store_file_is_named(cli, tmp_path: Path, log_store: Path) -> None:  # type: ignore[no-untyped-def]
    broken_root = tmp_path / "logs"
    day = broken_root / "project_id=demo" / "date=2026-04-15"
    day.mkdir(parents=True)
    (day / "broken.parquet").write_bytes(b"garbage")
    proc = cli("experiment", "run", write_spec(tmp_path, SPEC), "--logs", str(broken_root), expect=2)
    assert "broken.parquet: not a readable Parquet file" in proc.stderr
    proc = cli("logs", "inspect", str(broken_root), expect=2)
    assert "broken.parquet" in proc.stderr


def test_logs_generate_and_inspect(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "gen"
    cli(
        "logs",
        "generate",
        "--out",
        str(out),
        "--project",
        "p1",
        "--days",
        "2",
        "--rows-per-day",
        "500",
        "--end",
        "2026-04-01",
        "--metadata-only",
    )
    report = json.loads(cli("logs", "inspect", str(out), "--json").stdout)
    assert report["problems"] == []
    assert sum(p["rows"] for p in report["partitions"]) == 1000
    assert {p["date"] for p in report["partitions"]} == {"2026-03-30", "2026-03-31"}
    cli("logs", "generate", "--out", str(out), "--project", "p1", "--end", "yesterday", expect=2)


def test_debug_shows_the_traceback(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = cli("--debug", "experiment", "show", "exp_missing", expect=2)
    assert "Traceback" in proc.stderr and "does not exist" in proc.stderr


def test_logs_import_says_which_format_and_reports(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fixtures = Path(__file__).parents[1] / "engine" / "importers" / "fixtures"
    sample = str(fixtures / "litellm" / "standard_logging.jsonl")
    store = str(tmp_path / "imported")
    proc = cli("logs", "import", sample, "--out", store, "--project", "gw")
    assert "format litellm: read 9 records" in proc.stderr.replace("\n", " ") and "cache hit" in proc.stderr
    again = json.loads(cli("logs", "import", sample, "--out", store, "--project", "gw", "--json").stdout)
    assert again["format"] == "litellm" and again["rows_written"] == 0 and again["duplicates_skipped"] > 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text(Path(sample).read_text().splitlines()[0] + '\n{"status": "success"}\n')
    failed = cli("logs", "import", str(broken), "--out", store, "--project", "gw2", "--strict", expect=2)
    assert f"{broken}: line 2:" in failed.stderr and "nothing written" in failed.stderr
    assert not (Path(store) / "project_id=gw2").exists()
    assert "openai-batch" in cli("logs", "formats").stdout
