"""What a careless or hostile caller sends: non-finite money, damaged rows, oversized or deep bodies, bounds
on rules, crons and versions, and the split between admin and member keys. Every answer is a precise 4xx."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from service.api._limits import BODY_MAX_BYTES, CatchAll
from service.serve import free_port
from tests.service.api.conftest import PROJECT, Served, body_routing_only
from tests.service.api.test_auth_and_idempotency import error_of

API = "/manage/v1"


def raw(served: Served, method: str, path: str, text: str, key: str | None = None, **headers: str) -> Any:
    """Send ``text`` as the JSON body exactly as written (``Infinity`` and all)."""
    return served.client.request(
        method, path, content=text, headers=served.headers(key, **{"Content-Type": "application/json", **headers})
    )


@pytest.fixture
def project(served: Served) -> Iterator[str]:
    """A fresh project of its own (its caps change here), with an admin key of the served env's scope."""
    name = f"proj_hard_{time.monotonic_ns()}"
    created = served.client.post(f"{API}/projects", json={"id": name}, headers=served.headers(served.admin_key))
    assert created.status_code == 201, created.text
    yield name


# --- 1: non-finite and unbounded numbers -------------------------------------------------------
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_a_non_finite_cap_is_a_400_naming_the_field_and_listings_stay_up(
    served: Served, project: str, number: str
) -> None:
    answer = raw(served, "PATCH", f"{API}/projects/{project}", f'{{"judgeSpendCapUsd": {number}}}', served.admin_key)
    error = error_of(answer, 400)
    assert error["param"] == "judgeSpendCapUsd", error
    for key in (served.admin_key, served.key, served.other_key):
        assert served.client.get(f"{API}/projects", headers=served.headers(key)).status_code == 200
    shown = served.client.get(f"{API}/projects/{project}", headers=served.headers(served.admin_key)).json()["data"]
    assert shown["judge_spend_cap_usd"] == 20.0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"spendCapUsd": "@Infinity@"}, "spendCapUsd"),
        (
            {"candidatePolicy": "ab_test", "candidateConfig": {"variants": [{"weight": "@1e999@", "config": {}}]}},
            "candidateConfig.variants.0.weight",
        ),
        ({"filters": {"tags": ["@NaN@"]}}, "filters.tags.0"),
    ],
)
def test_non_finite_numbers_anywhere_in_a_body_are_named(served: Served, extra: dict[str, Any], param: str) -> None:
    text = json.dumps(body_routing_only(**extra)).replace('"@', "").replace('@"', "")
    assert error_of(raw(served, "POST", f"{API}/experiments", text), 400)["param"] == param


def test_caps_have_a_configured_ceiling(served: Served, project: str) -> None:
    over = served.svc.settings.max_spend_cap_usd * 2
    answer = served.client.patch(
        f"{API}/projects/{project}", json={"experimentSpendCapUsd": over}, headers=served.headers(served.admin_key)
    )
    error = error_of(answer, 400)
    assert error["param"] == "experimentSpendCapUsd" and "REHEARSAL_MAX_SPEND_CAP_USD" in error["message"]
    huge = served.client.patch(
        f"{API}/projects/{project}", json={"judgeSpendCapUsd": 1e12}, headers=served.headers(served.admin_key)
    )
    assert error_of(huge, 400)["param"] == "judgeSpendCapUsd"


def test_a_damaged_stored_project_never_takes_a_listing_down_and_an_update_repairs_it(
    served: Served, project: str
) -> None:
    # What the old bug left behind: a cap stored as null (an earlier version serialised Infinity so).
    with sqlite3.connect(served.svc.settings.db_path) as db:
        (body,) = db.execute("SELECT body FROM projects WHERE id = ?", (project,)).fetchone()
        damaged = json.dumps(json.loads(body) | {"judge_spend_cap_usd": None})
        db.execute("UPDATE projects SET body = ? WHERE id = ?", (damaged, project))
    listed = served.client.get(f"{API}/projects", headers=served.headers(served.admin_key))
    assert listed.status_code == 200 and project not in {p["id"] for p in listed.json()["data"]}
    assert served.client.get(f"{API}/projects", headers=served.headers()).status_code == 200
    one = error_of(served.client.get(f"{API}/projects/{project}", headers=served.headers(served.admin_key)), 409)
    assert one["type"] == "damaged_record" and one["param"] == "judge_spend_cap_usd", one
    repaired = served.client.patch(
        f"{API}/projects/{project}", json={"judgeSpendCapUsd": 15}, headers=served.headers(served.admin_key)
    )
    assert repaired.status_code == 200, repaired.text
    listed = served.client.get(f"{API}/projects", headers=served.headers(served.admin_key)).json()["data"]
    assert {p["id"]: p["judge_spend_cap_usd"] for p in listed}[project] == 15


