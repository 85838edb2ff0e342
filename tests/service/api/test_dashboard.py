"""The dashboard over HTTP (no browser): sign-in, scope, CSRF on the buttons, error pages and headers.

``test_dashboard_browser.py`` drives the same pages in Chromium.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from service.web._auth import COOKIE, LEGACY_COOKIE, csrf_token
from tests.service.api.conftest import PROJECT, Served

API = "/manage/v1"
ORIGIN = {"Origin": "http://testserver"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def web(served: Served) -> Iterator[TestClient]:
    """A client of the same app with its own cookie jar (no lifespan: the served client runs that)."""
    client = TestClient(served.client.app, base_url="http://testserver", follow_redirects=False)
    yield client
    client.close()


def signed(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={session_id}"}


@dataclass
class SignIn:
    """A browser's sign-in: the cookie it sends and the token its forms carry."""

    session_id: str
    csrf: str

    @property
    def cookie(self) -> dict[str, str]:
        return signed(self.session_id)


def sign_in(served: Served, key: str | None = None) -> SignIn:
    session_id = served.session(key)
    return SignIn(session_id, csrf_token(session_id))


def pages(experiment_id: str) -> list[str]:
    return ["/", f"/experiments/{experiment_id}", "/schedules", f"/experiments/{experiment_id}/pairs/r1"]


def test_sign_in_keeps_a_session_not_the_key_in_a_strict_http_only_cookie(web: TestClient, served: Served) -> None:
    answer = web.post("/login", content=f"key={served.key}&next=/schedules", headers=FORM | ORIGIN)
    assert answer.status_code == 303 and answer.headers["location"] == "/schedules"
    cookie = answer.headers["set-cookie"]
    session_id = web.cookies[COOKIE]
    assert cookie.startswith(f"{COOKIE}={session_id};") and session_id != served.key
    assert served.key not in cookie and served.key.split("_", 2)[2] not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https adds it
    web.cookies.clear()
    assert web.get("/schedules", headers=signed(session_id)).status_code == 200
    conn = sqlite3.connect(served.home / "rehearsal.db")  # the store keeps only the session's hash
    try:
        hashes = [r[0] for r in conn.execute("SELECT id_hash FROM sessions")]
    finally:
        conn.close()
    assert hashes and session_id not in hashes

    refused = web.post("/login", content="key=rhk_nope", headers=FORM | ORIGIN)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "not valid" in refused.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_sign_in_never_redirects_off_site(web: TestClient, served: Served, target: str) -> None:
    answer = web.post("/login", content=f"key={served.key}&next={quote(target)}", headers=FORM | ORIGIN)
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_sign_in_from_another_site_is_refused(web: TestClient, served: Served) -> None:
    answer = web.post("/login", content=f"key={served.key}", headers=FORM | {"Origin": "https://evil.example"})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


@pytest.mark.parametrize("cookie", [None, "rhs_not-a-session"])
def test_pages_without_a_valid_key_redirect_to_sign_in(
    web: TestClient, finished_with_responses: dict[str, Any], cookie: str | None
) -> None:
    headers = signed(cookie) if cookie else {}
    for path in pages(finished_with_responses["id"]):
        answer = web.get(path, headers=headers)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/login?next={quote(path, safe='/')}"
        assert finished_with_responses["name"] not in answer.text
        if cookie:  # a bad cookie is dropped
            assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
    progress = web.get(f"/experiments/{finished_with_responses['id']}/progress.json", headers=headers)
    assert progress.status_code == 401 and progress.json()["error"]["status"] == 401


def test_another_projects_objects_are_404_pages(
    web: TestClient, served: Served, finished_with_responses: dict[str, Any]
) -> None:
    exp_id = finished_with_responses["id"]
    other = sign_in(served, served.other_key).cookie
    for path in (f"/experiments/{exp_id}", f"/experiments/{exp_id}/judge/jr_x", "/schedules/sched_nope"):
        answer = web.get(path, headers=other)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert finished_with_responses["name"] not in answer.text
    progress = web.get(f"/experiments/{exp_id}/progress.json", headers=other)
    assert progress.status_code == 404 and progress.headers["content-type"] == "application/json"
    listed = web.get("/", headers=other)
    assert listed.status_code == 200 and exp_id not in listed.text
    assert web.get(f"/experiments/{exp_id}", headers=sign_in(served, served.admin_key).cookie).status_code == 200


def test_button_posts_need_the_forms_token_and_this_sites_origin(
    web: TestClient, served: Served, finished_with_responses: dict[str, Any]
) -> None:
    exp_id = finished_with_responses["id"]
    versions = len(
        served.client.get(f"{API}/projects/{PROJECT}/routing-configs", headers=served.headers()).json()["data"]
    )
    mine = sign_in(served)
    token, cookie = mine.csrf, mine.cookie
    path = f"/experiments/{exp_id}/promote"
    for headers, body in (
        (cookie | FORM | ORIGIN, ""),  # no token
        (cookie | FORM | ORIGIN, "csrf=" + sign_in(served).csrf),  # another sign-in's token (same key)
        (cookie | FORM | ORIGIN, "csrf=" + csrf_token(served.key)),  # a token made from the key itself
        (cookie | FORM | {"Origin": "https://evil.example"}, f"csrf={token}"),  # another site
        (cookie | FORM, f"csrf={token}"),  # no Origin or Referer at all
        (cookie | {"Content-Type": "application/json"} | ORIGIN, f'{{"csrf": "{token}"}}'),
    ):
        answer = web.post(path, content=body, headers=headers)
        assert answer.status_code == 403, (headers, body)
    assert web.post(path, content=f"csrf={token}", headers=FORM | ORIGIN).status_code == 303  # no cookie: sign in
    after = served.client.get(f"{API}/projects/{PROJECT}/routing-configs", headers=served.headers()).json()["data"]
    assert len(after) == versions

    referer = {"Referer": f"http://testserver/experiments/{exp_id}"}
    answer = web.post(path, content=f"csrf={token}", headers=cookie | FORM | referer)
    assert answer.status_code == 303 and answer.headers["location"] == f"/experiments/{exp_id}?promoted=1"
    after = served.client.get(f"{API}/projects/{PROJECT}/routing-configs", headers=served.headers()).json()["data"]
    assert len(after) == versions + 1


