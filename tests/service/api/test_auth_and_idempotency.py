"""Auth over every route, secrets, management keys, Idempotency-Key, and the guide's limits (DESIGN §9).

The route matrix is built from the app itself (its routes and its OpenAPI paths, which
must agree), so a route added later is tested here without editing this file, or makes
a test fail until it is given an expectation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from starlette.routing import BaseRoute, Mount, Route

from engine.schedules import Signal, signal_key
from engine.webhooks import Delivery
from service.api import create_app
from tests.service.api.conftest import OTHER, PROJECT, Served, body_routing_only, body_with_responses

API = "/manage/v1"
#: Served by FastAPI itself (no key needed); ``/docs/oauth2-redirect`` is the Swagger UI's helper page.
UNAUTHENTICATED = {"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
ERROR_KEYS = {"message", "type", "code", "param"}
SLUG = "auth-matrix"
#: Allowed by the served env's webhook allow-list; nothing listens there (deliveries to it fail).
HOOK_URL = "http://127.0.0.1:9/auth-matrix"


# --- the app's operations --------------------------------------------------------------
def _flatten(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every endpoint, through included routers and mounts."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's lazily included router
        if included is not None:
            yield from _flatten(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Mount):
            yield from _flatten(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path
        else:
            raise AssertionError(f"unknown route type {type(route).__name__}: teach _flatten about it")


SCHEMA_APP = create_app(cast(Any, None), cast(Any, None))  # routes and schema need no services
OPENAPI = SCHEMA_APP.openapi()
#: The REST API's operations; the dashboard's pages (sign-in by cookie, not in the schema) have their own tests.
OPERATIONS = sorted((m, p) for m, p in _flatten(SCHEMA_APP.routes) if p.startswith(API))
OPERATION_IDS = [f"{m} {p}" for m, p in OPERATIONS]


def _path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def _body_schema(method: str, path: str) -> str | None:
    """The name of the operation's JSON body model, if it takes one."""
    body = OPENAPI["paths"][path][method.lower()].get("requestBody")
    if body is None:
        return None
    ref: str = body["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


# --- helpers -----------------------------------------------------------------------------
def error_of(response: Any, status: int) -> dict[str, Any]:
    """The ``error`` object of an answer that must be ``status`` with exactly the error envelope."""
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    return error


def experiment_ids(served: Served) -> set[str]:
    """Every stored experiment (all projects, every page)."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = served.client.get(f"{API}/experiments", params=params, headers=served.headers(served.admin_key))
        assert page.status_code == 200, page.text
        ids |= {e["id"] for e in page.json()["data"]}
        cursor = page.json()["next_cursor"]
        if not page.json()["has_more"]:
            return ids


def stop(served: Served, experiment_ids: set[str]) -> None:
    """Cancel experiments a test only needed to exist (the runner has other work)."""
    for experiment_id in experiment_ids:
        answer = served.client.post(
            f"{API}/experiments/{experiment_id}/cancel", headers=served.headers(served.admin_key)
        )
        assert answer.status_code in (200, 409), answer.text


def database_bytes(served: Served) -> bytes:
    """The SQLite database with its journal files, as stored."""
    db = served.svc.settings.db_path
    return b"".join(f.read_bytes() for f in db.parent.glob(f"{db.name}*") if f.is_file())


def call(served: Served, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    return served.client.request(method, path, json=body, headers=headers)


# --- proj_abc's objects ------------------------------------------------------------------
@dataclass
class Objects:
    """proj_abc objects the matrix points at (by path-parameter name) and the secrets that must never leak."""

    ids: dict[str, str]
    credential_secret: str
    credential_base_url: str
    key_secret: str
    webhook_secret: str

    def path(self, template: str, **override: str) -> str:
        values = {**self.ids, **override}
        missing = [name for name in _path_params(template) if name not in values]
        assert not missing, f"{template}: new path parameter {missing}: give it a proj_abc object in the abc fixture"
        return template.format(**{name: values[name] for name in _path_params(template)})

    def fake_path(self, template: str) -> str:
        """The same path with every object id replaced by one that does not exist."""
        fakes = {name: f"{value.split('_')[0]}_{'0' * 24}" for name, value in self.ids.items()}
        fakes["project_id"] = "proj_does_not_exist"
        fakes["slug"] = "no-such-slug"
        return self.path(template, **fakes)


BODIES: dict[str, Any] = {
    "ExperimentCreate": body_routing_only(),
    "JudgeCreate": {"stratification": {"high": 1, "mild": 1, "major": 1}, "spendCapUsd": 0.5},
    "ProjectCreate": {"id": f"proj_never_{uuid.uuid4().hex[:8]}"},
    "ProjectUpdate": {"experimentSpendCapUsd": 1.0, "loggingMode": "metadata_only"},
    "CredentialCreate": {"projectId": PROJECT, "baseUrl": "http://127.0.0.1:9/matrix/v1", "apiKey": "sk-matrix"},
    "RoutingConfigCreate": {"slug": SLUG, "policy": "single", "config": {"model": "gpt-4o"}},
    "KeyCreate": {"projectIds": [PROJECT], "name": "from the matrix"},
    "ScheduledExperimentCreate": {
        **{k: v for k, v in body_routing_only().items() if not k.startswith("window")},
        "cronExpression": "0 9 * * *",
        "windowHours": 24,
    },
    "ScheduledExperimentUpdate": {"windowHours": 48, "cronExpression": "* * * * *"},
    "SnoozeBody": {"until": "2099-01-01T00:00:00Z"},
    "WebhookCreate": {"projectId": PROJECT, "url": HOOK_URL, "events": ["experiment.regression_detected"]},
}


def body_for(method: str, path: str) -> Any:
    name = _body_schema(method, path)
    if name is None:
        return None
    assert name in BODIES, f"{method} {path} takes a {name} body: add a valid one to BODIES"
    return BODIES[name]


@pytest.fixture(scope="module")
def abc(
    served: Served, finished_with_responses: dict[str, Any], finished_judge_run: dict[str, Any]
) -> Iterator[Objects]:
    """A credential, a routing config, a judge run, a pair, a management key, a (paused) schedule with its
    signal, and a webhook with a delivery, all of proj_abc."""
    experiment_id = finished_with_responses["id"]
    secret = f"sk-canary-{uuid.uuid4().hex}"
    base_url = f"http://127.0.0.1:9/canary-{uuid.uuid4().hex[:8]}/v1"  # an allowed (loopback) host: see conftest
    credential = served.client.post(
        f"{API}/provider-credentials",
        json={"projectId": PROJECT, "baseUrl": base_url, "apiKey": secret},
        headers=served.headers(),
    )
    assert credential.status_code == 201, credential.text
    config = served.client.post(
        f"{API}/projects/{PROJECT}/routing-configs",
        json={"slug": SLUG, "policy": "single", "config": {"model": "gpt-4o-mini"}},
        headers=served.headers(),
    )
    assert config.status_code == 201, config.text
    pairs = served.client.get(f"{API}/experiments/{experiment_id}/results?limit=1", headers=served.headers())
    assert pairs.status_code == 200 and pairs.json()["data"], pairs.text
    key = served.client.post(
        f"{API}/keys", json={"projectIds": [PROJECT], "name": "matrix target"}, headers=served.headers(served.admin_key)
    )
    assert key.status_code == 201, key.text
    schedule = served.client.post(
        f"{API}/scheduled_experiments", json=BODIES["ScheduledExperimentCreate"], headers=served.headers()
    )
    assert schedule.status_code == 201, schedule.text
    schedule_id = schedule.json()["data"]["id"]
    paused = served.client.post(f"{API}/scheduled_experiments/{schedule_id}/pause", headers=served.headers())
    assert paused.status_code == 200, paused.text
    hook = served.client.post(f"{API}/webhooks", json=BODIES["WebhookCreate"], headers=served.headers())
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["data"]["id"]
    # A signal and a delivery need a failing scheduled run and a sent event: stored directly instead.
    now = dt.datetime.now(dt.UTC)
    signal = Signal(
        key=signal_key(schedule_id),
        project_id=PROJECT,
        scheduled_experiment_id=schedule_id,
        message="auth matrix",
        experiment_id=experiment_id,
        first_seen_at=now,
        last_seen_at=now,
    )
    served.svc.store.put_doc("signals", signal.key, PROJECT, signal.model_dump_json())
    delivery = Delivery(
        id=f"dlv_{uuid.uuid4().hex[:24]}",
        webhook_id=hook_id,
        project_id=PROJECT,
        event_id=f"evt_{uuid.uuid4().hex[:24]}",
        type="experiment.regression_detected",
        status="failed",
        attempts=1,
        payload={"note": "auth matrix"},
        created_at=now,
    )
    served.svc.store.put_doc(
        "deliveries",
        delivery.id,
        PROJECT,
        delivery.model_dump_json(),
        webhook_id=hook_id,
        status="failed",
        next_attempt_at=None,
        created_at=now.isoformat(),
    )
    yield Objects(
        ids={
            "experiment_id": experiment_id,
            "judge_run_id": finished_judge_run["id"],
            "request_id": pairs.json()["data"][0]["request_id"],
            "credential_id": credential.json()["data"]["id"],
            "project_id": PROJECT,
            "slug": SLUG,
            "key_id": key.json()["data"]["id"],
            "schedule_id": schedule_id,
            "signal_key": signal.key,
            "webhook_id": hook_id,
            "delivery_id": delivery.id,
        },
        credential_secret=secret,
        credential_base_url=base_url,
        key_secret=key.json()["data"]["key"],
        webhook_secret=hook.json()["data"]["secret"],
    )
    for path in (f"{API}/scheduled_experiments/{schedule_id}", f"{API}/webhooks/{hook_id}"):
        assert served.client.delete(path, headers=served.headers()).status_code == 200


def snapshot(served: Served, abc: Objects) -> dict[str, Any]:
    """proj_abc's objects as the admin sees them (to show a refused call changed nothing)."""
    admin = served.headers(served.admin_key)
    ids = abc.ids
    paths = {
        "experiment": f"{API}/experiments/{ids['experiment_id']}",
        "judge_runs": f"{API}/experiments/{ids['experiment_id']}/judge?limit=100",
        "credentials": f"{API}/provider-credentials?projectId={PROJECT}",
        "routing_configs": f"{API}/projects/{PROJECT}/routing-configs",
        "project": f"{API}/projects/{PROJECT}",
        "keys": f"{API}/keys",
        "schedules": f"{API}/scheduled_experiments?projectId={PROJECT}",
        "signals": f"{API}/signals?projectId={PROJECT}&state=all",
        "webhooks": f"{API}/webhooks?projectId={PROJECT}",
        "deliveries": f"{API}/webhooks/{ids['webhook_id']}/deliveries",
    }
    state = {name: served.client.get(path, headers=admin).json() for name, path in paths.items()}
    state["experiments"] = experiment_ids(served)
    return state


# --- the route list itself ---------------------------------------------------------------
def test_every_route_is_in_the_schema_and_the_matrix(served: Served) -> None:
    served_ops = sorted((m, p) for m, p in _flatten(cast(Any, served.client.app).routes) if p.startswith(API))
    assert served_ops == OPERATIONS
    documented = sorted(
        (method.upper(), path)
        for path, ops in OPENAPI["paths"].items()
        for method in ops
        if path not in UNAUTHENTICATED and path.startswith(API)
    )
    assert documented == OPERATIONS  # no route hidden from the schema, none documented but missing
    assert len(OPERATIONS) >= 29 and all(p.startswith(API) for _, p in OPERATIONS)


# --- 401 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def revoked_key(served: Served) -> str:
    created = served.client.post(
        f"{API}/keys", json={"projectIds": [PROJECT], "name": "to revoke"}, headers=served.headers()
    )
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    assert served.client.get(f"{API}/projects/{PROJECT}", headers=served.headers(key["key"])).status_code == 200
    revoked = served.client.post(f"{API}/keys/{key['id']}/revoke", headers=served.headers())
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked_at"], revoked.text
    return str(key["key"])


def _bad_authorizations(served: Served, revoked: str) -> dict[str, dict[str, str]]:
    prefix, key_id, _secret = served.key.split("_", 2)
    return {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer "},
        "malformed": {"Authorization": "Bearer rhk_x_y"},
        "not rhk": {"Authorization": "Bearer sk-not-a-management-key"},
        "unknown id": {"Authorization": f"Bearer rhk_{'0' * 24}_{'A' * 43}"},
        "wrong secret": {"Authorization": f"Bearer {prefix}_{key_id}_{'B' * 43}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "basic scheme": {"Authorization": f"Basic {served.key}"},
        "raw key": {"Authorization": served.key},
    }


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=OPERATION_IDS)
def test_every_route_refuses_a_missing_or_bad_key(
    served: Served, abc: Objects, revoked_key: str, method: str, path: str
) -> None:
    url, body = abc.path(path), body_for(method, path)
    for case, headers in _bad_authorizations(served, revoked_key).items():
        answer = call(served, method, url, headers, body)
        error = error_of(answer, 401)
        assert error["type"] == "authentication_error", (case, error)
        assert answer.headers.get("www-authenticate") == "Bearer", case


def test_a_revoked_key_stays_revoked(served: Served, revoked_key: str) -> None:
    listed = served.client.get(f"{API}/keys", headers=served.headers(served.admin_key)).json()["data"]
    revoked = [k for k in listed if revoked_key.startswith(k["prefix"]) and k["revoked_at"]]
    assert len(revoked) == 1
    again = served.client.post(f"{API}/keys/{revoked[0]['id']}/revoke", headers=served.headers())
    assert again.status_code in (200, 409), again.text  # idempotent or a conflict, never revived
    assert served.client.get(f"{API}/projects", headers=served.headers(revoked_key)).status_code == 401


# --- another project's key -----------------------------------------------------------------
#: What proj_other's key gets on routes that name no proj_abc object in their path.
COLLECTION_ROUTES: dict[tuple[str, str], int] = {
    ("GET", f"{API}/experiments"): 200,
    ("POST", f"{API}/experiments"): 404,  # the body names proj_abc
    ("POST", f"{API}/experiments/preflight"): 404,
    ("GET", f"{API}/projects"): 200,
    ("POST", f"{API}/projects"): 403,  # only all-projects keys create projects
    ("GET", f"{API}/provider-credentials"): 200,
    ("POST", f"{API}/provider-credentials"): 404,
    ("GET", f"{API}/keys"): 200,
    ("POST", f"{API}/keys"): 404,
    ("GET", f"{API}/scheduled_experiments"): 200,
    ("POST", f"{API}/scheduled_experiments"): 404,
    ("GET", f"{API}/signals"): 200,
    ("GET", f"{API}/webhooks"): 200,
    ("POST", f"{API}/webhooks"): 404,
}


def _assert_no_leak(answer: Any, abc: Objects, url: str) -> None:
    """Nothing of proj_abc's objects in the answer beyond what the caller put in the URL."""
    text = answer.text
    for name, value in abc.ids.items():
        if value not in url and name != "project_id":
            assert value not in text, f"{name} {value} leaked: {text}"
    markers = (abc.credential_secret, abc.credential_base_url, abc.key_secret, abc.webhook_secret, "auth matrix")
    for marker in (*markers, "gpt-4o-mini quality check"):
        assert marker not in text, f"{marker!r} leaked: {text}"


def _normalized(error: dict[str, Any], url: str, abc: Objects) -> dict[str, Any]:
    message = re.sub(r"'[^']*'", "'<id>'", error["message"])
    for value in [*abc.ids.values(), *re.findall(r"[\w.-]+", url)]:
        message = message.replace(value, "<id>")
    message = re.sub(r"'[\w.-]+'", "'<id>'", message)
    return {"type": error["type"], "param": error["param"], "message": message}


FOREIGN_CASES = OPERATIONS


@pytest.mark.parametrize(("method", "path"), FOREIGN_CASES, ids=OPERATION_IDS)
def test_another_projects_key_sees_nothing(served: Served, abc: Objects, method: str, path: str) -> None:
    other = served.headers(served.other_key)
    body = body_for(method, path)
    before = snapshot(served, abc)
    if not _path_params(path):
        expected = COLLECTION_ROUTES.get((method, path))
        assert expected is not None, f"new route {method} {path}: say what proj_other's key gets in COLLECTION_ROUTES"
        answer = call(served, method, path, other, body)
        if expected == 200:
            assert answer.status_code == 200, answer.text
            assert all(item.get("project_id", OTHER) == OTHER for item in answer.json()["data"]), answer.text
        else:
            error = error_of(answer, expected)
            assert error["type"] == ("permission_error" if expected == 403 else "not_found"), error
        _assert_no_leak(answer, abc, path)
    else:
        url = abc.path(path)
        own = call(served, "GET", url, served.headers()) if method == "GET" else None
        if own is not None:  # the ids are real: proj_abc's own key reads them
            assert own.status_code == 200, own.text
        answer = call(served, method, url, other, body)
        error = error_of(answer, 404)
        assert error["type"] == "not_found", error
        _assert_no_leak(answer, abc, url)
        # A foreign object answers exactly like one that does not exist (no existence oracle).
        fake_url = abc.fake_path(path)
        missing = error_of(call(served, method, fake_url, other, body), 404)
        assert _normalized(error, url, abc) == _normalized(missing, fake_url, abc)
    assert snapshot(served, abc) == before


def test_a_cursor_does_not_reveal_another_projects_objects(served: Served, abc: Objects) -> None:
    other = served.headers(served.other_key)
    foreign = served.client.get(f"{API}/experiments", params={"cursor": abc.ids["experiment_id"]}, headers=other)
    missing = served.client.get(f"{API}/experiments", params={"cursor": f"exp_{'0' * 24}"}, headers=other)
    assert error_of(missing, 400)["param"] == "cursor"
    assert foreign.status_code == missing.status_code, foreign.text


@pytest.mark.parametrize(
    "path",
    [f"{API}/{p}" for p in ("experiments", "provider-credentials", "scheduled_experiments", "signals", "webhooks")],
)
def test_another_projects_key_cannot_filter_on_proj_abc(served: Served, path: str) -> None:
    answer = served.client.get(path, params={"projectId": PROJECT}, headers=served.headers(served.other_key))
    assert error_of(answer, 404)["type"] == "not_found"


# --- provider API keys ---------------------------------------------------------------------
def stored_secret(served: Served, table: str, row_id: str) -> str:
    """The raw ``secret`` column of a row, read from the database file as anyone with the file would."""
    conn = sqlite3.connect(served.home / "rehearsal.db")
    try:
        (value,) = conn.execute(f"SELECT secret FROM {table} WHERE id = ?", (row_id,)).fetchone()
    finally:
        conn.close()
    return str(value)


def on_disk(served: Served) -> bytes:
    """Every byte of the SQLite files (the database, its WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in served.home.iterdir() if p.name.startswith("rehearsal.db"))


def test_the_state_directory_and_database_are_private(served: Served) -> None:
    assert stat.S_IMODE(served.home.stat().st_mode) == 0o700
    for path in served.home.iterdir():
        if path.name.startswith("rehearsal.db") or path.name == "secret.key":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_a_provider_api_key_is_never_returned_nor_logged(
    served: Served, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"sk-never-shown-{uuid.uuid4().hex}"
    answers = []
    created = served.client.post(
        f"{API}/provider-credentials",
        json={"projectId": PROJECT, "baseUrl": served.sim.base_url, "apiKey": secret, "rateLimitRps": 50},
        headers=served.headers(),
    )
    assert created.status_code == 201, created.text
    credential = created.json()["data"]
    assert credential["has_api_key"] is True and "api_key" not in credential and "apiKey" not in credential
    assert stored_secret(served, "provider_credentials", credential["id"]).startswith("fernet:v1:")
    assert secret.encode() not in on_disk(served)  # encrypted at rest
    answers.append(created)
    for path in (
        f"{API}/provider-credentials/{credential['id']}",
        f"{API}/provider-credentials",
        f"{API}/provider-credentials?projectId={PROJECT}",
    ):
        for key in (served.key, served.admin_key):
            answers.append(served.client.get(path, headers=served.headers(key)))
            assert answers[-1].status_code == 200, answers[-1].text
    # A run that calls the provider with it: the key goes out as a header, never into answers or logs.
    run = served.client.post(
        f"{API}/experiments",
        json=with_responses(candidateConfig={"model": "gpt-4o-mini", "provider_credential_id": credential["id"]}),
        headers=served.headers(),
    )
    assert run.status_code == 201, run.text
    done = served.wait(f"{API}/experiments/{run.json()['data']['id']}")
    assert done["status"] == "completed", done["status_reason"]
    answers.append(served.client.get(f"{API}/experiments/{done['id']}", headers=served.headers()))
    answers.append(served.client.get(f"{API}/experiments/{done['id']}/results?limit=500", headers=served.headers()))
    for answer in answers:
        assert secret not in answer.text
    captured = capfd.readouterr()
    assert secret not in captured.out and secret not in captured.err
    assert secret not in caplog.text
    assert all(secret not in str(record.args) for record in caplog.records)


def test_a_webhook_secret_is_shown_once_and_never_logged(
    served: Served, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    created = served.client.post(f"{API}/webhooks", json=BODIES["WebhookCreate"], headers=served.headers())
    assert created.status_code == 201, created.text
    hook = created.json()["data"]
    secret = hook["secret"]
    assert secret
    assert stored_secret(served, "webhooks", hook["id"]).startswith("fernet:v1:")
    assert secret.encode() not in on_disk(served)  # encrypted at rest
    answers = [
        served.client.get(f"{API}/webhooks", headers=served.headers()),
        served.client.get(f"{API}/webhooks?projectId={PROJECT}", headers=served.headers(served.admin_key)),
        served.client.get(f"{API}/webhooks/{hook['id']}/deliveries", headers=served.headers()),
        served.client.delete(f"{API}/webhooks/{hook['id']}", headers=served.headers()),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert secret not in answer.text
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err + caplog.text


# --- management keys and projects -----------------------------------------------------------
def test_only_an_all_projects_key_creates_projects(served: Served) -> None:
    project_id = f"proj_auth_{uuid.uuid4().hex[:8]}"
    for key in (served.key, served.other_key):
        refused = served.client.post(f"{API}/projects", json={"id": project_id}, headers=served.headers(key))
        assert error_of(refused, 403)["type"] == "permission_error"
    assert (
        served.client.get(f"{API}/projects/{project_id}", headers=served.headers(served.admin_key)).status_code == 404
    )
    created = served.client.post(f"{API}/projects", json={"id": project_id}, headers=served.headers(served.admin_key))
    assert created.status_code == 201, created.text
    assert created.json()["data"]["id"] == project_id
    assert (
        served.client.get(f"{API}/projects/{project_id}", headers=served.headers(served.admin_key)).status_code == 200
    )
    hidden = served.client.get(f"{API}/projects/{project_id}", headers=served.headers())
    assert error_of(hidden, 404)["type"] == "not_found"
    listed = served.client.get(f"{API}/projects", headers=served.headers()).json()["data"]
    assert [p["id"] for p in listed] == [PROJECT]


def test_a_key_secret_is_shown_once_and_never_listed(served: Served) -> None:
    body = {"projectIds": [PROJECT], "name": "ci", "role": "admin"}  # an admin key may list keys
    created = served.client.post(f"{API}/keys", json=body, headers=served.headers())
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    secret = key["key"]
    assert secret.startswith("rhk_") and key["project_ids"] == [PROJECT] and key["all_projects"] is False
    assert secret.startswith(key["prefix"]) and len(key["prefix"]) < len(secret)
    assert served.client.get(f"{API}/projects/{PROJECT}", headers=served.headers(secret)).status_code == 200
    for caller in (served.key, served.admin_key, secret):
        listed = served.client.get(f"{API}/keys", headers=served.headers(caller))
        assert listed.status_code == 200, listed.text
        assert secret not in listed.text
        mine = [k for k in listed.json()["data"] if k["id"] == key["id"]]
        assert len(mine) == 1 and "key" not in mine[0]
    # Stored hashed: the secret is nowhere in the database files.
    assert secret.encode() not in database_bytes(served)


def test_a_project_key_cannot_mint_keys_for_other_projects(served: Served) -> None:
    before = served.client.get(f"{API}/keys", headers=served.headers(served.admin_key)).json()["data"]
    for wanted in ([OTHER], [PROJECT, OTHER], ["proj_does_not_exist"]):
        refused = served.client.post(f"{API}/keys", json={"projectIds": wanted}, headers=served.headers())
        assert error_of(refused, 404)["type"] == "not_found", wanted
        assert OTHER not in refused.text or OTHER in wanted
    after = served.client.get(f"{API}/keys", headers=served.headers(served.admin_key)).json()["data"]
    assert after == before
    # Nor see or revoke the keys of another project.
    other_keys = [k for k in after if k["project_ids"] == [OTHER]]
    assert other_keys
    listed = served.client.get(f"{API}/keys", headers=served.headers()).json()["data"]
    assert not any(OTHER in k["project_ids"] or k["all_projects"] for k in listed)
    refused = served.client.post(f"{API}/keys/{other_keys[0]['id']}/revoke", headers=served.headers())
    assert error_of(refused, 404)["type"] == "not_found"
    assert served.client.get(f"{API}/projects/{OTHER}", headers=served.headers(served.other_key)).status_code == 200


# --- Idempotency-Key ---------------------------------------------------------------------------
def _idem(served: Served, key: str | None = None, idem: str | None = None) -> dict[str, str]:
    return served.headers(key, **{"Idempotency-Key": idem or f"idem-{uuid.uuid4().hex}"})


def test_the_same_key_and_body_answer_once(served: Served) -> None:
    before = experiment_ids(served)
    headers = _idem(served)
    body = body_routing_only(name="idempotent create")
    first = served.client.post(f"{API}/experiments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    second = served.client.post(f"{API}/experiments", json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json() == first.json()
    created = experiment_ids(served) - before
    assert created == {first.json()["data"]["id"]}
    stop(served, created)


def test_the_same_key_with_another_request_is_a_conflict(served: Served) -> None:
    before = experiment_ids(served)
    headers = _idem(served)
    first = served.client.post(f"{API}/experiments", json=body_routing_only(name="first"), headers=headers)
    assert first.status_code == 201, first.text
    for method, path, body in (
        ("POST", f"{API}/experiments", body_routing_only(name="second")),
        ("POST", f"{API}/experiments/preflight", body_routing_only(name="first")),
        ("POST", f"{API}/provider-credentials", {"projectId": PROJECT}),
    ):
        error = error_of(served.client.request(method, path, json=body, headers=headers), 409)
        assert error["type"] == "idempotency_error" and error["param"] == "Idempotency-Key", (path, error)
    created = experiment_ids(served) - before
    assert created == {first.json()["data"]["id"]}
    stop(served, created)


def test_a_failed_request_can_be_fixed_and_retried_under_its_key(served: Served) -> None:
    before = experiment_ids(served)
    headers = _idem(served)
    broken = served.client.post(f"{API}/experiments", json=body_routing_only(bogus=1), headers=headers)
    assert error_of(broken, 400)["param"] == "bogus"
    unknown = served.client.post(f"{API}/experiments", json=body_routing_only(projectId="nope"), headers=headers)
    assert error_of(unknown, 404)["type"] == "not_found"
    fixed = served.client.post(f"{API}/experiments", json=body_routing_only(), headers=headers)
    assert fixed.status_code == 201, fixed.text
    assert "idempotent-replayed" not in fixed.headers
    again = served.client.post(f"{API}/experiments", json=body_routing_only(), headers=headers)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.json() == fixed.json()
    created = experiment_ids(served) - before
    assert created == {fixed.json()["data"]["id"]}
    stop(served, created)


def test_idempotency_keys_are_per_management_key(served: Served) -> None:
    before = experiment_ids(served)
    idem = f"idem-shared-{uuid.uuid4().hex}"
    body = body_routing_only(name="per key")
    mine = served.client.post(f"{API}/experiments", json=body, headers=_idem(served, served.key, idem))
    admins = served.client.post(f"{API}/experiments", json=body, headers=_idem(served, served.admin_key, idem))
    others = served.client.post(
        f"{API}/experiments", json=body_routing_only(projectId=OTHER), headers=_idem(served, served.other_key, idem)
    )
    for answer in (mine, admins, others):
        assert answer.status_code == 201, answer.text
        assert "idempotent-replayed" not in answer.headers
    ids = {a.json()["data"]["id"] for a in (mine, admins, others)}
    assert len(ids) == 3
    assert experiment_ids(served) - before == ids
    # proj_other's key replaying the shared key does not get proj_abc's experiment.
    replay = served.client.post(
        f"{API}/experiments", json=body_routing_only(projectId=OTHER), headers=_idem(served, served.other_key, idem)
    )
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == others.json()
    stop(served, ids)


def test_json_whitespace_and_key_order_do_not_matter(served: Served) -> None:
    before = experiment_ids(served)
    headers = {**_idem(served), "Content-Type": "application/json"}
    body = body_routing_only(name="canonical body")
    compact = json.dumps(body, separators=(",", ":"))
    shuffled = json.dumps(dict(reversed(list(body.items()))), indent=4) + "\n"
    first = served.client.post(f"{API}/experiments", content=compact, headers=headers)
    assert first.status_code == 201, first.text
    second = served.client.post(f"{API}/experiments", content=shuffled, headers=headers)
    assert second.status_code == 201 and second.headers.get("idempotent-replayed") == "true", second.text
    assert second.json() == first.json()
    assert experiment_ids(served) - before == {first.json()["data"]["id"]}
    stop(served, {first.json()["data"]["id"]})


def test_a_key_created_under_an_idempotency_key_is_not_kept_in_plaintext(served: Served) -> None:
    created = served.client.post(f"{API}/keys", json={"projectIds": [PROJECT]}, headers=_idem(served))
    assert created.status_code == 201, created.text
    assert created.json()["data"]["key"].encode() not in database_bytes(served)


def test_an_over_long_idempotency_key_is_refused(served: Served) -> None:
    before = experiment_ids(served)
    answer = served.client.post(f"{API}/experiments", json=body_routing_only(), headers=_idem(served, idem="k" * 256))
    assert error_of(answer, 400)["param"] == "Idempotency-Key"
    assert experiment_ids(served) == before


# --- the guide's limits ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def metadata_only_project(served: Served) -> str:
    project_id = f"proj_meta_{uuid.uuid4().hex[:8]}"
    created = served.client.post(
        f"{API}/projects",
        json={"id": project_id, "loggingMode": "metadata_only"},
        headers=served.headers(served.admin_key),
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["logging_mode"] == "metadata_only"
    return project_id


def _above_cap(served: Served) -> float:
    project = served.client.get(f"{API}/projects/{PROJECT}", headers=served.headers()).json()["data"]
    return float(project["experiment_spend_cap_usd"]) + 1


def with_responses(**changes: Any) -> dict[str, Any]:
    """The guide's with-responses body with some fields replaced."""
    return {**body_with_responses(), **changes}


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


REFUSED_EXPERIMENTS: dict[str, tuple[Any, str | None]] = {
    # name: (body, or a function of (served, metadata project) giving it; the param the answer must name)
    "sample.size 999": (with_responses(sample={"size": 999, "method": "random"}), "sample.size"),
    "sample.size 50,001": (with_responses(sample={"size": 50_001, "method": "random"}), "sample.size"),
    "spend cap above the project's": (lambda s, _: with_responses(spendCapUsd=_above_cap(s)), "spendCapUsd"),
    "no spend cap": (_without(body_with_responses(), "spendCapUsd"), "spendCapUsd"),
    "hypothesis of 2,001 chars": (body_routing_only(hypothesis="h" * 2001), "hypothesis"),
    "ensemble candidate": (
        body_routing_only(candidatePolicy="ensemble", candidateConfig={"models": ["gpt-4o", "gpt-4o-mini"]}),
        "candidatePolicy",
    ),
    "metadata_only project": (lambda _, meta: with_responses(projectId=meta), "mode"),
    "window with no rows": (
        body_routing_only(windowStart="1999-01-01T00:00:00Z", windowEnd="1999-01-08T00:00:00Z"),
        "windowStart",
    ),
    "window in the future": (
        body_routing_only(windowStart="2099-01-01T00:00:00Z", windowEnd="2099-01-08T00:00:00Z"),
        "windowStart",
    ),
    "empty window": (
        body_routing_only(windowStart="2026-04-17T00:00:00Z", windowEnd="2026-04-17T00:00:00Z"),
        None,  # named below, see test_an_inverted_window_names_window_end
    ),
    "inverted window": (
        body_routing_only(windowStart="2026-04-17T00:00:00Z", windowEnd="2026-04-10T00:00:00Z"),
        None,
    ),
    "not a date": (body_routing_only(windowStart="last tuesday"), "windowStart"),
    "unknown field": (body_routing_only(sampleSize=1000), "sampleSize"),
    "unknown nested field": (with_responses(sample={"size": 1000, "method": "random", "sizee": 1}), "sample.sizee"),
}


@pytest.mark.parametrize("case", list(REFUSED_EXPERIMENTS), ids=list(REFUSED_EXPERIMENTS))
def test_the_guides_limits_refuse_experiments_and_store_nothing(
    served: Served, metadata_only_project: str, case: str
) -> None:
    raw, param = REFUSED_EXPERIMENTS[case]
    body = raw(served, metadata_only_project) if callable(raw) else raw
    key = served.admin_key if body["projectId"] == metadata_only_project else served.key
    before = experiment_ids(served)
    error = error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers(key)), 400)
    assert error["type"] in ("invalid_request_error", "empty_window"), error
    if param is not None:
        assert error["param"] == param, error
        assert param.rsplit(".", 1)[-1] in error["message"] or case.startswith(("ensemble", "window")), error
    assert experiment_ids(served) == before, "a refused create stored an experiment"


