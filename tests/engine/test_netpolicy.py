"""The network-target rule: a host resolved once, public unicast addresses only unless listed explicitly."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from engine.errors import ConfigError
from engine.netpolicy import (
    Resolver,
    Target,
    check_url,
    internal_reason,
    is_public,
    normalise_host,
    parse_allow,
    resolve_host,
)
from engine.settings import Settings
from tests.loopback import dns

SETTING = "REHEARSAL_WEBHOOK_ALLOW_HOSTS"
NO_DNS = dns({})


def check(url: str, allow: list[str] | None = None, resolve: Resolver = NO_DNS) -> Target:
    return check_url(
        url, ["*"] if allow is None else allow, setting=SETTING, param="url", what="target", resolve=resolve
    )


def refused(url: str, allow: list[str] | None = None, resolve: Resolver = NO_DNS) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check(url, allow, resolve)
    assert caught.value.param == "url"
    return caught.value


#: Targets the security review saw accepted with the default ["*"], and their kin: (url, DNS answers, refused address).
INTERNAL = [
    ("http://localhost./hook", {"localhost": ["127.0.0.1"]}, "127.0.0.1"),
    ("http://127.0.0.1./hook", {}, "127.0.0.1"),
    ("http://127.0.0.1:9000/hook", {}, "127.0.0.1"),
    ("http://[::1]/hook", {}, "::1"),
    ("http://100.100.100.200/latest/meta-data/", {}, "100.100.100.200"),
    ("http://100.64.0.1/", {}, "100.64.0.1"),
    ("http://100.127.255.254/", {}, "100.127.255.254"),
    ("http://[fec0::1]/", {}, "fec0::1"),
    ("http://224.0.0.1/", {}, "224.0.0.1"),
    ("http://[ff02::1]/", {}, "ff02::1"),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        {"metadata.google.internal": ["169.254.169.254"]},
        "169.254.169.254",
    ),
    ("http://169.254.169.254/latest/meta-data/", {}, "169.254.169.254"),
    ("http://[fd00:ec2::254]/latest/meta-data/", {}, "fd00:ec2::254"),
    ("http://[fe80::1]/", {}, "fe80::1"),
    ("http://0.0.0.0:8080/", {}, "0.0.0.0"),
    ("http://[::]/", {}, "::"),
    ("http://10.0.0.5/", {}, "10.0.0.5"),
    ("http://172.16.0.1/", {}, "172.16.0.1"),
    ("http://192.168.1.1/", {}, "192.168.1.1"),
    ("http://[fc00::1]/", {}, "fc00::1"),
    ("http://240.0.0.1/", {}, "240.0.0.1"),
    ("http://255.255.255.255/", {}, "255.255.255.255"),
    ("http://[::ffff:127.0.0.1]/", {}, "127.0.0.1"),  # IPv4-mapped: judged (and called) as IPv4
    ("http://[::ffff:169.254.169.254]/", {}, "169.254.169.254"),
    ("http://[2002:7f00:1::]/", {}, "2002:7f00:1::"),  # 6to4 of 127.0.0.1
    ("http://[2002:a9fe:a9fe::]/", {}, "2002:a9fe:a9fe::"),  # 6to4 of 169.254.169.254
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", {}, "2001:0:4136:e378:8000:63bf:3fff:fdd2"),  # Teredo
    ("http://[64:ff9b::a9fe:a9fe]/", {}, "64:ff9b::a9fe:a9fe"),  # NAT64 of 169.254.169.254
    ("http://mapped.example/", {"mapped.example": ["::ffff:10.0.0.1"]}, "10.0.0.1"),
    # One internal address among public ones is enough: every address is checked.
    ("https://split.example/", {"split.example": ["93.184.216.34", "2606:2800:220:1::", "127.0.0.1"]}, "127.0.0.1"),
]


@pytest.mark.parametrize(("url", "answers", "address"), INTERNAL, ids=[u for u, _, _ in INTERNAL])
def test_internal_targets_are_refused_by_default(url: str, answers: dict[str, list[str]], address: str) -> None:
    error = refused(url, resolve=dns(answers))
    assert address in error.message and SETTING in error.message, error.message
    assert "not a public address" in error.message


@pytest.mark.parametrize(
    ("url", "answers", "allow"),
    [
        ("http://localhost./hook", {"localhost": ["127.0.0.1", "::1"]}, ["localhost"]),
        ("http://localhost/hook", {"localhost": ["127.0.0.1"]}, ["127.0.0.1"]),
        ("http://127.0.0.1./hook", {}, ["127.0.0.1"]),
        ("http://127.0.0.1:9000/hook", {}, ["127.0.0.1:9000"]),
        ("http://[::1]:9000/hook", {}, ["[::1]"]),
        ("http://[::1]:9000/hook", {}, ["::1"]),
        ("http://[::1]:9000/hook", {}, ["[::1]:9000"]),
        ("http://[::ffff:127.0.0.1]/hook", {}, ["127.0.0.1"]),
        ("http://100.100.100.200/", {}, ["100.64.0.0/10"]),
        ("http://[fec0::1]/", {}, ["[fec0::1]"]),
        ("http://10.1.2.3:8000/v1", {}, ["10.0.0.0/8"]),
        ("http://[fd12::5]/v1", {}, ["fd00::/8"]),
        ("http://[fd12::5]:8000/v1", {}, ["[fd00::/8]:8000"]),
        ("https://models.corp.example/v1", {"models.corp.example": ["10.0.0.7"]}, ["*.corp.example"]),
        ("https://models.corp.example/v1", {"models.corp.example": ["10.0.0.7"]}, ["models.corp.example:443"]),
    ],
)
def test_an_explicit_entry_lets_internal_addresses_through(
    url: str, answers: dict[str, list[str]], allow: list[str]
) -> None:
    target = check(url, allow, dns(answers))
    assert not is_public(target.address)
    assert target.addresses[0] == target.address


def test_public_hosts_pass_the_default_and_the_first_checked_address_is_the_one_to_call() -> None:
    target = check(
        "https://hooks.example.com/x", resolve=dns({"hooks.example.com": ["2606:2800:220:1::", "93.184.216.34"]})
    )
    assert target.address == ipaddress.ip_address("2606:2800:220:1::")
    assert (target.scheme, target.host, target.port, target.tls_name) == (
        "https",
        "hooks.example.com",
        443,
        "hooks.example.com",
    )
    assert check("https://93.184.216.34/hook").address == ipaddress.ip_address("93.184.216.34")
    mapped = check("http://[::ffff:8.8.8.8]/")
    assert mapped.address == ipaddress.ip_address("8.8.8.8") and mapped.tls_name is None
    assert check("http://[2002:808:808::]/").address == ipaddress.ip_address("2002:808:808::")  # 6to4 of a public one


def test_the_trailing_dot_and_case_of_a_name_are_normalised() -> None:
    target = check("https://Hooks.Example.COM./x", ["hooks.example.com"], dns({"hooks.example.com": ["10.0.0.1"]}))
    assert target.host == target.tls_name == "hooks.example.com"
    assert target.is_origin("https", "hooks.example.com.", None)
    assert not target.is_origin("https", "hooks.example.com", 8443)
    assert not target.is_origin("http", "hooks.example.com", 443)
    assert not target.is_origin("https", "elsewhere.example.com", None)
    assert normalise_host("[::FFFF:7F00:1]") == "::ffff:7f00:1"
    assert normalise_host("bücher.de.") == "xn--bcher-kva.de"
    for bad in ("a..b", "localhost..", "-", "a b", "a/b"):
        with pytest.raises(ValueError):
            normalise_host(bad)


def test_ports_in_entries_allow_only_that_port() -> None:
    allow = ["127.0.0.1:9000", "[::1]:9000", "hooks.internal:8443"]
    check("http://127.0.0.1:9000/hook", allow)
    check("http://[::1]:9000/hook", allow)
    check("https://hooks.internal:8443/hook", allow, dns({"hooks.internal": ["10.0.0.9"]}))
    for url in ("http://127.0.0.1:9001/hook", "http://127.0.0.1/hook", "http://[::1]:9001/", "https://hooks.internal/"):
        error = refused(url, allow, dns({"hooks.internal": ["10.0.0.9"]}))
        assert SETTING in error.message
    # The default port of the scheme is the port an entry is compared with.
    check("https://hooks.internal/", ["hooks.internal:443"], dns({"hooks.internal": ["10.0.0.9"]}))
    refused("http://hooks.internal/", ["hooks.internal:443"], dns({"hooks.internal": ["10.0.0.9"]}))


def test_names_that_do_not_resolve_are_refused_even_when_listed() -> None:
    for allow in (["*"], ["nowhere.invalid"], ["*.invalid"]):
        error = refused("https://nowhere.invalid/hook", allow)
        assert "does not resolve" in error.message
    assert "no address" in refused("https://empty.example/", resolve=dns({"empty.example": []})).message
    with pytest.raises(OSError):
        resolve_host("nowhere.rehearsal.invalid", 443)  # the system resolver, for real (RFC 6761)
    assert ipaddress.ip_address("127.0.0.1") in resolve_host("localhost", 80)


def test_hosts_missing_from_a_list_without_star_are_refused_without_a_lookup() -> None:
    def no_lookup(host: str, port: int) -> list[ipaddress.IPv4Address]:
        raise AssertionError(f"looked up {host}")

    for url, allow in [
        ("https://evil.example.org/x", ["*.example.com"]),
        ("https://example.com/x", ["*.example.com"]),
        ("https://notexample.com/x", ["*.example.com"]),
        ("https://example.com.evil.org/x", ["example.com"]),
    ]:
        assert "does not list it" in refused(url, allow, no_lookup).message
    # With a network entry, a name must be looked up to see whether its address is listed.
    assert (
        "does not list it"
        in refused("https://a.example/", ["10.0.0.0/8"], dns({"a.example": ["93.184.216.34"]})).message
    )
    check("https://a.example/", ["10.0.0.0/8"], dns({"a.example": ["10.0.0.2"]}))


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/x", "http:///x", "hooks.example.com/x", "http://h:99999/", "http://a..b/"]
)
def test_urls_that_are_not_http_with_a_host_are_refused(url: str) -> None:
    refused(url)


def test_bad_allow_entries_name_the_setting_and_fail_settings_at_startup() -> None:
    for bad in ("http://hooks.example.com", "*:443", "hooks.example.com:0", "[::1", "10.0.0.0/33", ""):
        with pytest.raises(ConfigError) as caught:
            parse_allow([bad], SETTING)
        assert caught.value.param == SETTING
    with pytest.raises(ValidationError, match="REHEARSAL_PROVIDER_ALLOW_HOSTS"):
        Settings(provider_allow_hosts=["http://models.local"])
    with pytest.raises(ValidationError, match="REHEARSAL_WEBHOOK_ALLOW_HOSTS"):
        Settings(webhook_allow_hosts=["a b"])
    assert Settings().provider_allow_hosts == ["*"] == Settings().webhook_allow_hosts


def test_the_rule_names_why_an_address_is_internal() -> None:
    reasons = {
        "127.0.0.1": "loopback",
        "169.254.169.254": "cloud metadata",
        "100.100.100.200": "100.64.0.0/10",
        "fec0::1": "site-local",
        "224.0.0.1": "multicast",
        "2002:7f00:1::": "6to4 form of 127.0.0.1, a loopback",
        "64:ff9b::7f00:1": "NAT64 form of 127.0.0.1",
    }
    for address, reason in reasons.items():
        assert reason in (internal_reason(ipaddress.ip_address(address)) or ""), address
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"):
        assert is_public(ipaddress.ip_address(address)), address
