"""The dashboard in headless Chromium (Debian's ``chromium`` driven by Playwright) against the served app.

Every page is loaded at a laptop and a phone size, with no console error, and
screenshotted under ``tests/.artifacts/screenshots/`` (``REHEARSAL_SCREENSHOTS``
moves them). The experiments are real: runs of the served app through its REST
API, a judge run, and a scheduled experiment fired three times on Prefect.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.schema import Progress
from engine.store import utcnow
from service.web._auth import COOKIE
from tests.conftest import REPO
from tests.service.api.conftest import LIVE, PROJECT, Served, Uvicorn, body_routing_only

CHROMIUM = Path(os.environ.get("REHEARSAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("REHEARSAL_SCREENSHOTS", REPO / "tests" / ".artifacts" / "screenshots"))
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
API = "/manage/v1"

try:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian's browser)"
    ),
]


def api_get(served: Served, path: str, key: str | None = None) -> Any:
    answer = served.client.get(path, headers=served.headers(key))
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def api_post(served: Served, path: str, body: Any = None, key: str | None = None, status: int = 201) -> Any:
    answer = served.client.post(path, json=body, headers=served.headers(key))
    assert answer.status_code == status, answer.text
    return answer.json()["data"]


# --------------------------------------------------------------------------- the world the pages show
@dataclass
class World:
    """Real objects of the served app, and the pages that show them."""

    with_responses: dict[str, Any]
    routing_only: dict[str, Any]
    judge_run: dict[str, Any]
    schedule: dict[str, Any]
    signal_key: str
    pages: dict[str, str] = field(default_factory=dict)


def _schedule_body() -> dict[str, Any]:
    """A schedule of proj_live whose cost criterion fails (the candidate is cheaper), so it raises a signal."""
    return {
        "projectId": LIVE,
        "name": "nightly gpt-4o-mini check",
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "cronExpression": "0 3 * * *",
        "windowHours": 24,
        "hypothesis": "Moving everything to gpt-4o-mini keeps latency and errors where they are.",
        "successCriteria": {
            "logic": "and",
            "min_sample_size": 100,
            "predicates": [
                {"metric": "cost_delta_pct", "op": "gte", "value": 0},
                {"metric": "latency_p95_delta_pct", "op": "lte", "value": 25},
                {"metric": "error_rate_delta_pct", "op": "lte", "value": 50},
            ],
        },
    }


def _fired(served: Served, schedule_id: str, experiment_id: str) -> dict[str, Any]:
    """Wait for a fire's run, its verdict and the schedule's bookkeeping (the flow's last steps)."""
    experiment = served.wait(f"{API}/experiments/{experiment_id}", key=served.live_key)
    deadline = time.monotonic() + 90
    while (
        api_get(served, f"{API}/scheduled_experiments/{schedule_id}", served.live_key)["last_experiment_id"]
        != experiment_id
        or experiment["verdict"] is None
    ):
        assert time.monotonic() < deadline, "the fire's verdict never landed"
        time.sleep(0.2)
        experiment = api_get(served, f"{API}/experiments/{experiment_id}", served.live_key)
    return experiment


@pytest.fixture(scope="module")
def world(served: Served, finished_with_responses: dict[str, Any]) -> World:
    exp_id = finished_with_responses["id"]
    routing = api_post(
        served,
        f"{API}/experiments",
        body_routing_only(name="route everything to gpt-4o-mini", hypothesis="Cuts cost by ~80% without more errors."),
    )
    judge = api_post(
        served,
        f"{API}/experiments/{exp_id}/judge",
        {"stratification": {"high": 6, "mild": 6, "major": 6}, "spendCapUsd": 1},
    )
    schedule = api_post(served, f"{API}/scheduled_experiments", _schedule_body(), served.live_key)
    _fired(served, schedule["id"], schedule["last_experiment_id"])
    for _ in range(2):
        fire = api_post(served, f"{API}/scheduled_experiments/{schedule['id']}/run_now", None, served.live_key)
        _fired(served, schedule["id"], fire["id"])
    signals = api_get(served, f"{API}/signals?projectId={LIVE}", served.live_key)
    (signal,) = [s for s in signals if s["scheduled_experiment_id"] == schedule["id"]]
    routing = served.wait(f"{API}/experiments/{routing['id']}")
    judge = served.wait(f"{API}/experiments/{exp_id}/judge/{judge['id']}")
    assert routing["status"] == "completed" and judge["status"] == "complete", (routing, judge)
    # A pair that kept most of its wording, so its page shows a word-level diff rather than two unrelated texts.
    (reworded,) = api_get(served, f"{API}/experiments/{exp_id}/results?sort=similarity_asc&min_similarity=0.8&limit=1")
    world = World(finished_with_responses, routing, judge, schedule, signal["key"])
    world.pages = {
        "experiments": "/",
        "experiment": f"/experiments/{exp_id}",
        "routing-only": f"/experiments/{routing['id']}",
        "pair": f"/experiments/{exp_id}/pairs/{reworded['request_id']}",
        "judge": f"/experiments/{exp_id}/judge/{judge['id']}",
        "schedules": "/schedules",
        "schedule": f"/schedules/{schedule['id']}",
    }
    return world


# --------------------------------------------------------------------------- the browser
@dataclass
class Tab:
    """A page with everything its console and network said."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path, wait_until="networkidle")

    def shot(self, name: str, viewport: str, *, full_page: bool = True) -> Path:
        """Save a screenshot (dialogs: what the screen shows, as they sit in the viewport)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{viewport}-{name}.png"
        self.page.screenshot(path=str(target), full_page=full_page)
        return target


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _context(browser: Browser, live_server: Uvicorn, session: str | None, viewport: str = "laptop") -> BrowserContext:
    """A browser whose session cookie is ``session`` (a session id from ``served.session(key)``, or a bad value)."""
    context = browser.new_context(viewport=VIEWPORTS[viewport])  # type: ignore[arg-type]
    if session is not None:
        context.add_cookies([{"name": COOKIE, "value": session, "url": live_server.url}])
    return context


def _tab(context: BrowserContext, live_server: Uvicorn) -> Tab:
    tab = Tab(context.new_page(), live_server.url)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.errors.append(f"console: {message.text}")

    tab.page.on("console", console)
    tab.page.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
    tab.page.on("requestfailed", lambda request: tab.errors.append(f"request failed: {request.url}"))
    return tab


@pytest.fixture
def signed_in(browser: Browser, live_server: Uvicorn, served: Served) -> Iterator[Tab]:
    """A laptop-sized tab signed in with proj_abc's key (through the sign-in form)."""
    context = _context(browser, live_server, None)
    tab = _tab(context, live_server)
    tab.go("/")
    tab.page.fill("#key", served.key)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(live_server.url + "/")
    yield tab
    assert tab.errors == []
    context.close()


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_every_page_loads_without_console_errors(
    browser: Browser, live_server: Uvicorn, served: Served, world: World, viewport: str
) -> None:
    shots = []
    abc = ("experiments", "experiment", "routing-only", "pair", "judge")
    for key, names in ((served.key, abc), (served.live_key, ("schedules", "schedule")), (None, ())):
        context = _context(browser, live_server, served.session(key) if key else None, viewport)
        tab = _tab(context, live_server)
        for name in names:
            answer = tab.go(world.pages[name])
            assert answer is not None and answer.status == 200, (name, answer and answer.status)
            assert tab.page.url == live_server.url + world.pages[name], f"{name} redirected to {tab.page.url}"
            assert tab.page.locator("main h1").count() == 1
            shots.append(tab.shot(name, viewport))
            if name == "experiment":
                tab.page.click("#worst-pairs a[data-drawer]")
                expect(tab.page.locator("dialog#pair-1")).to_be_visible()
                shots.append(tab.shot("experiment-drawer", viewport, full_page=False))
                tab.page.keyboard.press("Escape")
                tab.page.click("button[data-open=promote-dialog]")
                expect(tab.page.locator("dialog#promote-dialog")).to_be_visible()
                shots.append(tab.shot("experiment-promote", viewport, full_page=False))
        if key is None:
            tab.go("/login")
            shots.append(tab.shot("login", viewport))
        assert tab.errors == [], tab.errors
        context.close()
    assert all(s.stat().st_size > 0 for s in shots)


def test_histogram_bars_match_the_api_and_follow_the_threshold(signed_in: Tab, served: Served, world: World) -> None:
    exp_id = world.with_responses["id"]
    api = api_get(served, f"{API}/experiments/{exp_id}/similarity-histogram")
    page = signed_in.page
    signed_in.go(world.pages["experiment"])
    bars = page.locator("#histogram rect.bar")
    assert bars.count() == len(api["buckets"]) == 10
    assert [int(c) for c in bars.evaluate_all("els => els.map(e => e.dataset.count)")] == [
        b["count"] for b in api["buckets"]
    ]
    assert page.locator("#histogram text.count").all_text_contents() == [str(b["count"]) for b in api["buckets"]]
    heights = bars.evaluate_all("els => els.map(e => e.getBBox().height)")
    tallest = max(b["count"] for b in api["buckets"])
    for bucket, height in zip(api["buckets"], heights, strict=True):  # drawn to scale
        assert height == pytest.approx(max(heights) * bucket["count"] / tallest, abs=0.5)
    expect(page.locator("#headline")).to_have_text(api["headline"])

    page.locator("#threshold").fill("0.7")  # a range input: fill sets it and fires change
    page.wait_for_url(re.compile(r"threshold=0\.70?#similarity$"))
    at_070 = api_get(served, f"{API}/experiments/{exp_id}/similarity-histogram?threshold=0.7")
    expect(page.locator("#headline")).to_have_text(at_070["headline"])
    assert page.locator("#histogram rect.bar.side-above").count() == 3  # [0.7, 0.8), [0.8, 0.9), [0.9, 1.0]


def test_the_diff_drawer_opens_on_a_worst_pair(signed_in: Tab, served: Served, world: World) -> None:
    exp_id = world.with_responses["id"]
    (worst,) = api_get(served, f"{API}/experiments/{exp_id}/results?sort=similarity_asc&limit=1")
    pair = api_get(served, f"{API}/experiments/{exp_id}/results/{worst['request_id']}")
    page = signed_in.page
    signed_in.go(world.pages["experiment"])
    drawer = page.locator("dialog#pair-1")
    expect(drawer).to_be_hidden()
    page.locator("#worst-pairs tbody tr").first.get_by_role("link", name="Compare").click()
    expect(drawer).to_be_visible()
    assert page.url.endswith(world.pages["experiment"])  # the drawer opened in place
    expect(drawer).to_contain_text(worst["request_id"])
    texts = drawer.locator(".difftext").all_text_contents()
    assert texts == [pair["baseline_text"], pair["candidate_text"]]
    if pair["baseline_text"] != pair["candidate_text"]:
        assert drawer.locator("del, ins").count() > 0
    facts = drawer.locator("dl.facts").all_inner_texts()
    assert "Cost" in facts[0] and "Latency" in facts[1]
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()


def test_promote_asks_then_creates_a_routing_config_version(signed_in: Tab, served: Served, world: World) -> None:
    exp_id = world.with_responses["id"]
    before = api_get(served, f"{API}/projects/{PROJECT}/routing-configs")
    page = signed_in.page
    signed_in.go(world.pages["experiment"])
    page.click("button[data-open=promote-dialog]")
    dialog = page.locator("dialog#promote-dialog")
    expect(dialog).to_be_visible()
    page.click("dialog#promote-dialog button[data-close]")  # "Not now" writes nothing
    expect(dialog).to_be_hidden()
    assert api_get(served, f"{API}/projects/{PROJECT}/routing-configs") == before

    page.click("button[data-open=promote-dialog]")
    page.click("#promote-confirm")
    page.wait_for_url(re.compile(r"promoted=1"))
    after = api_get(served, f"{API}/projects/{PROJECT}/routing-configs")
    assert len(after) == len(before) + 1
    (new,) = [v for v in after if v["id"] not in {b["id"] for b in before}]
    assert new["slug"] == "production" and new["source_experiment_id"] == exp_id
    assert new["config"] == world.with_responses["candidate_config"]
    expect(page.locator(".flash")).to_contain_text(f"production version {new['version']}")
    assert api_get(served, f"{API}/experiments/{exp_id}")["promoted_version"] == new["version"]


def test_a_running_experiment_shows_live_progress_and_can_be_cancelled(
    signed_in: Tab, served: Served, world: World
) -> None:
    # A run caught mid-flight: the store's record of a running experiment, moved along by hand below.
    source = served.svc.store.get_experiment(world.with_responses["id"])
    running = source.model_copy(
        update={
            "id": f"exp_{uuid.uuid4().hex[:24]}",
            "name": "caught mid-flight",
            "status": "running",
            "status_reason": None,
            "progress": Progress(done=12, total=81),
            "baseline_summary": None,
            "candidate_summary": None,
            "deltas": None,
            "similarity_summary": None,
            "promoted_version": None,
            "completed_at": None,
            "created_at": utcnow(),
        }
    )
    served.svc.store.put_experiment(running)
    page = signed_in.page
    signed_in.go(f"/experiments/{running.id}")
    expect(page.locator("[data-progress-text]")).to_have_text("12 / 81 pairs")
    page.evaluate("window.__notReloaded = true")
    served.svc.store.update_progress(running.id, done=40, total=81, spend_usd=0.0123)
    expect(page.locator("[data-progress-text]")).to_have_text("40 / 81 pairs", timeout=6000)
    assert page.locator("progress[data-progress-bar]").evaluate("p => [p.value, p.max]") == [40, 81]
    assert page.evaluate("window.__notReloaded") is True  # updated in place, not by a reload
    if signed_in.page.viewport_size and signed_in.page.viewport_size["width"] > 1000:
        signed_in.shot("experiment-running", "laptop")

    page.click("button[data-open=cancel-dialog]")
    page.click("#cancel-confirm")
    expect(page.locator(".pagehead .badge.st-cancelled")).to_be_visible()
    assert api_get(served, f"{API}/experiments/{running.id}")["status"] == "cancelled"
    expect(page.locator("button[data-open=cancel-dialog]")).to_have_count(0)


def test_signals_can_be_dismissed_and_snoozed(
    browser: Browser, live_server: Uvicorn, served: Served, world: World
) -> None:
    context = _context(browser, live_server, served.session(served.live_key))
    tab = _tab(context, live_server)
    tab.go(world.pages["schedule"])
    page = tab.page
    item = page.locator(f"#signals li[data-signal='{world.signal_key}']")
    expect(item).to_be_visible()
    assert page.locator("#criteria svg.sparkline").count() == 3
    assert page.locator("#criteria svg.sparkline").first.locator("circle").count() == 3  # three fires
    item.get_by_role("button", name="Dismiss").click()
    page.wait_for_load_state("networkidle")
    chips = page.locator(f"#signals li[data-signal='{world.signal_key}'] .chip")
    expect(chips.filter(has_text="dismissed")).to_be_visible()

    def signal() -> dict[str, Any]:
        (found,) = [
            s
            for s in api_get(served, f"{API}/signals?projectId={LIVE}&state=all", served.live_key)
            if s["key"] == world.signal_key
        ]
        return found

    assert signal()["dismissed"] is True
    item = page.locator(f"#signals li[data-signal='{world.signal_key}']")
    item.locator("select[name=hours]").select_option("24")
    item.get_by_role("button", name="Snooze").click()
    page.wait_for_load_state("networkidle")
    expect(chips.filter(has_text="snoozed until")).to_be_visible()
    assert signal()["snoozed_until"] is not None
    assert tab.errors == [], tab.errors
    context.close()


@pytest.mark.parametrize("cookie", [None, "rhs_not-a-real-session", "other-project"])
def test_a_bad_or_missing_key_sees_no_page(
    browser: Browser, live_server: Uvicorn, served: Served, world: World, cookie: str | None
) -> None:
    context = _context(browser, live_server, served.session(served.other_key) if cookie == "other-project" else cookie)
    tab = _tab(context, live_server)
    # Pages that answer with the path asked for (the sign-in form's "next", the 404's message) carry ids in it:
    # there the test looks for what only the objects know. Another project's lists may hold the same names.
    ids = [world.with_responses["id"], world.routing_only["id"], world.judge_run["id"], world.schedule["id"]]
    contents = [world.with_responses["name"], world.routing_only["name"], world.schedule["name"], "agreement (≥"]
    for name, path in world.pages.items():
        answer = tab.go(path)
        assert answer is not None
        body = tab.page.content()
        if cookie == "other-project" and name in ("experiments", "schedules"):  # its own project's lists
            assert answer.status == 200
            assert not any(i in body for i in ids), name
            continue
        if cookie == "other-project":
            assert answer.status == 404, (name, answer.status)
            assert tab.page.locator("main h1").inner_text() == "Not found"
        else:
            assert tab.page.url.startswith(live_server.url + "/login"), (name, tab.page.url)
            assert tab.page.locator("#key").is_visible()
        assert not any(secret in body for secret in contents), name
    if cookie not in (None, "other-project"):
        assert not [c for c in context.cookies() if c["name"] == COOKIE]  # the bad cookie was dropped
    if cookie is None:
        tab.go(world.pages["judge"])
        tab.page.fill("#key", "rk_wrong")
        tab.page.click("button[type=submit]")
        expect(tab.page.locator(".alert.bad")).to_contain_text("not valid")
        tab.page.fill("#key", served.key)
        tab.page.click("button[type=submit]")
        tab.page.wait_for_url(live_server.url + world.pages["judge"])  # back where it was going
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
        assert all(served.key not in c["value"] for c in cookies.values())  # a session id, never the key
    context.close()
