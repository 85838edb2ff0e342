"""``rehearsal mcp``: the official MCP client drives the server over stdio, as an IDE would.

The server is a subprocess on the served store; the runs it starts execute as
flow runs of the test Prefect server (the session's runner executes them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from service.serve import OFFLINE_ENV
from tests.service.api.conftest import LIVE, OTHER, PROJECT, Served, Uvicorn, body_routing_only

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")

TOOLS = {
    "create_experiment",
    "estimate_experiment",
    "get_experiment",
    "list_experiments",
    "get_experiment_results",
    "get_experiment_pair",
    "get_logged_request",
    "get_experiment_similarity_histogram",
    "cancel_experiment",
    "promote_experiment",
    "estimate_judge_run",
    "create_judge_run",
    "get_judge_run",
    "list_judge_runs",
    "get_judge_run_results",
    "cancel_judge_run",
    "create_scheduled_experiment",
    "list_scheduled_experiments",
    "get_scheduled_experiment",
    "update_scheduled_experiment",
    "delete_scheduled_experiment",
    "pause_scheduled_experiment",
    "resume_scheduled_experiment",
    "run_scheduled_experiment_now",
}


@pytest.fixture
def env(served: Served, tmp_path: Path) -> dict[str, str]:
    """What the IDE's MCP config would set: the store of `serve`, its Prefect server, and a key (proj_abc)."""
    from prefect.settings import PREFECT_API_URL

    return {
        "HOME": str(tmp_path),
        "REHEARSAL_HOME": os.environ["REHEARSAL_HOME"],
        "REHEARSAL_LOGS": os.environ["REHEARSAL_LOGS"],
        "REHEARSAL_CREDENTIALS": os.environ["REHEARSAL_CREDENTIALS"],
        "REHEARSAL_API_KEY": served.key,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        **OFFLINE_ENV,
    }