UNCHECKED_INPUTS = [
    pytest.param(with_responses(sample={"size": 1000, "seed": -1}), "sample.seed", id="seed -1"),
    pytest.param(with_responses(sample={"size": 1000, "seed": 2**64}), "sample.seed", id="seed 2**64"),
    pytest.param(
        body_routing_only(windowEnd="9999-12-31T23:59:59Z"),
        "windowEnd",
        id="window ending in 9999",
    ),
    pytest.param(
        with_responses(embeddingModel="no-such-embedder"),
        "embeddingModel",
        id="unknown embedder",
    ),
]


@pytest.mark.parametrize(("body", "param"), UNCHECKED_INPUTS)
def test_inputs_the_engine_cannot_run_are_refused_at_create(served: Served, body: dict[str, Any], param: str) -> None:
    before = experiment_ids(served)
    answer = served.client.post(f"{API}/experiments", json=body, headers=served.headers())
    stop(served, experiment_ids(served) - before)
    assert error_of(answer, 400)["param"] == param
    assert experiment_ids(served) == before


@pytest.mark.parametrize("seed", [-1, 2**64], ids=["-1", "2**64"])
@pytest.mark.parametrize("action", ["judge", "judge/preflight"])
def test_a_judge_seed_out_of_range_is_refused(
    served: Served, finished_with_responses: dict[str, Any], action: str, seed: int
) -> None:
    path = f"{API}/experiments/{finished_with_responses['id']}/{action}"
    body = {"stratification": {"high": 1, "mild": 1, "major": 1}, "spendCapUsd": 1, "seed": seed}
    assert error_of(served.client.post(path, json=body, headers=served.headers()), 400)["param"] == "seed"


