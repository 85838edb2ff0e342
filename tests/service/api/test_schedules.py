"""Scheduled experiments on Prefect deployments: cron, pause, run now, verdicts, signals and signed webhooks."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import CronSchedule
from prefect.states import Scheduled

from engine.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.service.api.conftest import LIVE, Served

API = "/manage/v1/scheduled_experiments"


def guide_body(**extra: Any) -> dict[str, Any]:
    """The guide's routing-only schedule, for our live project."""
    return {
        "projectId": LIVE,
        "name": "daily gpt-4o-mini regression check",
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "cronExpression": "0 9 * * *",
        "windowHours": 24,
        "mode": "routing_only",
        "hypothesis": "My current routing stays within its established cost, latency, and error baselines.",
        "successCriteria": {
            "logic": "and",
            "min_sample_size": 100,
            "predicates": [
                {"metric": "cost_delta_pct", "op": "lte", "value": 20},
                {"metric": "latency_p95_delta_pct", "op": "lte", "value": 25},
                {"metric": "error_rate_delta_pct", "op": "lte", "value": 50},
            ],
        },
        **extra,
    }


def criteria(passing: bool) -> dict[str, Any]:
    """A criterion on cost that this candidate (much cheaper) passes or fails at will."""
    return {"logic": "and", "predicates": [{"metric": "cost_delta_pct", "op": "lte" if passing else "gt", "value": 0}]}


def create(served: Served, **extra: Any) -> dict[str, Any]:
    answer = served.client.post(API, json=guide_body(**extra), headers=served.headers(served.live_key))
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def get(served: Served, path: str) -> dict[str, Any]:
    answer = served.client.get(path, headers=served.headers(served.live_key))
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def finished(served: Served, experiment_id: str) -> dict[str, Any]:
    """The fire's experiment once its verdict, signal and webhooks are done (the flow's last steps)."""
    experiment = served.wait(f"/manage/v1/experiments/{experiment_id}", key=served.live_key)
    schedule_id = experiment["scheduled_experiment_id"]
    deadline = time.monotonic() + 60
    while get(served, f"{API}/{schedule_id}")["last_experiment_id"] != experiment_id or (
        experiment["status"] == "completed" and experiment["verdict"] is None
    ):
        assert time.monotonic() < deadline, "the fire's verdict never landed"
        time.sleep(0.2)
        experiment = get(served, f"/manage/v1/experiments/{experiment_id}")
    return experiment


def fire(served: Served, schedule_id: str) -> dict[str, Any]:
    answer = served.client.post(f"{API}/{schedule_id}/run_now", headers=served.headers(served.live_key))
    assert answer.status_code == 201, answer.text
    return finished(served, answer.json()["data"]["id"])


