"""The guides' request bodies, sent as written (host and key swapped), get the documented answers."""

from __future__ import annotations

import json
from typing import Any

from tests.service.api.conftest import PROJECT, Served, body_routing_only

PREFLIGHT = {
    "projectId": PROJECT,
    "candidatePolicy": "single",
    "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
    "windowStart": "2026-04-10T00:00:00Z",
    "windowEnd": "2026-04-17T00:00:00Z",
    "sample": {"size": 1000, "method": "random"},
}
JUDGE_PREFLIGHT = {"judgeModel": "gpt-4o", "stratification": {"high": 100, "mild": 100, "major": 100}}
JUDGE_CREATE = {
    "judgeModel": "gpt-4o",
    "rubric": "Focus on factual correctness for medical questions.",
    "stratification": {"high": 100, "mild": 100, "major": 100},
    "spendCapUsd": 4.20,
}


def test_routing_only_is_queued_then_completes_with_both_summaries(served: Served) -> None:
    created = served.client.post("/manage/v1/experiments", json=body_routing_only(), headers=served.headers())
    assert created.status_code == 201, created.text
    queued = created.json()["data"]
    assert queued["status"] == "queued" and queued["id"].startswith("exp_") and queued["flow_run_id"]
    done = served.wait(f"/manage/v1/experiments/{queued['id']}")
    assert done["status"] == "completed", done["status_reason"]
    for side in ("baseline_summary", "candidate_summary"):
        summary = done[side]
        assert summary["request_count"] == done["progress"]["total"] > 0
        assert {"latency_p50_ms", "latency_p95_ms", "cost_usd", "route_distribution"} <= set(summary)
    assert set(done["candidate_summary"]["route_distribution"]) == {"gpt-4o-mini:openai"}
    assert done["pricing"]["source"] == "genai-prices" and done["pricing"]["as_of"] == "now"
    assert done["pricing"]["price_date"] is not None and done["pricing"]["overrides"] is None


def test_hypothesis_example_keeps_its_text_and_gets_no_verdict(served: Served) -> None:
    body = {
        "name": "cheaper-model-rehearsal",
        "projectId": PROJECT,  # the guide's placeholder "proj_..." swapped for ours
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "..."},
        "windowStart": "2026-04-13T00:00:00Z",
        "windowEnd": "2026-04-20T00:00:00Z",
        "hypothesis": "Switching to gpt-4o-mini will cut cost ~30% without a noticeable drop in quality.",
    }
    created = served.client.post("/manage/v1/experiments", json=body, headers=served.headers())
    assert created.status_code == 201, created.text
    done = served.wait(f"/manage/v1/experiments/{created.json()['data']['id']}")
    assert done["status"] == "completed"
    assert done["hypothesis"] == body["hypothesis"]
    assert done["verdict"] is None  # one-off experiments get no verdict


def test_preflight_answers_the_guides_shape(served: Served) -> None:
    answer = served.client.post("/manage/v1/experiments/preflight", json=PREFLIGHT, headers=served.headers())
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert set(data) == {"estimate", "spendCapUsd", "suggestedSpendCapUsd", "requiresConfirmation", "autoCancelRatio"}
    estimate = data["estimate"]
    assert set(estimate) == {
        "estimatedCostUsd",
        "effectiveSampleSize",
        "rowCountInWindow",
        "perCallEstimateUsd",
        "embeddingCostUsd",
        "notes",
    }
    assert estimate["effectiveSampleSize"] == estimate["rowCountInWindow"] < 1000
    assert data["spendCapUsd"] == 50
    assert data["suggestedSpendCapUsd"] == min(max(2 * estimate["estimatedCostUsd"], 0.05), 50)
    assert data["requiresConfirmation"] is False and data["autoCancelRatio"] == 1.5


