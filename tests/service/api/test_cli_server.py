"""``rehearsal experiment|judge … --server URL``: the CLI as a subprocess against a real uvicorn.

The subprocess gets a fresh, empty ``REHEARSAL_HOME``: everything it shows
must have come through the REST API (and the home stays empty).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.errors import (
    ConfigError,
    Conflict,
    EmptyWindowError,
    NotFound,
    ProviderError,
    RehearsalError,
    Unauthorized,
    Unavailable,
)
from engine.webhooks import sign
from service.cli._experiments import check_ended
from service.client import error_from_response
from service.serve import OFFLINE_ENV, free_port
from tests.service.api.conftest import PROJECT, Served, Uvicorn, body_routing_only

#: The guide's routing-only body as a hand-written YAML file: unquoted timestamps parse as datetimes.
ROUTING_ONLY_YAML = """\
name: switch to gpt-4o-mini (cli)
projectId: proj_abc
candidatePolicy: single
candidateConfig: {model: gpt-4o-mini, provider_credential_id: pc_openai_default}
windowStart: 2026-04-10T00:00:00Z
windowEnd: 2026-04-17T00:00:00Z
hypothesis: submitted from the command line
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "empty-home"
    path.mkdir()
    return path


@pytest.fixture
def env(served: Served, home: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "REHEARSAL_HOME": str(home),
        "REHEARSAL_API_KEY": served.key,
        "COLUMNS": "200",  # tables wide enough for whole ids
        **OFFLINE_ENV,
    }


def cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr}"
    return proc


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    line = proc.stderr.strip()
    assert line.startswith("error") and "\n" not in line, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    return line