def session(env: dict[str, str], scenario: Callable[[Client], Awaitable[T]], *args: str) -> T:
    """Start ``rehearsal mcp`` (plus ``args``) over stdio and run ``scenario`` against it."""

    async def main() -> T:
        server = StdioServerParameters(
            command=sys.executable, args=["-m", "service.cli", "mcp", *args], env=env, cwd=str(REPO)
        )
        async with Client(server, read_timeout_seconds=120) as client:
            return await scenario(client)

    return anyio.run(main)


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def ok(client: Client, tool: str, **arguments: Any) -> tuple[Any, str]:
    """Call a tool that must succeed: its structured content and its summary (the first text block)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    summary, data = result.content
    assert isinstance(summary, TextContent) and isinstance(data, TextContent)
    assert json.loads(data.text) == result.structured_content  # for clients that show the model only text
    return result.structured_content, summary.text


async def fails(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail: its error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {text(result)}"
    return text(result)


async def until_ended(client: Client, experiment_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        experiment, summary = await ok(client, "get_experiment", experiment_id=experiment_id)
        if experiment["status"] not in ("queued", "running"):
            return dict(experiment)
        assert "poll get_experiment" in summary
        assert time.monotonic() < deadline, f"{experiment_id} still {experiment['status']}"
        await anyio.sleep(0.25)


def rest(served: Served, path: str, key: str | None = None) -> Any:
    answer = served.client.get(path, headers=served.headers(key))
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_lists_every_tool_with_a_typed_schema_and_runs_a_routing_only_experiment(
    served: Served, env: dict[str, str]
) -> None:
    async def scenario(client: Client) -> None:
        assert client.instructions is not None and f"projects: {PROJECT}" in client.instructions
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) >= 50, tool.name
            assert tool.input_schema["type"] == "object" and tool.output_schema is not None, tool.name
            assert tool.annotations is not None
        assert all(tools[name].annotations.read_only_hint for name in TOOLS if name.startswith(("get_", "list_")))

        create = tools["create_experiment"].input_schema
        assert create["required"] == ["experiment"]
        body = create["properties"]["experiment"]  # the REST body's schema, camelCase, references inlined
        assert {"projectId", "candidatePolicy", "candidateConfig", "windowStart", "windowEnd"} == set(body["required"])
        assert body["properties"]["mode"]["enum"] == ["routing_only", "with_responses"]
        assert body["properties"]["sample"]["anyOf"][0]["properties"]["method"]["enum"] == ["random", "stratified"]
        assert "$ref" not in json.dumps(tools["create_scheduled_experiment"].input_schema)
        assert "ensemble" in (tools["create_experiment"].description or "")
        histogram = tools["get_experiment_similarity_histogram"].input_schema["properties"]["threshold"]
        assert (histogram["minimum"], histogram["maximum"], histogram["default"]) == (0, 1, 0.85)
        results = tools["get_experiment_results"].input_schema["properties"]
        assert "similarity_asc" in results["sort"]["enum"] and results["limit"]["maximum"] == 500
        assert set(tools["update_scheduled_experiment"].input_schema["required"]) == {
            "scheduled_experiment_id",
            "changes",
        }

        queued, summary = await ok(client, "create_experiment", experiment=body_routing_only(name="from mcp"))
        assert queued["status"] == "queued" and queued["flow_run_id"] and queued["project_id"] == PROJECT
        assert queued["id"] in summary and "poll get_experiment" in summary
        done = await until_ended(client, queued["id"])
        assert done["status"] == "completed", done["status_reason"]
        assert done["candidate_summary"]["route_distribution"] == {"gpt-4o-mini:openai": 1.0}
        assert done == rest(served, f"/manage/v1/experiments/{done['id']}")  # the REST API's object, as is
        _, summary = await ok(client, "get_experiment", experiment_id=done["id"])
        cost = done["deltas"]["cost_delta_pct"]
        assert summary.startswith(f"experiment {done['id']} (from mcp, routing_only) completed: cost {cost:+.1f}%")
        listed, _ = await ok(client, "list_experiments", project_id=PROJECT, status="completed", limit=100)
        assert done["id"] in [e["id"] for e in listed["data"]]

    session(env, scenario)


def test_reads_a_with_responses_experiment_and_refuses_bad_input(
    served: Served, env: dict[str, str], finished_with_responses: dict[str, Any]
) -> None:
    exp_id = finished_with_responses["id"]

    async def scenario(client: Client) -> None:
        histogram, summary = await ok(client, "get_experiment_similarity_histogram", experiment_id=exp_id)
        assert histogram == rest(served, f"/manage/v1/experiments/{exp_id}/similarity-histogram")
        assert summary.startswith(histogram["headline"]) and "% agreement" in summary
        assert sum(b["count"] for b in histogram["buckets"]) == histogram["scored_count"] > 0

        page, summary = await ok(client, "get_experiment_results", experiment_id=exp_id, sort="similarity_asc", limit=5)
        assert len(page["data"]) == 5 and page["has_more"] and page["next_cursor"]
        scored = [r["similarity"] for r in page["data"] if r["similarity"] is not None]
        assert scored == sorted(scored) and summary.startswith("5 pairs")
        worst = page["data"][0]["request_id"]
        pair, _ = await ok(client, "get_experiment_pair", experiment_id=exp_id, request_id=worst)
        assert pair["baseline_text"] and pair["request_id"] == worst
        logged, said = await ok(client, "get_logged_request", request_id=worst)
        assert logged["response_text"] == pair["baseline_text"] and logged["request_json"]
        assert said.startswith(f"request {worst} of ") and "prompt and answer" in said

        ensemble = body_routing_only(candidatePolicy="ensemble", candidateConfig={"models": ["gpt-4o", "gpt-4o-mini"]})
        error = await fails(client, "create_experiment", experiment=ensemble)
        assert "invalid_request_error [candidatePolicy]" in error and "ensemble" in error
        error = await fails(client, "create_experiment", experiment=body_routing_only(projectId=OTHER))
        assert f"project '{OTHER}' does not exist" in error and "not_found" in error
        error = await fails(client, "create_experiment", experiment=body_routing_only(windowEnd="2026-04-01T00:00:00Z"))
        assert "invalid_request_error [windowEnd]: windowEnd must be after windowStart" in error
        error = await fails(client, "create_experiment", experiment=body_routing_only(sample={"size": 0}))
        assert "[sample.size]" in error
        error = await fails(client, "get_experiment_similarity_histogram", experiment_id=exp_id, threshold=1.5)
        assert "threshold" in error and "less than or equal to 1" in error
        error = await fails(client, "get_experiment", experiment_id="exp_nope")
        assert "not_found [id]: experiment 'exp_nope' does not exist" in error
        error = await fails(client, "promote_experiment", experiment_id="exp_nope")
        assert "does not exist" in error

    session(env, scenario)


def test_another_projects_key_sees_nothing_and_runs_need_prefect(
    served: Served, env: dict[str, str], finished_with_responses: dict[str, Any]
) -> None:
    env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"} | {"REHEARSAL_API_KEY": served.other_key}

    async def scenario(client: Client) -> None:
        exp_id = finished_with_responses["id"]
        error = await fails(client, "get_experiment", experiment_id=exp_id)
        assert f"experiment '{exp_id}' does not exist" in error
        error = await fails(client, "get_experiment_similarity_histogram", experiment_id=exp_id)
        assert "does not exist" in error
        error = await fails(client, "list_experiments", project_id=PROJECT)
        assert f"project '{PROJECT}' does not exist" in error
        listed, _ = await ok(client, "list_experiments", limit=100)
        assert all(e["project_id"] == OTHER for e in listed["data"])

        mine = body_routing_only(projectId=OTHER, sample={"size": 1000})
        estimate, summary = await ok(client, "estimate_experiment", experiment=mine)  # no Prefect needed
        assert estimate["estimate"]["effectiveSampleSize"] > 0 and "suggested spendCapUsd" in summary
        error = await fails(client, "create_experiment", experiment=body_routing_only(projectId=OTHER))
        assert "PREFECT_API_URL" in error and "rehearsal serve" in error
        assert "PREFECT_API_URL" in await fails(client, "list_scheduled_experiments")
        assert len(rest(served, "/manage/v1/experiments?limit=100", served.other_key)) == len(listed["data"])

    session(env, scenario)


def test_schedule_tools_drive_a_prefect_deployment(served: Served, env: dict[str, str]) -> None:
    schedule = {
        "projectId": LIVE,
        "name": "mcp yearly check",
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini"},
        "cronExpression": "0 0 1 1 *",
        "windowHours": 6,
    }

    async def scenario(client: Client) -> None:
        created, summary = await ok(client, "create_scheduled_experiment", schedule=schedule)
        sid = created["id"]
        assert created["status"] == "active" and created["deployment_id"] and created["last_experiment_id"]
        assert summary.startswith(f"scheduled experiment {sid} (mcp yearly check) active: cron '0 0 1 1 *'")

        paused, _ = await ok(client, "pause_scheduled_experiment", scheduled_experiment_id=sid)
        assert paused["status"] == "paused" and paused["next_run_at"] is None
        listed, _ = await ok(client, "list_scheduled_experiments", project_id=LIVE, status="paused")
        assert sid in [s["id"] for s in listed["data"]]
        resumed, _ = await ok(client, "resume_scheduled_experiment", scheduled_experiment_id=sid)
        assert resumed["status"] == "active"
        changes = {"cronExpression": "30 6 * * 1", "windowHours": 12}
        updated, _ = await ok(client, "update_scheduled_experiment", scheduled_experiment_id=sid, changes=changes)
        assert (updated["cron_expression"], updated["window_hours"]) == ("30 6 * * 1", 12)
        assert rest(served, f"/manage/v1/scheduled_experiments/{sid}", served.live_key) == updated
        error = await fails(
            client, "update_scheduled_experiment", scheduled_experiment_id=sid, changes={"cronExpression": "daily"}
        )
        assert error.startswith("invalid_request_error [cronExpression]") and "5 fields" in error

        fire, _ = await ok(client, "run_scheduled_experiment_now", scheduled_experiment_id=sid)
        assert fire["status"] == "queued" and fire["scheduled_experiment_id"] == sid
        for experiment_id in (created["last_experiment_id"], fire["id"]):  # the fire at creation, and this one
            ended = await until_ended(client, experiment_id)
            assert ended["status"] == "completed" and ended["scheduled_experiment_id"] == sid
        deleted, said = await ok(client, "delete_scheduled_experiment", scheduled_experiment_id=sid)
        assert deleted["id"] == sid and deleted["status"] == "deleted"
        assert f"{sid} (" in said and ") deleted:" in said and "paused" not in said
        assert "does not exist" in await fails(client, "get_scheduled_experiment", scheduled_experiment_id=sid)

    session(env | {"REHEARSAL_API_KEY": served.live_key}, scenario)


def test_server_mode_goes_through_the_rest_api(
    served: Served, live_server: Uvicorn, env: dict[str, str], finished_with_responses: dict[str, Any], tmp_path: Path
) -> None:
    empty = tmp_path / "empty-home"
    empty.mkdir()
    env = {"HOME": str(tmp_path), "REHEARSAL_HOME": str(empty), "REHEARSAL_API_KEY": served.key, **OFFLINE_ENV}
    exp_id = finished_with_responses["id"]

    async def scenario(client: Client) -> None:
        assert client.instructions is not None and "projects:" not in client.instructions
        shown, summary = await ok(client, "get_experiment", experiment_id=exp_id)
        assert shown == rest(served, f"/manage/v1/experiments/{exp_id}") and "% agreement" in summary
        histogram, _ = await ok(client, "get_experiment_similarity_histogram", experiment_id=exp_id, threshold=0.5)
        assert histogram == rest(served, f"/manage/v1/experiments/{exp_id}/similarity-histogram?threshold=0.5")
        error = await fails(client, "create_experiment", experiment=body_routing_only(projectId=OTHER))
        assert f"project '{OTHER}' does not exist" in error
        error = await fails(client, "get_judge_run", experiment_id=exp_id, judge_run_id="jr_nope")
        assert "not_found" in error

    session(env, scenario, "--server", live_server.url)
    assert list(empty.iterdir()) == []  # everything came through the REST API


@pytest.mark.parametrize("key", [None, "revoked"])
def test_a_missing_or_revoked_key_stops_it_at_start(served: Served, env: dict[str, str], key: str | None) -> None:
    env = {k: v for k, v in env.items() if k != "REHEARSAL_API_KEY"}
    if key == "revoked":
        created = served.svc.store.create_api_key([PROJECT])
        served.svc.store.revoke_api_key(created.id)
        key = created.key
    if key is not None:
        env["REHEARSAL_API_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "mcp"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error") and "REHEARSAL_API_KEY" in line and "\n" not in line
    assert proc.stdout == ""