def test_a_json_body_without_a_json_content_type_is_read_as_json(served: Served) -> None:
    # The guide's with-responses schedule curl sends `-d '{...}'` with no Content-Type: curl then declares
    # application/x-www-form-urlencoded. Other clients send none at all.
    raw = json.dumps(PREFLIGHT).encode()
    for declared in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        answer = served.client.post("/manage/v1/experiments/preflight", content=raw, headers=served.headers(**declared))
        assert answer.status_code == 200, (declared, answer.text)
        assert answer.json()["data"]["estimate"]["rowCountInWindow"] > 0
    # A body that is not JSON under curl's default type is still refused, naming what was expected.
    form = served.client.post(
        "/manage/v1/experiments/preflight",
        content=b"projectId=proj_abc",
        headers=served.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert form.status_code in (400, 422) and form.json()["error"]["message"]


def test_with_responses_then_histogram_results_and_judge(
    served: Served, finished_with_responses: dict[str, Any]
) -> None:
    sim_id = finished_with_responses["id"]
    assert finished_with_responses["status"] == "completed", finished_with_responses["status_reason"]
    assert finished_with_responses["spend_usd"] <= 0.05
    pairs = finished_with_responses["progress"]["done"]

    hist = served.client.get(
        f"/manage/v1/experiments/{sim_id}/similarity-histogram?threshold=0.85", headers=served.headers()
    ).json()["data"]
    assert len(hist["buckets"]) == 10 and hist["threshold"] == 0.85
    assert hist["scored_count"] + hist["unscored_count"] == pairs
    assert sum(b["count"] for b in hist["buckets"]) == hist["scored_count"]
    assert "% agreement (≥0.85) over" in hist["headline"]

    worst = served.client.get(
        f"/manage/v1/experiments/{sim_id}/results?sort=similarity_asc&limit=10", headers=served.headers()
    ).json()
    similarities = [r["similarity"] for r in worst["data"] if r["similarity"] is not None]
    assert len(worst["data"]) == 10 and similarities == sorted(similarities)
    assert worst["has_more"] is True and worst["next_cursor"]
    errors = served.client.get(
        f"/manage/v1/experiments/{sim_id}/results?candidate_status=error", headers=served.headers()
    ).json()
    assert all(r["candidate_status"] == "error" for r in errors["data"])

    # "Below 0.60: fetch the pair via GET /manage/v1/logs/{request_id}": the logged request and answer.
    request_id = worst["data"][0]["request_id"]
    pair = served.client.get(f"/manage/v1/experiments/{sim_id}/results/{request_id}", headers=served.headers())
    logged = served.client.get(f"/manage/v1/logs/{request_id}", headers=served.headers())
    assert logged.status_code == 200, logged.text
    entry = logged.json()["data"]
    assert entry["object"] == "log" and entry["request_id"] == request_id and entry["project_id"] == PROJECT
    assert entry["response_text"] == pair.json()["data"]["baseline_text"]
    assert json.loads(entry["request_json"])["messages"] and entry["model"] == pair.json()["data"]["baseline_model"]
    # Another project's key does not see it; an unknown id is a 404 naming the request.
    hidden = served.client.get(f"/manage/v1/logs/{request_id}", headers=served.headers(served.other_key))
    assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "request_id"
    assert served.client.get("/manage/v1/logs/req_nope", headers=served.headers()).status_code == 404

    preflight = served.client.post(
        f"/manage/v1/experiments/{sim_id}/judge/preflight", json=JUDGE_PREFLIGHT, headers=served.headers()
    )
    assert preflight.status_code == 200, preflight.text
    estimate = preflight.json()["data"]
    assert {"effectivePairCount", "effectiveByBucket", "estimatedCostUsd", "suggestedSpendCapUsd", "rubricHash"} <= set(
        estimate
    )
    assert estimate["effectivePairCount"] == sum(estimate["effectiveByBucket"].values()) <= pairs

    created = served.client.post(f"/manage/v1/experiments/{sim_id}/judge", json=JUDGE_CREATE, headers=served.headers())
    assert created.status_code == 201, created.text
    run_id = created.json()["data"]["id"]
    run = served.wait(f"/manage/v1/experiments/{sim_id}/judge/{run_id}")
    assert run["status"] == "complete", run["status_reason"]
    summary = run["summary"]
    assert {
        "judged_count",
        "parse_errors",
        "spend_usd",
        "verdict_breakdown",
        "verdict_breakdown_ci_95",
        "by_bucket",
    } <= set(summary)
    listed = served.client.get(f"/manage/v1/experiments/{sim_id}/judge", headers=served.headers()).json()
    assert run_id in [r["id"] for r in listed["data"]]
    worse = served.client.get(
        f"/manage/v1/experiments/{sim_id}/judge/{run_id}/results?verdict=worse", headers=served.headers()
    ).json()["data"]
    assert all(r["verdict"] == "worse" for r in worse)
    major = served.client.get(
        f"/manage/v1/experiments/{sim_id}/judge/{run_id}/results?bucket=major", headers=served.headers()
    ).json()["data"]
    assert all(r["bucket"] == "major" for r in major)