def get(served: Served, path: str) -> Any:
    answer = served.client.get(path, headers=served.headers())
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_submit_wait_json_completes_a_routing_only_spec(
    served: Served, live_server: Uvicorn, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(ROUTING_ONLY_YAML)
    proc = cli(env, "experiment", "submit", str(spec), "--server", live_server.url, "--wait", "--json")
    done = json.loads(proc.stdout)  # stdout is exactly the data object
    assert done["status"] == "completed", done["status_reason"]
    assert done["hypothesis"] == "submitted from the command line"
    assert done["window_start"].startswith("2026-04-10T00:00:00")
    assert done["candidate_summary"]["route_distribution"] == {"gpt-4o-mini:openai": 1.0}
    assert done["baseline_summary"]["request_count"] == done["progress"]["total"] > 0
    assert f"{done['progress']['total']}/{done['progress']['total']}" in proc.stderr  # the progress bar
    assert done == get(served, f"/manage/v1/experiments/{done['id']}")
    assert served.svc.store.get_experiment(done["id"]).project_id == PROJECT
    assert list(home.iterdir()) == []  # nothing was run or stored here


def test_submit_prints_the_id_and_run_waits(
    served: Served, live_server: Uvicorn, env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(body_routing_only(name="submitted, not waited for")))
    proc = cli(env, "experiment", "submit", str(spec), "--server", live_server.url)
    experiment_id = proc.stdout.strip()
    assert experiment_id.startswith("exp_") and "\n" not in experiment_id

    env_server = env | {"REHEARSAL_SERVER": live_server.url}  # the default for --server
    table = cli(env_server, "experiment", "run", str(spec)).stdout
    assert "Baseline vs candidate" in table and "gpt-4o-mini:openai" in table and "completed" in table
    assert served.wait(f"/manage/v1/experiments/{experiment_id}")["status"] == "completed"


def test_reads_a_finished_with_responses_experiment(
    served: Served, live_server: Uvicorn, env: dict[str, str], finished_with_responses: dict[str, Any]
) -> None:
    exp_id = finished_with_responses["id"]
    env = env | {"REHEARSAL_SERVER": live_server.url}
    rest = f"/manage/v1/experiments/{exp_id}"

    assert json.loads(cli(env, "experiment", "show", exp_id, "--json").stdout) == get(served, rest)
    shown = cli(env, "experiment", "show", exp_id).stdout
    assert exp_id in shown and "Baseline vs candidate" in shown and "% agreement" in shown

    listed = json.loads(cli(env, "experiment", "list", "--project", PROJECT, "--limit", "100", "--json").stdout)
    assert exp_id in [e["id"] for e in listed]
    assert exp_id in cli(env, "experiment", "list", "--status", "completed", "--limit", "100").stdout

    rows = json.loads(
        cli(env, "experiment", "results", exp_id, "--sort", "similarity_asc", "--limit", "5", "--json").stdout
    )
    assert len(rows) == 5 and "baseline_text" not in rows[0]
    scored = [r["similarity"] for r in rows if r["similarity"] is not None]
    assert scored == sorted(scored)
    page = cli(env, "experiment", "results", exp_id, "--limit", "2").stdout
    assert "more: --cursor" in page and "baseline" in page and "candidate" in page

    hist = json.loads(cli(env, "experiment", "histogram", exp_id, "--threshold", "0.7", "--json").stdout)
    assert hist == get(served, f"{rest}/similarity-histogram?threshold=0.7")
    assert hist["headline"] in cli(env, "experiment", "histogram", exp_id, "--threshold", "0.7").stdout

    runs = json.loads(cli(env, "judge", "list", exp_id, "--json").stdout)
    assert runs == get(served, f"{rest}/judge")


def test_judge_preflight_run_show_results(
    served: Served, live_server: Uvicorn, env: dict[str, str], finished_with_responses: dict[str, Any]
) -> None:
    exp_id = finished_with_responses["id"]
    env = env | {"REHEARSAL_SERVER": live_server.url}
    small = ("--high", "2", "--mild", "2", "--major", "2")
    estimate = json.loads(cli(env, "judge", "preflight", exp_id, *small, "--json").stdout)
    assert estimate["effectivePairCount"] == sum(estimate["effectiveByBucket"].values()) <= 6
    assert "suggested --spend-cap" in cli(env, "judge", "preflight", exp_id, *small).stdout

    judged = json.loads(cli(env, "judge", "run", exp_id, "--spend-cap", "1", *small, "--json").stdout)
    assert judged["status"] == "complete", judged["status_reason"]
    assert judged["summary"]["judged_count"] + judged["summary"]["parse_errors"] == estimate["effectivePairCount"]
    run_id = judged["id"]
    assert json.loads(cli(env, "judge", "show", run_id, "--experiment", exp_id, "--json").stdout) == judged
    assert "95% CI" in cli(env, "judge", "show", run_id, "--experiment", exp_id).stdout
    verdicts = json.loads(cli(env, "judge", "results", run_id, "--experiment", exp_id, "--json").stdout)
    assert {r["request_id"] for r in verdicts} and all("verdict" in r for r in verdicts)
    assert run_id in [r["id"] for r in json.loads(cli(env, "judge", "list", exp_id, "--json").stdout)]

    missing = one_line(cli(env, "judge", "show", run_id, expect=2))
    assert "--experiment" in missing


def test_another_projects_key_is_not_found(
    served: Served, live_server: Uvicorn, env: dict[str, str], finished_with_responses: dict[str, Any]
) -> None:
    env = env | {"REHEARSAL_API_KEY": served.other_key}
    line = one_line(
        cli(env, "experiment", "show", finished_with_responses["id"], "--server", live_server.url, expect=2)
    )
    assert "does not exist" in line and finished_with_responses["id"] in line


def test_bad_spec_names_the_field(live_server: Uvicorn, env: dict[str, str], tmp_path: Path) -> None:
    body = body_routing_only()
    del body["windowEnd"]
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(body))
    line = one_line(cli(env, "experiment", "submit", str(spec), "--server", live_server.url, "--wait", expect=2))
    assert "windowEnd" in line


def test_no_key_names_the_variable(live_server: Uvicorn, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "REHEARSAL_API_KEY"}
    line = one_line(cli(env, "experiment", "list", "--server", live_server.url, expect=2))
    assert "REHEARSAL_API_KEY" in line


