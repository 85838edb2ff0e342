"""Cron arithmetic, rolling windows, cost projection and webhook signatures (pure)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.schedules import check_cron, fire_window, next_fires, runs_per_month
from engine.webhooks import backoff_s, check_target, sign, verify
from tests.loopback import dns

UTC = dt.UTC


@pytest.mark.parametrize(
    ("cron", "runs"),
    [("0 * * * *", 720), ("0 9 * * *", 30), ("0 0 * * *", 30), ("0 9 * * 1", 4), ("*/15 * * * *", 2880)],
)
def test_runs_per_month_of_the_guides_presets(cron: str, runs: int) -> None:
    assert runs_per_month(cron) == runs


@pytest.mark.parametrize("bad", ["0 9 * *", "0 9 * * * *", "61 9 * * *", "0 25 * * *", "every day", ""])
def test_only_five_field_crons_are_accepted(bad: str) -> None:
    with pytest.raises(ValueError, match="cron expression"):
        check_cron(bad)


def test_next_fires_are_strictly_after_now_in_utc() -> None:
    at = dt.datetime(2026, 4, 20, 9, 0, tzinfo=UTC)
    assert next_fires("0 9 * * *", at, 2) == [at + dt.timedelta(days=1), at + dt.timedelta(days=2)]
    assert next_fires("0 9 * * *", at - dt.timedelta(seconds=1)) == [at]


def test_a_fire_replays_the_hours_before_it() -> None:
    fire = dt.datetime(2026, 4, 20, 9, 0, tzinfo=UTC)
    assert fire_window(fire, 24) == (fire - dt.timedelta(hours=24), fire)


def test_signatures_verify_and_tampering_or_old_timestamps_fail() -> None:
    body = b'{"type":"experiment.completed"}'
    signature = sign("whsec_x", 1_800_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 71
    assert verify("whsec_x", body, "1800000000", signature, now=1_800_000_010)
    assert not verify("whsec_x", body + b" ", "1800000000", signature, now=1_800_000_010)
    assert not verify("whsec_y", body, "1800000000", signature, now=1_800_000_010)
    assert not verify("whsec_x", body, "1800000000", signature, now=1_800_000_000 + 3600)  # a replay
    assert not verify("whsec_x", body, "soon", signature)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff_s(40) == 6 * 3600


def test_targets_must_be_allowed_and_internal_hosts_listed_explicitly() -> None:
    check_target("https://hooks.example.com/x", ["*.example.com"], resolve=dns({"hooks.example.com": ["10.0.0.4"]}))
    check_target("http://127.0.0.1:9000/hook", ["127.0.0.1"])
    check_target("https://93.184.216.34/hook", ["*"])
    for url, allow in [
        ("http://127.0.0.1:9000/hook", ["*"]),
        ("http://10.0.0.5/hook", ["*"]),
        ("http://169.254.169.254/latest/meta-data", ["*"]),
        ("https://evil.example.org/x", ["*.example.com"]),
        ("https://example.com/x", ["*.example.com"]),
    ]:
        with pytest.raises(ConfigError) as caught:
            check_target(url, allow)
        assert caught.value.param == "url"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*/,-? LWJANFEBMONSUT#", max_size=200))
def test_any_cron_is_accepted_or_refused_quickly_and_listings_stay_cheap(expr: str) -> None:
    started = time.perf_counter()
    try:
        normalised = check_cron(expr)
    except ValueError:
        pass
    else:
        runs_per_month(normalised)
    assert time.perf_counter() - started < 1.0, expr
