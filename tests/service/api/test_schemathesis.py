"""Schemathesis over every operation of the served app's ``/openapi.json``, with a valid proj_abc key.

Each generated request (positive and negative data, examples, coverage and fuzzing
phases) must get an answer that is not a 5xx, whose status code the schema
documents, whose content type the schema declares, and whose body matches the
schema of that status.

Random ids only ever reach "not found", so path ids are sometimes swapped for real
proj_abc objects (read-only operations only: a fuzzed promote or judge run would
change the shared session's objects) and the bodies draw ids, policies and
windows from small dictionaries of valid values, which lets the fuzzer get past
the lookups into the validation and the answers behind them.

The schema is loaded at collection time from an app built without services (the
schema does not depend on them); every request goes to the served app through a
schemathesis ASGI session that is never entered, so schemathesis starts no second
lifespan (a second webhook dispatcher) on the served app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api import create_app
from tests.service.api.conftest import PROJECT, Served, body_routing_only

#: schemathesis' own strategies draw from ``random`` (a deprecation hypothesis reports at length on every run).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Per operation and generation mode: the ~46 operations fuzz in about 30 s on 2 cores (more for a longer pass).
MAX_EXAMPLES = int(os.environ.get("REHEARSAL_FUZZ_EXAMPLES", "15"))
#: Path parameters swapped for real objects, on these methods only.
READ_ONLY = {"GET"}
READ_ONLY_POSTS = ("/preflight",)


def _values(*values: str | int | float) -> dict[str, Any]:
    return {"values": list(values)}


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260417,
        "base-url": f"http://{asgi.HOST}",
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "dictionaries": {
            "projects": _values(PROJECT),
            "policies": _values("single", "ensemble", "nope"),
            "models": _values("gpt-4o-mini", "gpt-4o"),
            "credentials": _values("pc_openai_default"),
            "starts": _values("2026-04-10T00:00:00Z", "2026-04-16T00:00:00Z", "1999-01-01T00:00:00Z"),
            "ends": _values("2026-04-17T00:00:00Z", "2026-04-11T00:00:00Z"),
            "modes": _values("routing_only", "with_responses"),
            "sizes": _values(1, 999, 1000, 50_000, 50_001),
            "caps": _values(0.05, 4.2, 20, 51),
        },
        "parameters": {
            "body.projectId": {"dictionary": "projects", "probability": 0.7},
            "body.projectIds[*]": {"dictionary": "projects", "probability": 0.7},
            "query.projectId": {"dictionary": "projects", "probability": 0.5},
            "body.candidatePolicy": {"dictionary": "policies", "probability": 0.7},
            "body.policy": {"dictionary": "policies", "probability": 0.7},
            "body.judgeModel": {"dictionary": "models", "probability": 0.5},
            "body.judgeCredentialId": {"dictionary": "credentials", "probability": 0.5},
            "body.windowStart": {"dictionary": "starts", "probability": 0.8},
            "body.windowEnd": {"dictionary": "ends", "probability": 0.8},
            "body.mode": {"dictionary": "modes", "probability": 0.5},
            "body.sample.size": {"dictionary": "sizes", "probability": 0.7},
            "body.spendCapUsd": {"dictionary": "caps", "probability": 0.5},
        },
    }
)


def _schema_only_app() -> Any:
    """The app's routes without services: enough to answer ``/openapi.json`` at collection time."""
    return create_app(cast(Any, None), cast(Any, None))


schema = schemathesis.openapi.from_dict(_schema_only_app().openapi(), config=CONFIG)
#: Real proj_abc objects by path-parameter name, filled by the ``_objects`` fixture before any case is drawn.
REAL: dict[str, str] = {}


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """The generated ids, or (on read-only operations) the same with real objects where the path names them."""
    operation = context.operation
    if operation is None or not path_parameters:
        return st.just(path_parameters)
    read_only = operation.method.upper() in READ_ONLY or operation.path.endswith(READ_ONLY_POSTS)
    real = {name: REAL[name] for name in path_parameters if name in REAL and (read_only or name == "project_id")}
    if not real:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **real}])


def _ids(served: Served, path: str) -> set[str]:
    answer = served.client.get(path, headers=served.headers())
    assert answer.status_code == 200, answer.text
    return {item["id"] for item in answer.json()["data"]}


@pytest.fixture(scope="module", autouse=True)
def _objects(
    served: Served, finished_with_responses: dict[str, Any], finished_judge_run: dict[str, Any]
) -> Iterator[None]:
    """Real proj_abc objects for the fuzzer to reach; what the fuzzing changed is put back afterwards.

    proj_abc's settings (fuzzed PATCHes), and the schedules and webhooks fuzzed creates may have made
    (a schedule would otherwise keep firing into proj_abc for the rest of the session).
    """
    api, headers = "/manage/v1", served.headers()
    project = served.svc.store.get_project(PROJECT)
    schedules_before = _ids(served, f"{api}/scheduled_experiments")
    webhooks_before = _ids(served, f"{api}/webhooks")
    experiment_id = finished_with_responses["id"]
    created = {
        "pairs": served.client.get(f"{api}/experiments/{experiment_id}/results?limit=1", headers=headers),
        "credential": served.client.post(
            f"{api}/provider-credentials",
            json={"projectId": PROJECT, "baseUrl": "http://127.0.0.1:9/schemathesis/v1", "apiKey": "sk-fuzz-only"},
            headers=headers,
        ),
        "config": served.client.post(
            f"{api}/projects/{PROJECT}/routing-configs",
            json={"slug": "fuzz-target", "policy": "single", "config": {"model": "gpt-4o-mini"}},
            headers=headers,
        ),
        "webhook": served.client.post(
            f"{api}/webhooks",
            json={"projectId": PROJECT, "url": "http://127.0.0.1:9/fuzz", "events": ["experiment.regression_detected"]},
            headers=headers,
        ),
        "schedule": served.client.post(
            f"{api}/scheduled_experiments",
            json={
                **{k: v for k, v in body_routing_only().items() if not k.startswith("window")},
                "cronExpression": "0 9 * * *",
                "windowHours": 24,
            },
            headers=headers,
        ),
    }
    for answer in created.values():
        assert answer.status_code in (200, 201), answer.text
    data = {name: answer.json()["data"] for name, answer in created.items()}
    REAL.update(
        project_id=PROJECT,
        experiment_id=experiment_id,
        request_id=data["pairs"][0]["request_id"],
        credential_id=data["credential"]["id"],
        slug="fuzz-target",
        judge_run_id=finished_judge_run["id"],
        webhook_id=data["webhook"]["id"],
        schedule_id=data["schedule"]["id"],
    )
    yield
    REAL.clear()
    served.svc.store.put_project(project, create=False)
    for kind, before in (("scheduled_experiments", schedules_before), ("webhooks", webhooks_before)):
        for leftover in _ids(served, f"{api}/{kind}") - before:
            assert served.client.delete(f"{api}/{kind}/{leftover}", headers=headers).status_code == 200


@pytest.fixture(scope="module")
def session(served: Served) -> asgi.ASGIClient:
    """Requests to the served app in process; not entered, so no lifespan of its own."""
    return asgi.get_client(cast(Any, served.client.app))


SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@schema.parametrize()
@SETTINGS
def test_every_operation_conforms(case: schemathesis.Case, served: Served, session: asgi.ASGIClient) -> None:
    case.call_and_validate(session=session, headers=served.headers(), checks=CHECKS)