def test_server_down_is_one_line_exit_1(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = one_line(cli(env, "experiment", "list", "--server", url, expect=1))
    assert url in line and "cannot reach" in line


@pytest.mark.parametrize(
    ("status", "body", "cls", "param"),
    [
        (
            400,
            {"error": {"message": "windowEnd: required", "type": "invalid_request_error", "param": "windowEnd"}},
            ConfigError,
            "windowEnd",
        ),
        (
            400,
            {"error": {"message": "no rows", "type": "empty_window", "code": "empty_window", "param": None}},
            EmptyWindowError,
            None,
        ),
        (404, {"error": {"message": "gone", "type": "not_found", "param": "id"}}, NotFound, "id"),
        (409, {"error": {"message": "ended", "type": "conflict"}}, Conflict, None),
        (401, {"error": {"message": "bad key", "type": "authentication_error"}}, Unauthorized, None),
        (503, {"error": {"message": "down", "type": "service_unavailable"}}, Unavailable, None),
        (502, "<html>bad gateway</html>", ProviderError, None),  # a proxy's answer: by status
        (500, {"error": {"message": "internal error", "type": "internal_error"}}, RehearsalError, None),
    ],
)
def test_error_answers_become_engine_errors(status: int, body: Any, cls: type, param: str | None) -> None:
    answer = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)
    error = error_from_response(answer)
    assert type(error) is cls and error.param == param
    if isinstance(body, dict):
        assert error.message == body["error"]["message"]
        assert error.code == (body["error"].get("code") or cls.error_type)
    else:
        assert str(status) in error.message and "bad gateway" in error.message


def test_a_failed_run_fails_the_command() -> None:
    check_ended({"id": "exp_1", "status": "cancelled", "status_reason": "spend cap reached"}, "experiment")
    with pytest.raises(RehearsalError, match="exp_1 failed: provider_error: boom") as caught:
        check_ended({"id": "exp_1", "status": "failed", "status_reason": "provider_error: boom"}, "experiment")
    assert type(caught.value) is RehearsalError  # exit 1, not 2


SCHEDULE_YAML = """\
projectId: proj_live
name: nightly check (cli)
candidatePolicy: single
candidateConfig: {model: gpt-4o-mini, provider_credential_id: pc_openai_default}
cronExpression: "0 3 * * *"
windowHours: 12
successCriteria:
  logic: and
  predicates: [{metric: cost_delta_pct, op: lte, value: 0}]
"""


def test_schedule_signals_and_webhooks_commands_against_a_server(
    served: Served, live_server: Uvicorn, env: dict[str, str], tmp_path: Path
) -> None:
    env = env | {"REHEARSAL_API_KEY": served.live_key}
    url = live_server.url
    spec = tmp_path / "schedule.yaml"
    spec.write_text(SCHEDULE_YAML)
    created = json.loads(cli(env, "schedule", "create", str(spec), "--server", url, "--json").stdout)
    assert created["cron_expression"] == "0 3 * * *" and created["last_experiment_id"]
    listed = cli(env, "schedule", "list", "--project", "proj_live", "--server", url).stdout
    assert created["id"] in listed and "0 3 * * *" in listed
    paused = json.loads(cli(env, "schedule", "pause", created["id"], "--server", url, "--json").stdout)
    assert paused["status"] == "paused"
    assert json.loads(cli(env, "schedule", "resume", created["id"], "--server", url, "--json").stdout)["status"] == (
        "active"
    )
    fired = json.loads(cli(env, "schedule", "run-now", created["id"], "--server", url, "--json").stdout)
    assert fired["scheduled_experiment_id"] == created["id"]
    shown = cli(env, "schedule", "show", created["id"], "--server", url).stdout
    assert fired["id"] in shown
    signals = json.loads(cli(env, "signals", "list", "--project", "proj_live", "--server", url, "--json").stdout)
    assert isinstance(signals, list)
    assert (
        json.loads(cli(env, "schedule", "delete", created["id"], "--server", url, "--json").stdout)["id"]
        == (created["id"])
    )

    local = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    line = one_line(cli(local, "schedule", "list", expect=2))
    assert "PREFECT_API_URL" in line


def test_webhooks_verify_checks_a_signature_from_a_shell(env: dict[str, str], tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"id":"evt_1","type":"experiment.completed","created_at":"now","data":{}}')
    ts = str(int(time.time()))
    good = sign("whsec_test", int(ts), body.read_bytes())
    args = ["webhooks", "verify", "--secret", "whsec_test", "--timestamp", ts]
    assert "valid" in cli(env, *args, "--signature", good, "--body", str(body)).stdout
    body.write_bytes(body.read_bytes().replace(b"evt_1", b"evt_2"))
    assert "INVALID" in cli(env, *args, "--signature", good, "--body", str(body), expect=1).stdout
