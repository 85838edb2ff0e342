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


SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "credentials.yaml"
VENDORS = {
    "pc_openai_default": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "pc_anthropic_default": ("https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY"),
    "pc_google_default": ("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
}


def test_the_shipped_file_has_each_vendors_default_and_its_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = load_credentials(SHIPPED)
    assert {cid: (c.base_url, c.api_key_env) for cid, c in shipped.credentials.items()} == VENDORS
    assert {c.cost_source for c in shipped.credentials.values()} == {"catalog"}
    for credential_id, (_, variable) in VENDORS.items():
        monkeypatch.delenv(variable, raising=False)
        with pytest.raises(ConfigError, match=rf"\${variable}, which is not set") as caught:
            endpoint(shipped, credential_id)
        assert caught.value.param == "provider_credential_id"
        monkeypatch.setenv(variable, f"key-for-{credential_id}")
        assert endpoint(shipped, credential_id).api_key == f"key-for-{credential_id}"


@pytest.mark.parametrize("base_url", sorted(url for url, _ in VENDORS.values()))
def test_the_vendors_hosts_pass_the_default_allow_list(base_url: str) -> None:
    from urllib.parse import urlsplit

    host = urlsplit(base_url).hostname or ""
    public = {host: ["104.18.0.1"]}  # what these names resolve to: public addresses
    target = check_base_url(base_url, ["*"], resolve=lambda h, p: [ipaddress.ip_address(a) for a in public[h]])
    assert target.host == host and target.port == 443


def test_a_stored_credential_keeps_its_cost_source(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    proxy = ProviderCredential(
        id="pc_proxy",
        project_id="p",
        vendor="openai",
        base_url="http://localhost:4000/v1",
        cost_source="provider",
        has_api_key=True,
        created_at=utcnow(),
    )
    store.put_credential(proxy, "sk-proxy")
    base = load_credentials(SHIPPED)
    assert endpoint(project_credentials(base, store, "p", ["localhost:4000"]), "pc_proxy").cost_source == "provider"
    assert store.get_credential("pc_proxy").cost_source == "provider"
