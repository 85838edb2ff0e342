"""With-responses runs end to end: real local Ray, the loopback simulator, the real embedding model."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import ray

from engine import responses
from engine.fanout import ensure_ray
from engine.providers._sim import Divergence, SimConfig, SimProfile, SimServer, simulate_chat
from engine.results import PairStore
from engine.schema import Experiment
from engine.settings import Settings
from service import core
from tests.conftest import REPO, STORE_END

PROFILES = {
    "gpt-4o-mini": SimProfile(divergence=Divergence(close=0.6, mild=0.3, far=0.1)),
    "gpt-4.1-nano": SimProfile(
        rate_limit=0.15,
        server_error=0.1,
        malformed=0.05,
        timeout=0.05,
        hang_s=0,
        retry_after_s=0,
        divergence=Divergence(close=0.2, mild=0.4, far=0.4),
    ),
    "gpt-4.1-mini": SimProfile(verbosity=8.0),
    # Behind a proxy that reports each call's cost (and leaves it out now and then).
    "gpt-4.1": SimProfile(reported_cost_per_mtok=5.0, reported_cost_missing=0.2),
    # Answers three times the logged answer's length.
    "gpt-5-mini": SimProfile(verbosity=3.0),
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(models=PROFILES, time_scale=0)) as server:
        yield server


@pytest.fixture
def svc(tmp_path: Path, log_store: Path, sim: SimServer, ray_cluster: None) -> core.Services:
    credentials = tmp_path / "credentials.yaml"
    credentials.write_text(f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n")
    settings = Settings(home=tmp_path / "home", sample_min=1, retry_backoff_s=0, workers=2, concurrency=16)
    svc = core.open_services(settings, logs=str(log_store), credentials=credentials)
    core.create_project(svc, "demo")
    return svc


def body(model: str, size: int, cap: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{model} quality check",
        "projectId": "demo",
        "candidatePolicy": "single",
        "candidateConfig": {"model": model, "provider_credential_id": "pc_openai_default"},
        "windowStart": "2026-04-12T00:00:00Z",
        "windowEnd": f"{STORE_END}T00:00:00Z",
        "mode": "with_responses",
        "sample": {"size": size, "method": "random", "seed": 3},
        "spendCapUsd": cap,
        **extra,
    }


def test_a_clean_run_scores_every_pair(svc: core.Services, sim: SimServer) -> None:
    progress: list[tuple[int, int, float]] = []
    experiment = core.create_experiment(svc, body("gpt-4o-mini", 120, 1.0), on_progress=lambda *a: progress.append(a))
    assert experiment.status == "completed", experiment.status_reason
    assert experiment.progress.done == experiment.progress.total == 120
    assert progress[-1][:2] == (120, 120)
    pairs = PairStore(svc.settings.home, experiment.id).frame()
    assert pairs.height == 120 and pairs["request_id"].n_unique() == 120
    # Spend is auditable pair by pair: usage x price, summed.
    assert experiment.spend_usd == pytest.approx(pairs["candidate_cost_usd"].sum())
    price = svc.catalog.models["gpt-4o-mini"]
    row = pairs.row(0, named=True)
    assert row["candidate_cost_usd"] == pytest.approx(
        (row["candidate_input_tokens"] * price.input_per_mtok + row["candidate_output_tokens"] * price.output_per_mtok)
        / 1e6
    )
    summary = experiment.similarity_summary
    assert summary is not None and summary.scored_count == 120 and summary.unscored_count == 0
    # Mostly close answers: high similarity, and the far ones show as a low tail.
    assert summary.mean_similarity is not None and summary.mean_similarity > 0.7
    assert pairs["similarity"].min() < 0.5
    hist = core.experiment_histogram(svc, experiment.id, threshold=0.85)
    assert sum(b.count for b in hist.buckets) == hist.scored_count == 120
    worst, cursor = core.experiment_results(svc, experiment.id, sort="similarity_asc", limit=5)
    assert [r["similarity"] for r in worst] == sorted(r["similarity"] for r in worst)
    assert cursor is not None
    calls = Counter(c.pair_id for c in sim.calls if c.model == "gpt-4o-mini")
    assert all(n == 1 for n in calls.values())


def test_a_run_records_its_estimate_error_and_flags_usage_far_off_the_logs(svc: core.Services, log_store: Path) -> None:
    spec = body("gpt-4o-mini", 80, 1.0)
    estimate = core.preflight_experiment(svc, spec).estimate
    experiment = core.create_experiment(svc, spec)
    assert experiment.status == "completed", experiment.status_reason
    pairs = PairStore(svc.settings.home, experiment.id).frame()
    error = experiment.estimate_error
    assert error is not None and error.calls == pairs.filter(pl.col("candidate_status") == "ok").height == 80
    assert error.overall == pytest.approx(experiment.spend_usd / estimate.estimated_cost_usd)
    # Reservations are generous (a long answer at the logged prompt): every call costs well under its own.
    assert error.per_call_p50 is not None and error.per_call_p90 is not None
    assert 0 < error.per_call_p50 <= error.per_call_p90 < 1
    assert core.get_experiment(svc, experiment.id).estimate_error == error  # stored, so REST and MCP show it
    stored_before = experiment.model_dump(mode="json")
    del stored_before["estimate_error"]  # an experiment stored before the field existed still loads
    assert Experiment.model_validate(stored_before).estimate_error is None

    # The simulator counts the prompt's own text (four characters a token), while the synthetic logs draw
    # input_tokens around 770: its usage is far off the logs on nearly every pair, and the run says so.
    logged = pl.read_parquet(log_store / "project_id=demo" / "**" / "*.parquet").select("request_id", "input_tokens")
    joined = pairs.join(logged, on="request_id")
    ratio = (joined["candidate_input_tokens"] / joined["input_tokens"]).to_numpy()
    (note,) = [n for n in experiment.notes if n.startswith(responses.USAGE_NOTE_PREFIX)]
    off = int(((ratio > 2) | (ratio < 0.5)).sum())
    assert off > 40
    assert f"on {off:,} of 80 answered pairs" in note and f"median ratio {np.median(ratio):.2f}" in note


def test_errors_are_retried_recorded_and_unscored(svc: core.Services, sim: SimServer) -> None:
    experiment = core.create_experiment(svc, body("gpt-4.1-nano", 200, 1.0))
    assert experiment.status == "completed", experiment.status_reason
    pairs = PairStore(svc.settings.home, experiment.id).frame()
    assert pairs.height == 200
    errors = pairs.filter(pl.col("candidate_status") == "error")
    assert errors.height > 0  # 35% of attempts fail: some pairs fail all four
    assert set(errors["error_type"]) <= {"rate_limit", "server_error", "malformed_response", "timeout"}
    assert errors["similarity"].null_count() == errors.height
    assert (pairs.filter(pl.col("candidate_status") == "ok")["attempts"] > 1).any()  # retries succeeded
    attempts = Counter(c.pair_id for c in sim.calls if c.model == "gpt-4.1-nano")
    assert max(attempts.values()) <= svc.settings.max_attempts
    summary = experiment.similarity_summary
    assert summary is not None and summary.unscored_count == errors.height
    only_errors, _ = core.experiment_results(svc, experiment.id, candidate_status="error", limit=1000)
    assert len(only_errors) == errors.height
    scored, _ = core.experiment_results(svc, experiment.id, min_similarity=0.0, limit=1000)
    assert len(scored) == 200 - errors.height


def test_the_cap_stops_the_run_before_it_is_passed(svc: core.Services, sim: SimServer) -> None:
    # 200 pairs cost about $0.0097: over the cap, but not by the 1.5x that would auto-cancel early.
    cap = 0.0075
    first = len(sim.calls)
    experiment = core.create_experiment(svc, body("gpt-4o-mini", 200, cap))
    assert experiment.status == "cancelled"
    reason = experiment.status_reason or ""
    assert "spend cap reached" in reason and "$0.0075" in reason and "pairs done" in reason
    pairs = PairStore(svc.settings.home, experiment.id).frame()
    assert 0 < pairs.height < 200
    assert experiment.spend_usd == pytest.approx(pairs["candidate_cost_usd"].sum())
    assert experiment.spend_usd <= cap  # reservations cover max_tokens, so no call can overshoot
    assert experiment.estimate_error is None  # a run stopped early is not measured against its full estimate
    # Every call the provider answered is recorded, those of the batch that met the cap too.
    assert {c.pair_id for c in sim.calls[first:]} == set(pairs["request_id"].to_list())


def test_auto_cancel_on_projected_overrun(svc: core.Services) -> None:
    # 3,000 pairs at ~$0.0006 each project to ~$1.8: past 1.5 x $0.4 long before $0.4 is spent.
    experiment = core.create_experiment(svc, body("gpt-4.1-mini", 3000, 0.4))
    assert experiment.status == "cancelled"
    assert "auto-cancelled: projected spend" in (experiment.status_reason or "")
    assert "1.5 x the spend cap $0.4" in (experiment.status_reason or "")
    assert experiment.spend_usd < 0.4
    assert experiment.progress.done < 3000


def test_metadata_only_and_over_cap_are_refused_and_write_nothing(svc: core.Services) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="above the project's experiment_spend_cap_usd"):
        core.create_experiment(svc, body("gpt-4o-mini", 10, 51))
    core.update_project(svc, "demo", logging_mode="metadata_only")
    with pytest.raises(ConfigError, match="logs metadata only"):
        core.create_experiment(svc, body("gpt-4o-mini", 10, 1))
    assert core.list_experiments(svc)[0] == []


def test_similarity_orders_divergence(svc: core.Services) -> None:
    experiment = core.create_experiment(svc, body("gpt-4o-mini", 60, 1.0))
    pairs = PairStore(svc.settings.home, experiment.id).frame()
    sims = pairs["similarity"].to_numpy()
    assert np.all((sims >= 0) & (sims <= 1))


def test_hard_timeout_fails_the_run_with_a_reason(svc: core.Services) -> None:
    quick = core.open_services(
        svc.settings.model_copy(update={"run_timeout_s": 0.001}),
        logs=svc.logs_root,
        credentials=svc.credentials_path,
    )
    experiment = core.create_experiment(quick, body("gpt-4o-mini", 500, 1.0))
    assert experiment.status == "failed"
    assert "hard timeout" in (experiment.status_reason or "")
    assert experiment.progress.done < 500  # nothing new starts once the timeout has passed


def test_cancel_stops_a_running_experiment(svc: core.Services, tmp_path: Path) -> None:
    import threading

    slow = SimConfig(models={"gpt-4o-mini": SimProfile(ttft_ms=50, output_tokens_per_s=1e9, jitter=0)}, time_scale=1)
    with SimServer(slow) as server:
        credentials = tmp_path / "slow.yaml"
        credentials.write_text(
            f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{server.base_url}'}}\n"
        )
        settings = svc.settings.model_copy(update={"concurrency": 2, "workers": 1})
        slow_svc = core.open_services(settings, logs=svc.logs_root, credentials=credentials)
        started = threading.Event()
        result: list[Any] = []

        def report(done: int, total: int, spend: float) -> None:
            if done >= 10:
                started.set()

        def run() -> None:
            result.append(core.create_experiment(slow_svc, body("gpt-4o-mini", 400, 1.0), on_progress=report))

        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(60)
        (running,) = core.list_experiments(slow_svc)[0]
        assert running.status == "running" and running.progress.done >= 10  # progress is visible in the store
        cancelled = core.cancel_experiment(slow_svc, running.id)
        assert cancelled.status == "cancelled"
        thread.join(60)
    (experiment,) = result
    assert experiment.status == "cancelled" and experiment.status_reason == "cancelled on request"
    assert experiment.progress.done < 400
    assert experiment.similarity_summary is not None  # what was done is scored


def _services(svc: core.Services, path: Path, credentials: str) -> core.Services:
    path.write_text(credentials)
    return core.open_services(svc.settings, logs=svc.logs_root, credentials=path)


def test_a_provider_that_refuses_the_first_calls_fails_the_run(svc: core.Services, tmp_path: Path) -> None:
    # A provider that serves only the models it knows: gpt-4o is priced in the catalog, but not served.
    with SimServer(SimConfig(models=PROFILES, time_scale=0, known_models_only=True)) as strict:
        refusing = _services(
            svc,
            tmp_path / "strict.yaml",
            f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{strict.base_url}'}}\n",
        )
        experiment = core.create_experiment(refusing, body("gpt-4o", 1000, 1.0))
        sent = [c for c in strict.calls if c.model == "gpt-4o"]
    missing = "The model `gpt-4o` does not exist or you do not have access to it."
    assert experiment.status == "failed"
    assert experiment.status_reason == f"the candidate's provider refused the first 20 calls: 404 {missing}"
    assert 20 <= len(sent) <= 32 and {c.status_code for c in sent} == {404}  # the probe, not a thousand calls
    assert experiment.progress.done == len(sent) and experiment.spend_usd == 0
    rows, _ = core.experiment_results(refusing, experiment.id, candidate_status="error", limit=100)
    assert len(rows) == len(sent)
    assert {(r["candidate_status_code"], r["candidate_error_message"], r["error_type"]) for r in rows} == {
        (404, missing, "invalid_request")
    }


def test_retryable_errors_do_not_stop_a_run_however_many(svc: core.Services) -> None:
    flaky = "gpt-4.1-nano"  # 35% of attempts fail (429, 500, 504, malformed): retried, never a refusal
    experiment = core.create_experiment(svc, body(flaky, 60, 1.0))
    assert experiment.status == "completed" and experiment.progress.done == 60


def test_a_credential_can_count_the_cost_the_endpoint_reports(
    svc: core.Services, sim: SimServer, tmp_path: Path
) -> None:
    proxied = _services(
        svc,
        tmp_path / "proxy.yaml",
        f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n"
        f"  pc_proxy: {{vendor: openai, base_url: '{sim.base_url}', cost_source: provider}}\n",
    )
    spec = body("gpt-4.1", 200, 1.0)
    spec["candidateConfig"]["provider_credential_id"] = "pc_proxy"
    experiment = core.create_experiment(proxied, spec)
    assert experiment.status == "completed", experiment.status_reason
    pairs = PairStore(svc.settings.home, experiment.id).frame().filter(pl.col("candidate_status") == "ok")
    price = svc.catalog.models["gpt-4.1"]
    catalog = (
        pairs["candidate_input_tokens"] * price.input_per_mtok
        + pairs["candidate_output_tokens"] * price.output_per_mtok
    ) / 1e6
    reported = pairs["candidate_reported_cost_usd"]
    unreported = reported.null_count()
    assert 0 < unreported < pairs.height  # the proxy left some out
    assert np.allclose(pairs["candidate_cost_usd"].to_numpy(), reported.fill_null(catalog).to_numpy())
    assert experiment.spend_usd == pytest.approx(
        PairStore(svc.settings.home, experiment.id).frame()["candidate_cost_usd"].sum()
    )
    assert any(f"{unreported:,} of {pairs.height:,} answered calls reported none" in n for n in experiment.notes)

    # The default credential counts the catalog's price, and keeps the reported cost beside it.
    plain = core.create_experiment(proxied, body("gpt-4.1", 200, 1.0))
    plain_pairs = PairStore(svc.settings.home, plain.id).frame().filter(pl.col("candidate_status") == "ok")
    assert plain_pairs["candidate_reported_cost_usd"].null_count() < plain_pairs.height
    expected = (
        plain_pairs["candidate_input_tokens"] * price.input_per_mtok
        + plain_pairs["candidate_output_tokens"] * price.output_per_mtok
    ) / 1e6
    assert np.allclose(plain_pairs["candidate_cost_usd"].to_numpy(), expected.to_numpy())
    assert not any("cost_source" in n for n in plain.notes)


def test_a_vendor_default_without_its_key_is_refused_at_admission(
    svc: core.Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.errors import ConfigError

    shipped = core.open_services(svc.settings, logs=svc.logs_root, credentials=REPO / "configs" / "credentials.yaml")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    spec = body("gemini-2.5-flash", 10, 1.0)
    del spec["candidateConfig"]["provider_credential_id"]  # the vendor's default: pc_google_default
    with pytest.raises(ConfigError, match=r"pc_google_default.*\$GEMINI_API_KEY, which is not set") as caught:
        core.create_experiment(shipped, spec)
    assert caught.value.param == "provider_credential_id"
    assert core.list_experiments(shipped)[0] == []


def _interval(experiment: Experiment) -> tuple[float, float]:
    summary = experiment.candidate_summary
    assert summary is not None and summary.cost_usd_interval is not None
    return summary.cost_usd_interval.low, summary.cost_usd_interval.high


def test_one_run_teaches_the_replay_a_verbose_candidate(svc: core.Services, log_store: Path) -> None:
    window = {
        "windowStart": "2026-04-19T00:00:00Z",
        "windowEnd": f"{STORE_END}T00:00:00Z",
        "filters": {"models": ["gpt-4o", "gpt-4o-mini"]},
    }
    replay = {
        "projectId": "demo",
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-5-mini"},
        "mode": "routing_only",
        **window,
    }
    naive = core.create_experiment(svc, replay)
    learning = core.create_experiment(svc, {**body("gpt-5-mini", 150, 2.0), **window})
    assert learning.status == "completed", learning.status_reason
    learned = core.create_experiment(svc, replay)

    # The truth: what the simulator bills for every row of the window (an errored row answers nothing).
    rows = pl.read_parquet(log_store / "project_id=demo" / "**" / "*.parquet").filter(
        pl.col("timestamp") >= pl.datetime(2026, 4, 19, time_zone="UTC"),
        pl.col("model").is_in(["gpt-4o", "gpt-4o-mini"]),
    )
    price = svc.catalog.price("gpt-5-mini")
    config = SimConfig(models=PROFILES, time_scale=0)
    true_cost = 0.0
    tokens: dict[str, np.ndarray] = {m: np.zeros(2) for m in ("gpt-4o", "gpt-4o-mini")}  # answered vs logged
    for model, request_json, status, logged in rows.select(
        "model", "request_json", "status", "output_tokens"
    ).iter_rows():
        reply = simulate_chat(config, "gpt-5-mini", json.loads(request_json)["messages"], 1)
        answer = reply.completion_tokens if status == "ok" else 0
        true_cost += (reply.prompt_tokens * price.input_per_mtok + answer * price.output_per_mtok) / 1e6
        tokens[model] += (answer, logged)
    assert naive.candidate_summary is not None and learned.candidate_summary is not None
    naive_cost = naive.candidate_summary.cost_usd  # one vendor, no runs yet: the logged tokens, as-is
    assert naive.token_multipliers and all(m.input.source == "prior" for m in naive.token_multipliers)
    low, high = _interval(learned)
    assert low <= true_cost <= high
    assert not low <= naive_cost <= high
    # Learned from that run, and said so.
    assert {m.baseline_model for m in learned.token_multipliers} == {"gpt-4o", "gpt-4o-mini"}
    for m in learned.token_multipliers:
        assert m.output.source == m.input.source == "learned" and m.output.runs == [learning.id]
        # The synthetic logs' token counts are not those of their texts, so against the logged output tokens
        # the candidate's three-times-longer answers are another factor; the interval holds the true one.
        answered, logged = tokens[m.baseline_model]
        assert m.output.low <= answered / logged <= m.output.high
    assert any(learning.id in n for n in learned.notes)
    # The window has no gpt-5-mini rows: its latency comes from the run's answers, not the catalog profile.
    answers, _ = core.experiment_results(svc, learning.id, candidate_status="ok", limit=1000)
    observed = [a["candidate_latency_ms"] for a in answers]
    (note,) = [n for n in learned.notes if n.startswith("Latency of gpt-5-mini")]
    assert f"fit on {len(observed)} of its answers" in note and learning.id in note
    assert "catalog profile" in " ".join(naive.notes) and naive.candidate_summary.latency_p50_ms > max(observed)
    assert min(observed) <= learned.candidate_summary.latency_p50_ms <= max(observed)
    # The same replay gives the same intervals.
    again = core.create_experiment(svc, replay)
    assert (again.candidate_summary, again.deltas) == (learned.candidate_summary, learned.deltas)

    # The next preflight of the project prices calls with what the run showed, and is closer to the spend.
    spec = {**body("gpt-5-mini", 150, 2.0), **window}
    calibrated = core.preflight_experiment(svc, spec).estimate
    assert any(learning.id in n for n in calibrated.notes)
    assert learning.estimate_error is not None and learning.estimate_error.overall is not None
    assert abs(learning.spend_usd / calibrated.estimated_cost_usd - 1) < abs(learning.estimate_error.overall - 1)
