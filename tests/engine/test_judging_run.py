"""Judge runs end to end: a with-responses experiment, then judge runs against the simulated judge on real Ray."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from rich.console import Console

from engine.calibration import Calibration
from engine.errors import ConfigError
from engine.fanout import ensure_ray
from engine.judging import CallStore
from engine.providers._sim import Divergence, SimConfig, SimProfile, SimServer
from engine.providers._sim_judge import SimJudgeProfile
from engine.schema import JudgeRun
from engine.settings import Settings
from service import core
from service.cli._render import judge_run_view
from service.mcp_server import judge_run_summary
from tests.conftest import REPO, STORE_END

PROFILES = {
    # The candidate: often close, sometimes off-topic, so every bucket has pairs.
    "gpt-4o-mini": SimProfile(divergence=Divergence(close=0.45, mild=0.3, far=0.25)),
    # Judges: a good one, a position-biased one, and one that often breaks the JSON contract.
    "gpt-4o": SimProfile(judge=SimJudgeProfile(agreement=1.0)),
    "gpt-4.1-nano": SimProfile(judge=SimJudgeProfile(position_bias=0.6, agreement=1.0)),
    "gpt-4.1-mini": SimProfile(judge=SimJudgeProfile(parse_failure=0.3, agreement=1.0)),
    # A judge only the learning test uses, and one whose preflight no run of this module teaches.
    "gpt-4.1": SimProfile(judge=SimJudgeProfile(agreement=1.0)),
    "o4-mini": SimProfile(judge=SimJudgeProfile(agreement=1.0)),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, log_store: Path) -> Iterator[tuple[core.Services, str]]:
    ensure_ray(num_cpus=2)
    tmp = tmp_path_factory.mktemp("judge")
    # Only the models listed are served: any other judge model is refused with a 404, as OpenAI does.
    with SimServer(SimConfig(models=PROFILES, time_scale=0, known_models_only=True)) as sim:
        credentials = tmp / "credentials.yaml"
        credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
        settings = Settings(home=tmp / "home", sample_min=1, retry_backoff_s=0, concurrency=32)
        svc = core.open_services(settings, logs=str(log_store), credentials=credentials)
        core.create_project(svc, "demo")
        experiment = core.create_experiment(
            svc,
            {
                "projectId": "demo",
                "candidatePolicy": "single",
                "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
                "windowStart": "2026-04-12T00:00:00Z",
                "windowEnd": f"{STORE_END}T00:00:00Z",
                "mode": "with_responses",
                "sample": {"size": 400, "seed": 5},
                "spendCapUsd": 5,
            },
        )
        assert experiment.status == "completed"
        yield svc, experiment.id
    ray.shutdown()


def judge_body(**changes: Any) -> dict[str, Any]:
    return {"judgeModel": "gpt-4o", "stratification": {"high": 40, "mild": 40, "major": 40}, "spendCapUsd": 5} | changes


def test_preflight_in_the_guides_shape(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    pre = core.preflight_judge(
        svc, experiment_id, {"judgeModel": "gpt-4o", "stratification": {"high": 100, "mild": 100, "major": 100}}
    )
    dumped = pre.model_dump(mode="json")
    assert set(dumped) == {
        "effectivePairCount",
        "effectiveByBucket",
        "estimatedCostUsd",
        "perCallEstimateUsd",
        "spendCapUsd",
        "suggestedSpendCapUsd",
        "requiresConfirmation",
        "notes",
        "rubric",
        "rubricHash",
    }
    assert pre.effective_pair_count == sum(pre.effective_by_bucket.values()) == 300
    assert pre.estimated_cost_usd == pytest.approx(pre.per_call_estimate_usd * 300)
    assert pre.spend_cap_usd == 20
    assert pre.suggested_spend_cap_usd == pytest.approx(min(max(2 * pre.estimated_cost_usd, 0.05), 20))
    assert len(pre.rubric_hash) == 64
    both = core.preflight_judge(
        svc, experiment_id, {"order": "both", "stratification": {"high": 100, "mild": 100, "major": 100}}
    )
    assert both.estimated_cost_usd == pytest.approx(2 * pre.estimated_cost_usd)
    same = core.preflight_judge(svc, experiment_id, {"judgeModel": "gpt-4o-mini"})
    assert any("also wrote one side" in n for n in same.notes)


def test_a_run_summarises_verdicts_with_intervals(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    estimate = core.preflight_judge(svc, experiment_id, judge_body())
    run = core.create_judge_run(svc, experiment_id, judge_body())
    assert run.status == "complete", run.status_reason
    # A run stored when judge runs still said "completed" reads back in the guide's word.
    assert JudgeRun.model_validate(run.model_dump() | {"status": "completed"}).status == "complete"
    # The run measures itself against its preflight, and each call against the reservation it was sent with.
    error = run.estimate_error
    assert error is not None and error.calls == 120
    assert error.overall == pytest.approx(run.spend_usd / estimate.estimated_cost_usd)
    assert error.per_call_p50 is not None and error.per_call_p90 is not None
    assert 0 < error.per_call_p50 <= error.per_call_p90 <= 1
    s = run.summary
    assert s is not None and s["judged_count"] == 120 and s["parse_errors"] == 0
    assert sum(s["verdict_breakdown"].values()) == pytest.approx(1.0)
    for verdict, share in s["verdict_breakdown"].items():
        ci = s["verdict_breakdown_ci_95"][verdict]
        assert ci["lower"] <= share <= ci["upper"]
    # The simulated judge follows content: high-similarity pairs are mostly equivalent, off-topic ones worse.
    assert s["by_bucket"]["high"]["verdicts"]["equivalent"] > 0.6
    assert s["by_bucket"]["major"]["verdicts"]["worse"] > 0.5
    assert run.spend_usd == pytest.approx(s["spend_usd"]) and run.spend_usd > 0
    worse, _ = core.judge_results(svc, run.id, verdict="worse", limit=1000)
    assert worse and all(r["verdict"] == "worse" for r in worse)
    major, _ = core.judge_results(svc, run.id, bucket="major", limit=1000)
    assert len(major) == 40 and all(r["bucket"] == "major" for r in major)
    assert major[0]["baseline_text"] and major[0]["candidate_text"]


def test_a_judge_run_teaches_the_next_preflight(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    body = judge_body(judgeModel="gpt-4.1")
    before = core.preflight_judge(svc, experiment_id, body)
    assert not any("judge runs" in n for n in before.notes)
    run = core.create_judge_run(svc, experiment_id, body)
    assert run.status == "complete" and run.estimate_error is not None and run.estimate_error.overall is not None
    after = core.preflight_judge(svc, experiment_id, body)
    (note,) = [n for n in after.notes if "judge runs" in n]
    assert run.id in note and "gpt-4.1" in note
    assert abs(run.spend_usd / after.estimated_cost_usd - 1) < abs(run.estimate_error.overall - 1)
    # What a judge showed never prices routed traffic.
    calibration = Calibration(svc.store.list_observations("demo"), svc.catalog)
    assert calibration.move("gpt-4o", "gpt-4.1").input.info.source == "prior"


def test_both_orders_turn_position_flips_into_equivalent(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    biased = core.create_judge_run(svc, experiment_id, judge_body(judgeModel="gpt-4.1-nano", order="both"))
    s = biased.summary
    assert s is not None and s["position_flip_rate"] > 0.2
    # Never shown as a clean "mostly equivalent": the summary says the judge followed the position.
    assert f"on {s['position_flip_rate']:.0%} of pairs" in s["position_bias_warning"]
    shown = io.StringIO()
    Console(file=shown, width=400).print(judge_run_view(biased))
    assert "Position bias: on" in shown.getvalue() and "WARNING Position bias" in judge_run_summary(biased)
    flipped, _ = core.judge_results(svc, biased.id, limit=1000)
    assert all(r["verdict"] == "equivalent" for r in flipped if r["position_flip"])
    fair = core.create_judge_run(svc, experiment_id, judge_body(order="both"))
    assert fair.summary is not None and fair.summary["position_flip_rate"] < 0.1
    assert fair.summary["position_bias_warning"] is None


def test_parse_errors_are_counted_and_excluded(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    run = core.create_judge_run(svc, experiment_id, judge_body(judgeModel="gpt-4.1-mini"))
    s = run.summary
    assert s is not None and s["parse_errors"] > 10
    assert s["judged_count"] + s["parse_errors"] == 120
    assert sum(b["n"] for b in s["by_bucket"].values()) == s["judged_count"]


def test_cap_reached_mid_run_cancels_with_reason(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    pre = core.preflight_judge(svc, experiment_id, judge_body(judgeModel="o4-mini"))
    # Untaught, calls cost ~0.7x the estimate: a cap of 0.6x is reached near the end, before any projected overrun.
    cap = pre.estimated_cost_usd * 0.6
    run = core.create_judge_run(svc, experiment_id, judge_body(judgeModel="o4-mini", spendCapUsd=cap))
    assert run.status == "cancelled"
    assert "spend cap reached" in (run.status_reason or "") and "pairs judged" in (run.status_reason or "")
    assert run.spend_usd <= cap  # reservations cover each call's prompt and max_tokens
    assert run.summary is not None and 0 < run.summary["judged_count"] < 120


def test_runs_are_separate_and_listed(setup: tuple[core.Services, str]) -> None:
    svc, experiment_id = setup
    a = core.create_judge_run(svc, experiment_id, judge_body(rubric="Focus on factual correctness."))
    b = core.create_judge_run(svc, experiment_id, judge_body(rubric="Focus on conciseness."))
    assert a.id != b.id and a.rubric_hash != b.rubric_hash
    runs, _ = core.list_judge_runs(svc, experiment_id, limit=100)
    assert {a.id, b.id} <= {r.id for r in runs}
    assert core.get_judge_run(svc, a.id).rubric == "Focus on factual correctness."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (judge_body(spendCapUsd=None), "spendCapUsd"),
        (judge_body(spendCapUsd=21), "spendCapUsd"),
        (judge_body(stratification={"high": 1000, "mild": 500, "major": 1}), "stratification"),
        (judge_body(judgeModel="gpt-99"), "judgeModel"),
        (judge_body(order="sideways"), "order"),
    ],
)
def test_bad_judge_requests_are_refused(setup: tuple[core.Services, str], body: dict[str, Any], field: str) -> None:
    svc, experiment_id = setup
    before, _ = core.list_judge_runs(svc, experiment_id, limit=100)
    with pytest.raises(ConfigError) as info:
        core.create_judge_run(svc, experiment_id, body)
    assert info.value.param == field
    assert core.list_judge_runs(svc, experiment_id, limit=100)[0] == before


def test_a_judge_the_provider_does_not_serve_fails_the_run_after_its_first_calls(
    setup: tuple[core.Services, str],
) -> None:
    svc, experiment_id = setup
    run = core.create_judge_run(svc, experiment_id, judge_body(judgeModel="gpt-5"))  # priced, but not served
    missing = "The model `gpt-5` does not exist or you do not have access to it."
    assert run.status == "failed"
    assert run.status_reason == f"the judge's provider refused the first 20 calls: 404 {missing}"
    calls = CallStore(svc.settings.home, experiment_id, run.id).frame()
    assert 20 <= calls.height <= 32 and run.progress.done == calls.height < 120
    assert set(zip(calls["status_code"], calls["error_message"], strict=True)) == {(404, missing)}
    assert run.summary is not None and run.summary["judged_count"] == 0


def test_a_vendor_default_judge_without_its_key_is_refused_at_admission(
    setup: tuple[core.Services, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, experiment_id = setup
    shipped = core.open_services(svc.settings, logs=svc.logs_root, credentials=REPO / "configs" / "credentials.yaml")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    before, _ = core.list_judge_runs(shipped, experiment_id, limit=100)
    with pytest.raises(ConfigError, match=r"pc_anthropic_default.*\$ANTHROPIC_API_KEY, which is not set") as caught:
        core.create_judge_run(shipped, experiment_id, judge_body(judgeModel="claude-sonnet-4"))
    assert caught.value.param == "judgeModel"
    assert core.list_judge_runs(shipped, experiment_id, limit=100)[0] == before