def test_a_routing_config_error_names_the_bodys_fields(served: Served) -> None:
    path = f"{API}/projects/{PROJECT}/routing-configs"
    missing = served.client.post(path, json={"slug": "x", "policy": "single", "config": {}}, headers=served.headers())
    assert error_of(missing, 400)["param"] == "config.model"
    unknown = served.client.post(path, json={"slug": "x", "policy": "nope", "config": {}}, headers=served.headers())
    assert error_of(unknown, 400)["param"] == "policy"


@pytest.mark.parametrize("start", ["2026-04-17T00:00:00Z", "2026-04-18T00:00:00Z"], ids=["empty", "inverted"])
def test_an_inverted_window_names_window_end(served: Served, start: str) -> None:
    body = body_routing_only(windowStart=start, windowEnd="2026-04-17T00:00:00Z")
    assert error_of(served.client.post(f"{API}/experiments", json=body, headers=served.headers()), 400)["param"] == (
        "windowEnd"
    )


def test_a_judge_run_over_1500_pairs_is_refused_and_stores_nothing(
    served: Served, finished_with_responses: dict[str, Any]
) -> None:
    base = f"{API}/experiments/{finished_with_responses['id']}/judge"
    runs = served.client.get(f"{base}?limit=100", headers=served.headers()).json()["data"]
    for body, param in (
        ({"stratification": {"high": 501, "mild": 500, "major": 500}, "spendCapUsd": 1}, "stratification"),
        ({"stratification": {"high": 1, "mild": 1, "major": 1}}, "spendCapUsd"),
        ({"stratification": {"high": 1, "mild": 1, "major": 1}, "spendCapUsd": 1000}, "spendCapUsd"),
        ({"stratification": {"high": -1, "mild": 1, "major": 1}, "spendCapUsd": 1}, "stratification.high"),
        ({"rubric": "r" * 8001, "spendCapUsd": 1}, "rubric"),
        ({"judgeModle": "gpt-4o", "spendCapUsd": 1}, "judgeModle"),
    ):
        error = error_of(served.client.post(base, json=body, headers=served.headers()), 400)
        assert error["param"] == param, (body, error)
    assert served.client.get(f"{base}?limit=100", headers=served.headers()).json()["data"] == runs