def test_service_errors_become_pages(web: TestClient, served: Served, finished_with_responses: dict[str, Any]) -> None:
    exp_id = finished_with_responses["id"]
    mine = sign_in(served)
    token = mine.csrf
    cancel = web.post(f"/experiments/{exp_id}/cancel", content=f"csrf={token}", headers=mine.cookie | FORM | ORIGIN)
    assert cancel.status_code == 409 and "cannot be cancelled" in cancel.text  # core.cancel_experiment's rule
    bad = web.get(f"/experiments/{exp_id}?threshold=2", headers=mine.cookie)
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
    snooze = web.post(
        "/signals/experiment-verdict%3Asched_nope/snooze",
        content=f"csrf={token}&hours=5",
        headers=mine.cookie | FORM | ORIGIN,
    )
    assert snooze.status_code == 400 and "hours must be one of" in snooze.text


def test_pages_carry_a_strict_content_security_policy_and_are_not_cached(
    web: TestClient, served: Served, finished_with_responses: dict[str, Any]
) -> None:
    answer = web.get(f"/experiments/{finished_with_responses['id']}", headers=sign_in(served).cookie)
    assert answer.status_code == 200
    assert f"genai-prices {finished_with_responses['pricing']['version']} in force on" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["cache-control"] == "no-store" and answer.headers["x-frame-options"] == "DENY"
    assert "<script>" not in answer.text and " style=" not in answer.text and "http://" not in answer.text
    assert web.get("/static/dashboard.css").status_code == 200 and web.get("/static/dashboard.js").status_code == 200


def test_usage_far_off_the_logs_is_a_warning_over_the_deltas(
    web: TestClient, served: Served, finished_with_responses: dict[str, Any]
) -> None:
    # The simulator's prompt tokens are its own count of the text, far under the synthetic logs' input_tokens.
    (note,) = [n for n in finished_with_responses["notes"] if n.startswith("Suspicious usage:")]
    answer = web.get(f"/experiments/{finished_with_responses['id']}", headers=sign_in(served).cookie)
    assert answer.status_code == 200
    page = answer.text
    assert page.count("Suspicious usage:") == 1  # a warning, not repeated among the notes
    warning = page.index('<p class="alert warn usage-warning">Suspicious usage:')
    assert warning < page.index('id="deltas"')
    assert "on the provider's usage (see warning)" in page
    assert finished_with_responses["estimate_error"]["calls"] > 0  # REST carries the estimate error too
    assert note


def test_sign_out_ends_the_session_so_a_replayed_cookie_is_dead(web: TestClient, served: Served) -> None:
    mine, other = sign_in(served), sign_in(served)
    assert web.get("/", headers=mine.cookie).status_code == 200
    answer = web.post("/logout", content=f"csrf={mine.csrf}", headers=mine.cookie | FORM | ORIGIN)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
    replayed = web.get("/schedules", headers=mine.cookie)  # a copy of the cookie kept from before
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login?next=/schedules"
    assert web.get("/login", headers=mine.cookie).status_code == 200  # the sign-in form, not a way in
    again = web.post("/logout", content=f"csrf={mine.csrf}", headers=mine.cookie | FORM | ORIGIN)
    assert again.status_code == 303 and again.headers["location"].startswith("/login?next=")
    assert web.get("/", headers=other.cookie).status_code == 200  # the key's other sign-ins go on


def test_an_old_raw_key_cookie_signs_no_one_in_and_is_dropped(web: TestClient, served: Served) -> None:
    for cookie in ({"Cookie": f"{LEGACY_COOKIE}={served.key}"}, signed(served.key)):
        answer = web.get("/", headers=cookie)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), cookie
    dropped = web.get("/", headers={"Cookie": f"{LEGACY_COOKIE}={served.key}"}).headers.get_list("set-cookie")
    assert any(c.startswith(f'{LEGACY_COOKIE}="";') for c in dropped)


def test_the_dashboard_stays_out_of_the_api_schema(served: Served) -> None:
    paths = served.client.get("/openapi.json").json()["paths"]
    assert all(p.startswith("/manage/v1") or p == "/healthz" for p in paths), sorted(paths)


def test_a_revoked_key_loses_the_dashboard_at_once(web: TestClient, served: Served) -> None:
    created = served.client.post(f"{API}/keys", json={"projectIds": [PROJECT]}, headers=served.headers())
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    signed_in = web.post("/login", content=f"key={key['key']}", headers=FORM | ORIGIN)
    assert signed_in.status_code == 303
    session_id = web.cookies[COOKIE]
    web.cookies.clear()
    assert web.get("/", headers=signed(session_id)).status_code == 200
    revoked = served.client.post(f"{API}/keys/{key['id']}/revoke", headers=served.headers())
    assert revoked.status_code == 200, revoked.text
    answer = web.get("/", headers=signed(session_id))
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
