"""The OpenAI-compatible provider pinned to a checked address: the real SDK, a loopback server, a DNS we control."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.credentials import check_base_url
from engine.netpolicy import Target
from engine.providers import ChatCall, ChatResult, OpenAICompatible, RetryPolicy
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
