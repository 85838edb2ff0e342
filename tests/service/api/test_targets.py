"""Webhook and provider-credential targets through REST, under the default allow-lists (["*"]: public hosts only).

No Prefect here: creating a webhook or a credential starts nothing, so the app runs without its lifespan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from engine.settings import Settings
from service import core
from service.api import create_app

PROJECT = "proj_targets"
#: What the security review saw accepted, and their kin; each must be a 400 naming the field.
BAD_TARGETS = [
    "http://localhost./hook",
    "http://localhost:8080/hook",
    "http://127.0.0.1./hook",
    "http://100.100.100.200/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://[fec0::1]/hook",
    "http://224.0.0.1/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://nowhere.rehearsal.invalid/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::1]:9000/hook",
    "http://10.0.0.8/hook",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    home = tmp_path_factory.mktemp("targets") / "home"
    # Explicit defaults: the served fixture of other API tests puts narrower lists in the environment.
    settings = Settings(home=home, webhook_allow_hosts=["*"], provider_allow_hosts=["*"])
    svc = core.open_services(settings)
    core.create_project(svc, PROJECT)
    key = svc.store.create_api_key([PROJECT], role="admin").key
    client = TestClient(create_app(svc, cast(Any, None)), raise_server_exceptions=False)
    yield client, {"Authorization": f"Bearer {key}"}


def _listed(client: TestClient, headers: dict[str, str], path: str) -> list[dict[str, Any]]:
    answer = client.get(f"/manage/v1/{path}?projectId={PROJECT}", headers=headers)
    assert answer.status_code == 200, answer.text
    return cast(list[dict[str, Any]], answer.json()["data"])


@pytest.mark.parametrize("url", BAD_TARGETS)
def test_a_webhook_aimed_at_an_internal_or_unresolvable_target_is_refused(
    api: tuple[TestClient, dict[str, str]], url: str
) -> None:
    client, headers = api
    before = _listed(client, headers, "webhooks")
    answer = client.post("/manage/v1/webhooks", json={"projectId": PROJECT, "url": url}, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "url", error
    assert "REHEARSAL_WEBHOOK_ALLOW_HOSTS" in error["message"] or "does not resolve" in error["message"], error
    assert _listed(client, headers, "webhooks") == before


@pytest.mark.parametrize("url", [u.removesuffix("hook") + "v1" for u in BAD_TARGETS])
def test_a_credential_whose_base_url_is_internal_or_unresolvable_is_refused(
    api: tuple[TestClient, dict[str, str]], url: str
) -> None:
    client, headers = api
    body = {"projectId": PROJECT, "baseUrl": url, "apiKey": "sk-x"}
    before = _listed(client, headers, "provider-credentials")
    answer = client.post("/manage/v1/provider-credentials", json=body, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "baseUrl", error
    assert "REHEARSAL_PROVIDER_ALLOW_HOSTS" in error["message"] or "does not resolve" in error["message"], error
    assert _listed(client, headers, "provider-credentials") == before


def test_the_metadata_address_as_a_base_url_is_a_400_naming_base_url(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    body = {"projectId": PROJECT, "baseUrl": "http://169.254.169.254/v1", "apiKey": "sk-x"}
    error = client.post("/manage/v1/provider-credentials", json=body, headers=headers).json()["error"]
    assert error["param"] == "baseUrl" and error["type"] == "invalid_request_error"
    assert "169.254.169.254" in error["message"] and "metadata" in error["message"], error


def test_public_targets_are_accepted(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    hook = client.post(
        "/manage/v1/webhooks", json={"projectId": PROJECT, "url": "https://93.184.216.34/hook"}, headers=headers
    )
    assert hook.status_code == 201, hook.text
    credential = client.post(
        "/manage/v1/provider-credentials",
        json={"projectId": PROJECT, "baseUrl": "https://93.184.216.34/v1", "apiKey": "sk-x"},
        headers=headers,
    )
    assert credential.status_code == 201, credential.text