# --- 6: bodies too large or too deep, and numbers too big for the store --------------------------
@pytest.mark.parametrize("idempotent", [False, True])
def test_a_deeply_nested_body_is_a_400_with_or_without_an_idempotency_key(served: Served, idempotent: bool) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    extra = {"Idempotency-Key": f"deep-{time.monotonic_ns()}"} if idempotent else {}
    error = error_of(raw(served, "POST", f"{API}/experiments", deep, **extra), 400)
    assert "nests deeper" in error["message"]
    nested: list[Any] = []
    for _ in range(10):
        nested = [nested]
    shallow = json.dumps(body_routing_only(candidateConfig={"model": "gpt-4o-mini", "x": nested}))
    assert error_of(raw(served, "POST", f"{API}/experiments", shallow, **extra), 400)["param"] == "candidateConfig.x"


def test_an_oversized_body_is_a_413(served: Served) -> None:
    text = json.dumps(body_routing_only(hypothesis="x" * (BODY_MAX_BYTES + 10)))
    error = error_of(raw(served, "POST", f"{API}/experiments", text), 413)
    assert error["type"] == "request_too_large"


@pytest.mark.parametrize(
    "ref", ["@production:99999999999999999999", "@production:1180591620717411303424", "@production:²", "@" + "s" * 500]
)
def test_an_oversized_config_version_is_a_400(served: Served, ref: str) -> None:
    body = body_routing_only(
        candidatePolicy="custom_rules", candidateConfig={"rules": [{"if": "input_tokens > 1", "then": ref}]}
    )
    error = error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers()), 400)
    assert error["param"] == "candidateConfig", error
    version = served.client.get(
        f"{API}/projects/{PROJECT}/routing-configs/production",
        params={"version": "1180591620717411303424"},
        headers=served.headers(),
    )
    assert error_of(version, 400)["param"] == "version"


# --- 5: rules, regexes and crons that would burn a core ------------------------------------------
RULES = {
    "20,000 terms": " and ".join(["input_tokens > 1"] * 20_000),
    "150 terms": " and ".join(["input_tokens > 1"] * 101),
    "nested parentheses": "(" * 100 + "input_tokens > 1" + ")" * 100,
    "not x 3000": "not " * 3000 + "input_tokens > 1",
    "minus x 3000": "-" * 3000 + "1 > input_tokens",
    "400 digits": "input_tokens > " + "9" * 400,
    "look-ahead": 'model matches "(?=gpt)"',
    "back-reference": 'model matches "(a)\\\\1"',
    "huge regex": 'model matches "a{1000}{1000}"',
}


@pytest.mark.parametrize("rule", list(RULES.values()), ids=list(RULES))
def test_rules_are_bounded_at_admission(served: Served, rule: str) -> None:
    body = body_routing_only(
        candidatePolicy="custom_rules",
        candidateConfig={"rules": [{"if": rule, "then": {"model": "gpt-4o-mini"}}, {"else": {"model": "gpt-4o"}}]},
    )
    started = time.monotonic()
    error = error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers()), 400)
    assert error["param"] == "candidateConfig.rules.0.if", error
    assert time.monotonic() - started < 5


def test_a_deep_cascade_is_refused_at_admission(served: Served) -> None:
    steps = [{"model": "gpt-4o-mini", "escalate_if": "input_tokens > 1"}] * 400 + [{"model": "gpt-4o"}]
    body = body_routing_only(candidatePolicy="cascade", candidateConfig={"steps": steps})
    error = error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers()), 400)
    assert error["param"] == "candidateConfig.steps", error


