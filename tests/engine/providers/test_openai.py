"""The OpenAI-compatible provider: pinned to a checked address, what a failed call keeps, a reported cost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.credentials import check_base_url
from engine.netpolicy import Target
from engine.providers import REPORTED_COST_HEADER, ChatCall, ChatResult, OpenAICompatible, RetryPolicy, scrub_secrets
from engine.providers._openai import ERROR_MESSAGE_CHARS
from tests.loopback import CHECKED, COMPLETION, HOOK_NAME, JSON, Loopback, dns, tls_files

ONCE = RetryPolicy(max_attempts=1, backoff_s=0, timeout_s=10)


def call(base_url: str, pin: Target | None) -> ChatResult:
    async def go() -> ChatResult:
        provider = OpenAICompatible(base_url=base_url, api_key="sk-test", retry=ONCE, pin=pin)
        try:
            return await provider.complete(ChatCall("pair_1", "m", {"messages": [{"role": "user", "content": "x"}]}))
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_a_pinned_provider_calls_the_checked_address_with_the_base_url_host() -> None:
    with Loopback(200, JSON, COMPLETION).running() as server:
        base_url = server.url(HOOK_NAME, "/v1")
        unpinned = call(base_url, None)  # the system resolver has no answer for the name
        assert unpinned.status == "error" and unpinned.error_type == "connection_error"
        target = check_base_url(base_url, [HOOK_NAME], resolve=CHECKED)
        result = call(base_url, target)
    assert result.status == "ok" and result.text == "hi" and result.input_tokens == 3
    [seen] = server.seen
    assert seen.path == "/v1/chat/completions" and seen.host == f"{HOOK_NAME}:{server.port}"
    assert seen.headers["Authorization"] == "Bearer sk-test"


def test_a_pinned_provider_over_https_sends_the_name_as_sni_and_verifies_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, ca_file = tls_files(tmp_path, HOOK_NAME)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trust the test CA (the certificate names only HOOK_NAME)
    with Loopback(200, JSON, COMPLETION, tls=context).running() as server:
        base_url = server.url(HOOK_NAME, "/v1")
        assert call(base_url, check_base_url(base_url, [HOOK_NAME], resolve=CHECKED)).status == "ok"
        other = "models.rehearsal.invalid"  # a name the certificate does not carry, pinned to the same server
        mismatch = server.url(other, "/v1")
        refused = call(mismatch, check_base_url(mismatch, [other], resolve=dns({other: ["127.0.0.1"]})))
    assert server.sni == [HOOK_NAME, other]
    assert refused.status == "error" and refused.error_type == "connection_error"
    assert [seen.host for seen in server.seen] == [f"{HOOK_NAME}:{server.port}"]


def test_a_pinned_provider_follows_no_redirect() -> None:
    with (
        Loopback(200, JSON, COMPLETION).running() as elsewhere,
        Loopback(307, {"Location": elsewhere.url(path="/v1/chat/completions")}).running() as server,
    ):
        base_url = server.url(HOOK_NAME, "/v1")
        result = call(base_url, check_base_url(base_url, [HOOK_NAME], resolve=CHECKED))
    assert result.status == "error" and len(server.seen) == 1
    assert elsewhere.seen == []


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}}).encode()


def test_a_failed_call_keeps_the_status_and_the_providers_message() -> None:
    missing = "The model `gpt-9` does not exist or you do not have access to it."
    with Loopback(404, JSON, _error(missing)).running() as server:
        result = call(server.url(path="/v1"), None)
    assert result.status == "error" and result.error_type == "invalid_request"
    assert result.status_code == 404 and result.error_message == missing


def test_a_failed_calls_message_never_carries_a_key() -> None:
    key = "sk-test"  # the key ``call`` sends
    said = (
        "Incorrect API key provided: sk-proj-abcdefgh1234. Authorization: Bearer sk-live-zzzzzzzz; "
        "also key=AIzaSyA123456789012345678901234567890 and api_key: hunter2 " + "x" * 600
    )
    with Loopback(401, JSON, _error(said)).running() as server:
        result = call(server.url(path="/v1"), None)
    message = result.error_message or ""
    assert result.status_code == 401 and message.startswith("Incorrect API key provided: [redacted].")
    for secret in ("sk-proj-abcdefgh1234", "sk-live-zzzzzzzz", "AIzaSy", "hunter2", key):
        assert secret not in message
    assert len(message) <= ERROR_MESSAGE_CHARS


def test_secrets_are_scrubbed_and_plain_messages_kept() -> None:
    assert scrub_secrets("x-api-key: abc123def and Bearer tok.en.value") == "x-api-key: [redacted] and [redacted]"
    assert scrub_secrets("the key my-own-long-secret leaked", ["my-own-long-secret"]) == "the key [redacted] leaked"
    assert (
        scrub_secrets("https://g.example/v1?key=AIzaXXXXXXXX&alt=json")
        == "https://g.example/v1?key=[redacted]&alt=json"
    )
    plain = "Invalid 'messages[0].content': string too long. Expected a string with maximum length 1048576."
    assert scrub_secrets(plain) == plain


@pytest.mark.parametrize(("header", "reported"), [("0.0042", 0.0042), ("1e-06", 1e-6), ("None", None), ("-1", None)])
def test_a_cost_the_endpoint_reports_is_kept_beside_the_usage(header: str, reported: float | None) -> None:
    with Loopback(200, {**JSON, REPORTED_COST_HEADER: header}, COMPLETION).running() as server:
        result = call(server.url(path="/v1"), None)
    assert result.status == "ok" and result.text == "hi" and result.status_code == 200
    assert result.reported_cost_usd == (pytest.approx(reported) if reported is not None else None)
    with Loopback(200, JSON, COMPLETION).running() as server:
        assert call(server.url(path="/v1"), None).reported_cost_usd is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'[{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}]',
            "API key not valid.",
        ),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b"upstream connect error", "upstream connect error"),
    ],
    ids=["gemini-list", "detail", "text"],
)
def test_the_message_is_found_in_other_vendors_error_shapes(body: bytes, message: str) -> None:
    with Loopback(400, JSON if body.startswith((b"{", b"[")) else {}, body).running() as server:
        result = call(server.url(path="/v1"), None)
    assert result.status_code == 400 and result.error_message == message