def test_a_judge_run_with_an_unknown_credential_is_refused(
    served: Served, finished_with_responses: dict[str, Any]
) -> None:
    base = f"{API}/experiments/{finished_with_responses['id']}/judge"
    body = {"stratification": {"high": 1, "mild": 1, "major": 1}, "spendCapUsd": 1, "judgeCredentialId": "pc_nope"}
    answer = served.client.post(base, json=body, headers=served.headers())
    assert error_of(answer, 400)["param"] == "judgeCredentialId"


@pytest.mark.parametrize("content", [b"{not json", b"\x00"], ids=["broken", "nul"])
def test_malformed_json_names_no_field(served: Served, content: bytes) -> None:
    headers = {**served.headers(), "Content-Type": "application/json"}
    answer = served.client.post(f"{API}/experiments", content=content, headers=headers)
    assert error_of(answer, 400)["param"] is None


def test_the_limits_at_their_edges_are_accepted(served: Served, finished_with_responses: dict[str, Any]) -> None:
    for size in (1000, 50_000):
        body = with_responses(sample={"size": size, "method": "random"}, hypothesis="h" * 2000)
        answer = served.client.post(f"{API}/experiments/preflight", json=body, headers=served.headers())
        assert answer.status_code == 200, answer.text
    judge = {"stratification": {"high": 500, "mild": 500, "major": 500}}
    answer = served.client.post(
        f"{API}/experiments/{finished_with_responses['id']}/judge/preflight", json=judge, headers=served.headers()
    )
    assert answer.status_code == 200, answer.text