def test_saved_configs_that_refer_to_each_other_are_refused(served: Served) -> None:
    slug = f"cycle-{time.monotonic_ns()}"
    path = f"{API}/projects/{PROJECT}/routing-configs"
    first = {"slug": slug, "policy": "single", "config": {"model": "gpt-4o-mini"}}
    assert served.client.post(path, json=first, headers=served.headers()).status_code == 201
    looping = {"slug": slug, "policy": "custom_rules", "config": {"rules": [{"else": f"@{slug}"}]}}
    assert served.client.post(path, json=looping, headers=served.headers()).status_code == 201  # v1 then: no cycle
    body = body_routing_only(candidatePolicy="custom_rules", candidateConfig={"rules": [{"else": f"@{slug}"}]})
    error = error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers()), 400)
    assert "nest more than" in error["message"], error


def test_a_huge_cron_is_a_400_at_once(served: Served) -> None:
    body = {
        "projectId": PROJECT,
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini"},
        "cronExpression": "0 " * 50_000 + "*",
    }
    started = time.monotonic()
    answer = served.client.post(f"{API}/scheduled_experiments", json=body, headers=served.headers())
    assert error_of(answer, 400)["param"] == "cronExpression"
    assert time.monotonic() - started < 2


# --- 8: admin and member keys -----------------------------------------------------------------------
def test_a_member_key_runs_experiments_but_manages_nothing(served: Served) -> None:
    member = served.headers(served.member_key)
    refused = {
        "PATCH project": served.client.patch(f"{API}/projects/{PROJECT}", json={"judgeSpendCapUsd": 5}, headers=member),
        "mint key": served.client.post(f"{API}/keys", json={"projectIds": [PROJECT]}, headers=member),
        "list keys": served.client.get(f"{API}/keys", headers=member),
        "credential": served.client.post(
            f"{API}/provider-credentials",
            json={"projectId": PROJECT, "baseUrl": "https://api.openai.com/v1"},
            headers=member,
        ),
    }
    for what, answer in refused.items():
        assert error_of(answer, 403)["type"] == "permission_error", what
    created = served.client.post(f"{API}/experiments", json=body_routing_only(), headers=member)
    assert created.status_code == 201, created.text


def test_a_minted_key_cannot_revoke_its_parent_and_revoking_a_parent_revokes_its_children(served: Served) -> None:
    parent = served.client.post(
        f"{API}/keys", json={"projectIds": [PROJECT], "role": "admin", "name": "parent"}, headers=served.headers()
    ).json()["data"]
    child = served.client.post(
        f"{API}/keys", json={"projectIds": [PROJECT], "name": "child"}, headers=served.headers(parent["key"])
    ).json()["data"]
    assert child["parent_id"] == parent["id"] and child["role"] == "member"
    escalate = served.client.post(
        f"{API}/keys", json={"projectIds": [PROJECT], "role": "admin"}, headers=served.headers(child["key"])
    )
    assert error_of(escalate, 403)["type"] == "permission_error"
    mutiny = served.client.post(f"{API}/keys/{parent['id']}/revoke", headers=served.headers(child["key"]))
    assert error_of(mutiny, 403)["param"] == "id"
    revoked = served.client.post(f"{API}/keys/{parent['id']}/revoke", headers=served.headers(parent["key"]))
    assert revoked.status_code == 200, revoked.text
    for key in (parent["key"], child["key"]):
        assert served.client.get(f"{API}/projects", headers=served.headers(key)).status_code == 401


# --- 6: a 500 keeps the connection ---------------------------------------------------------------
async def _broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/boom":
        raise RuntimeError("boom")
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"fine"})


def test_an_unexpected_error_is_a_500_envelope_and_the_connection_survives() -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(CatchAll(_broken), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        peers = []

        def remember(response: httpx.Response) -> None:
            stream = response.extensions["network_stream"]
            peers.append(stream.get_extra_info("client_addr"))

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", event_hooks={"response": [remember]}) as client:
            failed = client.get("/boom")
            assert failed.status_code == 500 and failed.json()["error"]["type"] == "internal_error"
            assert client.get("/ok").text == "fine"
        assert len(peers) == 2 and peers[0] == peers[1], "the second request needed a new connection"
    finally:
        server.should_exit = True
        thread.join(10)


def test_cancelling_a_queued_run_cancels_its_flow_run_so_no_process_starts(served: Served) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    created = served.client.post(f"{API}/experiments", json=body_routing_only(), headers=served.headers()).json()
    cancelled = served.client.post(f"{API}/experiments/{created['data']['id']}/cancel", headers=served.headers())
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled", cancelled.text
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(created["data"]["flow_run_id"])).state
    assert state is not None and state.type.value in ("CANCELLED", "CANCELLING"), state
