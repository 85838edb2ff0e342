"""Provider base URLs: the credentials file is trusted; credentials stored through the API are checked, twice."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from engine.credentials import check_base_url, load_credentials
from engine.errors import ConfigError
from engine.execution import project_credentials
from engine.runs import endpoint
from engine.schema import ProviderCredential
from engine.store import Store, utcnow

SETTING = "REHEARSAL_PROVIDER_ALLOW_HOSTS"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/v1",
        "http://100.100.100.200/v1",
        "http://127.0.0.1:8000/v1",
        "http://localhost./v1",
        "http://[::1]:8000/v1",
        "http://10.0.0.3/v1",
        "https://nowhere.rehearsal.invalid/v1",
    ],
)
def test_internal_or_unresolvable_base_urls_are_refused_naming_base_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_base_url(url, ["*"])
    assert caught.value.param == "baseUrl"
    assert SETTING in caught.value.message or "does not resolve" in caught.value.message


def _store_credential(store: Store, base_url: str) -> str:
    credential = ProviderCredential(
        id="pc_api", project_id="p", vendor="openai", base_url=base_url, has_api_key=True, created_at=utcnow()
    )
    store.put_credential(credential, "sk-stored")
    return credential.id


def test_the_credentials_file_is_trusted_and_stored_credentials_are_checked_when_a_run_resolves_them(
    tmp_path: Path,
) -> None:
    file = tmp_path / "credentials.yaml"
    file.write_text("credentials:\n  pc_openai_default: {vendor: openai, base_url: 'http://127.0.0.1:9/v1'}\n")
    base = load_credentials(file)
    store = Store(tmp_path / "db.sqlite")
    stored = _store_credential(store, "http://localhost:9/v1")  # e.g. stored before the setting was narrowed

    public_only = project_credentials(base, store, "p", ["*"])
    assert endpoint(public_only, "pc_openai_default").pin is None  # the operator's file: not checked
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1") as caught:
        endpoint(public_only, stored)
    assert caught.value.param == "provider_credential_id" and SETTING in caught.value.message

    local = endpoint(project_credentials(base, store, "p", ["localhost:9"]), stored)
    assert local.pin is not None and local.pin.address == ipaddress.ip_address("127.0.0.1")
    assert (local.pin.host, local.pin.port, local.api_key) == ("localhost", 9, "sk-stored")
    with pytest.raises(ConfigError):
        endpoint(project_credentials(base, store, "p", ["localhost:8000"]), stored)  # another port
