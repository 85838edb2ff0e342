"""Webhook sends go to the address that passed the target check: Host, SNI and the certificate keep the name."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from engine.errors import ConfigError
from engine.netpolicy import resolve_host
from engine.scheduled_runs import attempt
from engine.store import Store, utcnow
from engine.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    PinnedTransport,
    WebhookEndpoint,
    check_target,
    event,
    send,
    verify,
)
from tests.loopback import CHECKED, HOOK_NAME, Loopback, tls_files

PAYLOAD = {"id": "evt_1", "type": "experiment.completed", "created_at": "", "data": {}}


def test_a_send_connects_to_the_checked_address_without_a_second_lookup() -> None:
    with Loopback().running() as receiver:
        with pytest.raises(OSError):
            resolve_host(HOOK_NAME, receiver.port)  # what a second lookup at send time would get
        target = check_target(receiver.url(HOOK_NAME), [HOOK_NAME], resolve=CHECKED)
        assert send(target, "whsec_x", PAYLOAD) == (204, None)
    [seen] = receiver.seen
    assert seen.host == f"{HOOK_NAME}:{receiver.port}" and seen.path == "/hook"
    assert json.loads(seen.body) == PAYLOAD
    assert verify("whsec_x", seen.body, seen.headers[TIMESTAMP_HEADER], seen.headers[SIGNATURE_HEADER])


def test_localhost_listed_explicitly_is_called_by_its_address_and_refused_by_default() -> None:
    with Loopback().running() as receiver:
        for url in (receiver.url("localhost"), receiver.url("localhost.")):
            with pytest.raises(ConfigError, match="loopback"):
                check_target(url, ["*"])
        target = check_target(receiver.url("localhost"), ["localhost"])  # the system resolver, for real
        assert str(target.address) == "127.0.0.1"
        assert send(target, "whsec_x", PAYLOAD) == (204, None)
    assert receiver.seen[0].host == f"localhost:{receiver.port}"


def test_https_sends_the_name_as_sni_and_verifies_the_certificate_against_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "right").mkdir()
    right, ca_file = tls_files(tmp_path / "right", HOOK_NAME)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trust the test CA (the certificate names only HOOK_NAME)
    with Loopback(tls=right).running() as receiver:
        target = check_target(receiver.url(HOOK_NAME), [HOOK_NAME], resolve=CHECKED)
        assert send(target, "whsec_x", PAYLOAD) == (204, None)
    assert receiver.sni == [HOOK_NAME]
    assert receiver.seen[0].host == f"{HOOK_NAME}:{receiver.port}"

    (tmp_path / "wrong").mkdir()
    wrong, other_ca = tls_files(tmp_path / "wrong", "other.rehearsal.invalid")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    with Loopback(tls=wrong).running() as impostor:
        target = check_target(impostor.url(HOOK_NAME), [HOOK_NAME], resolve=CHECKED)
        code, error = send(target, "whsec_x", PAYLOAD)
    assert code is None and error is not None and "Hostname mismatch" in error, error
    assert impostor.seen == []


def test_redirects_are_not_followed_and_other_origins_are_refused() -> None:
    with Loopback().running() as elsewhere, Loopback(307, {"Location": elsewhere.url()}).running() as receiver:
        target = check_target(receiver.url(), ["127.0.0.1"])
        assert send(target, "whsec_x", PAYLOAD) == (307, "HTTP 307")
        with httpx.Client(transport=PinnedTransport(target)) as client:
            assert client.get(receiver.url(path="/other")).status_code == 307  # the same origin: fine
            for url in (elsewhere.url(), receiver.url(HOOK_NAME)):
                with pytest.raises(ConfigError, match="only the checked target"):
                    client.get(url)
    assert elsewhere.seen == []


def _delivery(store: Store, url: str) -> Delivery:
    now = utcnow()
    hook = WebhookEndpoint(id="wh_1", project_id="p", url=url, events=["experiment.completed"], created_at=now)
    store.put_doc("webhooks", hook.id, hook.project_id, hook.model_dump_json(), secret="whsec_x")
    item = event("experiment.completed", {"n": 1})
    return Delivery(
        id="whd_1",
        webhook_id=hook.id,
        project_id="p",
        event_id=item["id"],
        type="experiment.completed",
        payload=item,
        created_at=now,
    )


def test_an_attempt_checks_the_target_again_and_sends_to_the_checked_address(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    with Loopback().running() as receiver:
        delivery = _delivery(store, receiver.url("localhost"))
        refused = attempt(store, delivery, ["*"])
        assert refused.status == "pending" and refused.last_status_code is None
        assert "loopback" in (refused.last_error or "") and receiver.seen == []
        delivered = attempt(store, refused, ["localhost"])
    assert delivered.status == "delivered" and delivered.last_status_code == 204
    [seen] = receiver.seen
    assert seen.host == f"localhost:{receiver.port}"
    assert json.loads(seen.body)["data"] == {"n": 1}