def patch(served: Served, schedule_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = served.client.patch(f"{API}/{schedule_id}", json=body, headers=served.headers(served.live_key))
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_create_makes_a_cron_deployment_and_runs_once_with_a_verdict(served: Served) -> None:
    schedule = create(served)
    assert schedule["status"] == "active" and schedule["cron_expression"] == "0 9 * * *"
    assert schedule["runs_per_month"] == 30 and schedule["monthly_cost_projection_usd"] is None
    now = dt.datetime.now(dt.UTC)
    next_run = dt.datetime.fromisoformat(schedule["next_run_at"])
    assert next_run.hour == 9 and next_run.minute == 0 and now < next_run <= now + dt.timedelta(days=1)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(UUID(schedule["deployment_id"]))
    assert isinstance(deployment.schedules[0].schedule, CronSchedule)
    assert deployment.schedules[0].schedule.cron == "0 9 * * *" and deployment.schedules[0].schedule.timezone == "UTC"
    assert deployment.parameters == {"scheduled_experiment_id": schedule["id"]}

    experiment = finished(served, schedule["last_experiment_id"])
    assert experiment["status"] == "completed" and experiment["scheduled_experiment_id"] == schedule["id"]
    window = dt.datetime.fromisoformat(experiment["window_end"]) - dt.datetime.fromisoformat(experiment["window_start"])
    assert window == dt.timedelta(hours=24)
    verdict = experiment["verdict"]
    assert verdict["verdict"] in ("pass", "fail", "inconclusive")
    assert [p["metric"] for p in verdict["predicates"]] == [
        "cost_delta_pct",
        "latency_p95_delta_pct",
        "error_rate_delta_pct",
    ]
    assert all({"metric", "op", "value", "observed", "status"} <= set(p) for p in verdict["predicates"])
    again = get(served, f"{API}/{schedule['id']}")
    assert again["last_verdict"]["verdict"] == verdict["verdict"] and again["last_run_at"]


def test_pause_resume_and_edits_in_prefect_read_back(served: Served) -> None:
    schedule = create(served, successCriteria=None)
    path = f"{API}/{schedule['id']}"
    paused = served.client.post(f"{path}/pause", headers=served.headers(served.live_key)).json()["data"]
    assert paused["status"] == "paused" and paused["next_run_at"] is None
    deployment_id = UUID(schedule["deployment_id"])
    with get_client(sync_client=True) as client:
        assert client.read_deployment(deployment_id).paused
        client.resume_deployment(deployment_id)  # as in the Prefect UI
        assert get(served, path)["status"] == "active"
        (entry,) = client.read_deployment_schedules(deployment_id)
        client.update_deployment_schedule(
            deployment_id, entry.id, schedule=CronSchedule(cron="30 * * * *", timezone="UTC")
        )
    edited = get(served, path)
    assert edited["cron_expression"] == "30 * * * *" and dt.datetime.fromisoformat(edited["next_run_at"]).minute == 30
    assert patch(served, schedule["id"], {"cronExpression": "0 0 * * 1"})["cron_expression"] == "0 0 * * 1"
    with get_client(sync_client=True) as client:
        (entry,) = client.read_deployment_schedules(deployment_id)
    assert isinstance(entry.schedule, CronSchedule) and entry.schedule.cron == "0 0 * * 1"
    listed = served.client.get(f"{API}?projectId={LIVE}&status=active", headers=served.headers(served.live_key))
    assert schedule["id"] in [s["id"] for s in listed.json()["data"]]

    deleted = served.client.delete(path, headers=served.headers(served.live_key))
    assert deleted.status_code == 200 and deleted.json()["data"]["status"] == "deleted"
    assert served.client.get(path, headers=served.headers(served.live_key)).status_code == 404
    assert get(served, f"/manage/v1/experiments/{schedule['last_experiment_id']}")["id"]  # past runs stay


def test_a_fire_replays_the_window_ending_at_its_scheduled_time(served: Served) -> None:
    schedule = create(served, windowHours=6, successCriteria=None)
    fire_time = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    with get_client(sync_client=True) as client:
        client.create_flow_run_from_deployment(
            UUID(schedule["deployment_id"]), state=Scheduled(scheduled_time=fire_time)
        )
    deadline = time.monotonic() + 120
    while True:
        runs = get_runs(served, schedule["id"])
        late = [r for r in runs if r["scheduled_for"] and dt.datetime.fromisoformat(r["scheduled_for"]) == fire_time]
        if late and late[0]["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, "the scheduled fire never ran"
        time.sleep(0.3)
    assert dt.datetime.fromisoformat(late[0]["window_end"]) == fire_time
    assert dt.datetime.fromisoformat(late[0]["window_start"]) == fire_time - dt.timedelta(hours=6)


def get_runs(served: Served, schedule_id: str) -> list[dict[str, Any]]:
    answer = served.client.get(f"{API}/{schedule_id}/runs", headers=served.headers(served.live_key))
    assert answer.status_code == 200, answer.text
    runs: list[dict[str, Any]] = answer.json()["data"]
    return runs


class Receiver:
    """A loopback webhook receiver that fails its first ``fail_first`` deliveries with a 500."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.received) < receiver.fail_first else 204
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Delivered (2xx) events of one type, in order."""
        out = []
        for _, body, status in self.received:
            item = json.loads(body)
            if status < 300 and item["type"] == kind:
                out.append(item)
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


def test_signals_and_signed_webhooks_follow_the_verdicts(served: Served, receiver: Receiver) -> None:
    hook = served.client.post(
        "/manage/v1/webhooks",
        json={
            "projectId": LIVE,
            "url": receiver.url,
            "events": ["experiment.completed", "experiment.regression_detected"],
        },
        headers=served.headers(served.live_key),
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["data"]["secret"]
    assert secret not in served.client.get("/manage/v1/webhooks", headers=served.headers(served.live_key)).text

    schedule = create(served, successCriteria=criteria(passing=True))  # fire 1 (at create): pass
    sid = schedule["id"]
    key = f"experiment-verdict:{sid}"
    assert finished(served, schedule["last_experiment_id"])["verdict"]["verdict"] == "pass"
    patch(served, sid, {"successCriteria": criteria(passing=False)})
    assert fire(served, sid)["verdict"]["verdict"] == "fail"  # fire 2: breach
    signals = get_signals(served)
    assert signals[key]["state"] == "open" and signals[key]["severity"] == "warn"
    dismissed = served.client.post(f"/manage/v1/signals/{key}/dismiss", headers=served.headers(served.live_key))
    assert dismissed.status_code == 200 and dismissed.json()["data"]["dismissed"] is True
    assert fire(served, sid)["verdict"]["verdict"] == "fail"  # fire 3: still breached
    assert get_signals(served)[key]["dismissed"] is True and get_signals(served)[key]["occurrences"] == 2
    patch(served, sid, {"successCriteria": criteria(passing=True)})
    assert fire(served, sid)["verdict"]["verdict"] == "pass"  # fire 4: recovered
    assert key not in get_signals(served)
    patch(served, sid, {"successCriteria": criteria(passing=False)})
    assert fire(served, sid)["verdict"]["verdict"] == "fail"  # fire 5: breached anew
    reopened = get_signals(served)[key]
    assert reopened["state"] == "open" and reopened["dismissed"] is False
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    snoozed = served.client.post(
        f"/manage/v1/signals/{key}/snooze", json={"until": until}, headers=served.headers(served.live_key)
    )
    assert snoozed.status_code == 200
    assert fire(served, sid)["verdict"]["verdict"] == "fail"  # fire 6: the snooze holds
    assert get_signals(served)[key]["snoozed_until"] is not None

    deadline = time.monotonic() + 60
    while len(receiver.events("experiment.completed")) < 6:
        assert time.monotonic() < deadline, f"got {len(receiver.events('experiment.completed'))} completed events"
        time.sleep(0.25)
    breaches = [
        e for e in receiver.events("experiment.regression_detected") if e["data"]["scheduled_experiment_id"] == sid
    ]
    assert [e["data"]["metric"] for e in breaches] == ["cost_delta_pct", "cost_delta_pct"]  # fires 2 and 5 only
    assert breaches[0]["data"]["signal_key"] == key and breaches[0]["data"]["severity"] == "warn"
    assert [status for _, _, status in receiver.received[:3]] == [500, 500, 204]  # retried after failures
    for headers, body, _ in receiver.received:
        assert verify(secret, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
        assert not verify(secret, body.replace(b'"', b"'", 1), headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    completed = receiver.events("experiment.completed")[-1]["data"]
    assert (
        completed["verdict"] == "fail" and completed["request_count"] > 0 and completed["deltas"]["cost_delta_pct"] < 0
    )

    deliveries = served.client.get(
        f"/manage/v1/webhooks/{hook.json()['data']['id']}/deliveries", headers=served.headers(served.live_key)
    ).json()["data"]
    assert deliveries and all(d["status"] == "delivered" for d in deliveries)
    assert max(d["attempts"] for d in deliveries) == 3
    replayed = served.client.post(
        f"/manage/v1/webhooks/{hook.json()['data']['id']}/deliveries/{deliveries[0]['id']}/replay",
        headers=served.headers(served.live_key),
    )
    assert replayed.status_code == 200 and replayed.json()["data"]["status"] == "delivered"
    assert replayed.json()["data"]["event_id"] == deliveries[0]["event_id"]


def get_signals(served: Served) -> dict[str, dict[str, Any]]:
    answer = served.client.get(f"/manage/v1/signals?projectId={LIVE}", headers=served.headers(served.live_key))
    assert answer.status_code == 200, answer.text
    return {s["key"]: s for s in answer.json()["data"]}


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/hook",
        "http://[::1]:9000/hook",
        "http://127.0.0.2/hook",
        "http://[::ffff:127.0.0.2]/hook",
        "https://93.184.216.34/hook",  # public, but the operator's list has no "*"
    ],
)
def test_webhooks_outside_the_operators_allow_list_are_refused(served: Served, url: str) -> None:
    """The served env lists only 127.0.0.1 (REHEARSAL_WEBHOOK_ALLOW_HOSTS), for the loopback receivers."""
    headers = served.headers(served.live_key)
    before = served.client.get("/manage/v1/webhooks", headers=headers).json()["data"]
    answer = served.client.post("/manage/v1/webhooks", json={"projectId": LIVE, "url": url}, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "url" and "REHEARSAL_WEBHOOK_ALLOW_HOSTS" in error["message"], error
    assert served.client.get("/manage/v1/webhooks", headers=headers).json()["data"] == before


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"cronExpression": "0 9 * *"}, "cronExpression"),
        ({"cronExpression": "61 9 * * *"}, "cronExpression"),
        ({"windowHours": 0}, "windowHours"),
        ({"windowHours": 721}, "windowHours"),
        ({"mode": "with_responses"}, None),
        ({"candidatePolicy": "ensemble", "candidateConfig": {"models": ["gpt-4o"]}}, "candidatePolicy"),
        ({"hypothesis": "x" * 2001}, "hypothesis"),
        ({"judgeRubric": "Is it correct?"}, None),
        (
            {
                "mode": "with_responses",
                "sampleSize": 1000,
                "sampleMethod": "random",
                "spendCapUsd": 1,
                "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_nowhere"},
            },
            "provider_credential_id",
        ),
        ({"cronExpression": "0 " * 50_000 + "*"}, "cronExpression"),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_created(
    served: Served, change: dict[str, Any], param: str | None
) -> None:
    before = len(served.client.get(API, headers=served.headers(served.live_key)).json()["data"])
    answer = served.client.post(API, json=guide_body(**change), headers=served.headers(served.live_key))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    if param is not None:
        assert error["param"] == param, error
    assert len(served.client.get(API, headers=served.headers(served.live_key)).json()["data"]) == before


def test_deleting_a_schedule_settles_its_fire_in_flight(served: Served) -> None:
    schedule = create(served, name="deleted at once")
    deleted = served.client.delete(f"{API}/{schedule['id']}", headers=served.headers(served.live_key))
    assert deleted.status_code == 200, deleted.text
    fire = served.wait(f"/manage/v1/experiments/{schedule['last_experiment_id']}", key=served.live_key)
    assert fire["status"] == "cancelled" and "was deleted" in fire["status_reason"], fire


def test_a_chained_judge_run_feeds_the_judge_metrics(served: Served) -> None:
    schedule = create(
        served,
        mode="with_responses",
        sampleSize=1000,
        sampleMethod="random",
        spendCapUsd=0.5,
        judgeRubric="Is the candidate response at least as correct and helpful as the baseline?",
        judgeModel="gpt-4o",
        successCriteria={
            "logic": "and",
            "min_sample_size": 100,
            "predicates": [{"metric": "judge_worse_pct_upper_ci", "op": "lte", "value": 100}],
        },
    )
    assert schedule["monthly_cost_projection_usd"] == 15.0  # $0.50 x 30 daily runs
    experiment = finished(served, schedule["last_experiment_id"])
    assert experiment["status"] == "completed", experiment["status_reason"]
    assert experiment["judge_run_id"]
    (predicate,) = experiment["verdict"]["predicates"]
    assert predicate["status"] == "pass" and 0 < predicate["observed"] <= 100
    judge = get(served, f"/manage/v1/experiments/{experiment['id']}/judge/{experiment['judge_run_id']}")
    assert judge["status"] == "complete"
