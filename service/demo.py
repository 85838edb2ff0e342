"""``rehearsal demo``: a week of synthetic traffic replayed against a few instructive candidates."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from engine.importers import run_import
from engine.logs import partition_files, write_partitioned
from engine.providers._sim import DEFAULT_SIM_CONFIG, SimServer, load_sim_config
from engine.schema import Experiment
from engine.settings import CONFIGS_DIR
from engine.synth import generate
from service import core
from service.cli._common import err, out
from service.cli._experiments import progress_bar
from service.cli._render import (
    _pct,
    _usd,
    comparison,
    histogram_view,
    judge_preflight_table,
    judge_run_view,
    pairs_view,
    preflight_table,
    verdict_view,
)

DEMO_PROJECT = "demo"
DEMO_SPECS = ("all-to-mini.yaml", "cost-optimized.yaml", "free-tier-rules.yaml", "ab-sonnet.yaml")


def ensure_demo_store(svc: core.Services, *, days: int = 7, rows_per_day: int = 40_000) -> dt.date:
    """Generate the demo log store unless it exists; returns the day after its last partition."""
    files = partition_files(svc.logs_root, DEMO_PROJECT)
    if not files:
        end = dt.datetime.now(dt.UTC).date()
        with err.status(f"generating {days * rows_per_day:,} rows of demo traffic into {svc.logs_root}…"):
            frame = generate(
                svc.catalog, project_id=DEMO_PROJECT, days=days, rows_per_day=rows_per_day, seed=42, end=end
            )
            write_partitioned(frame, svc.logs_root, DEMO_PROJECT)
        files = partition_files(svc.logs_root, DEMO_PROJECT)
    last = max(dt.date.fromisoformat(f.parent.name.removeprefix("date=")) for f in files)
    return last + dt.timedelta(days=1)


def routing_only(svc: core.Services, end: dt.date) -> list[Experiment]:
    """Replay the last seven days against each demo spec."""
    start = end - dt.timedelta(days=7)
    done = []
    for name in DEMO_SPECS:
        spec = yaml.safe_load(Path(CONFIGS_DIR / "experiments" / name).read_text())
        spec |= {"projectId": DEMO_PROJECT, "windowStart": f"{start}T00:00:00Z", "windowEnd": f"{end}T00:00:00Z"}
        experiment = core.create_experiment(svc, spec, create_missing_project=True)
        out.print(Rule(f"configs/experiments/{name}"))
        out.print(comparison(experiment))
        done.append(experiment)
    return done


SAMPLE = CONFIGS_DIR / "samples" / "litellm_standard_logging.jsonl"
SAMPLE_PROJECT = "demo-litellm"


def imported_sample(svc: core.Services) -> Experiment:
    """Import LiteLLM's own log records (``configs/samples``) and replay them against one candidate."""
    out.print(Rule(f"logs import {SAMPLE.relative_to(CONFIGS_DIR.parent)} (a file LiteLLM wrote)"))
    report = run_import([SAMPLE], svc.logs_root, SAMPLE_PROJECT, svc.catalog)
    for line in report.lines():
        out.print(line)
    days = [
        dt.date.fromisoformat(f.parent.name.removeprefix("date="))
        for f in partition_files(svc.logs_root, SAMPLE_PROJECT)
    ]
    spec = {
        "name": "LiteLLM sample: everything to gpt-4.1-mini",
        "projectId": SAMPLE_PROJECT,
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4.1-mini", "provider_credential_id": "pc_openai_default"},
        "windowStart": f"{min(days)}T00:00:00Z",
        "windowEnd": f"{max(days) + dt.timedelta(days=1)}T00:00:00Z",
    }
    experiment = core.create_experiment(svc, spec, create_missing_project=True)
    out.print(comparison(experiment))
    return experiment


def recap(experiments: list[Experiment]) -> Table:
    """One line per candidate."""
    table = Table(title="What each candidate would have changed", title_justify="left")
    for col in ("candidate", "cost", "p50", "p95", "errors", "experiment"):
        table.add_column(col)
    for e in experiments:
        assert e.deltas is not None
        d = e.deltas
        table.add_row(
            e.name,
            _pct(d.cost_delta_pct, d.cost_delta_pct_interval),
            _pct(d.latency_p50_delta_pct, d.latency_p50_delta_pct_interval),
            _pct(d.latency_p95_delta_pct, d.latency_p95_delta_pct_interval),
            _pct(d.error_rate_delta_pct, d.error_rate_delta_pct_interval),
            e.id,
        )
    table.caption = "In brackets: 90% intervals."
    return table


def learned_replay(svc: core.Services, before: Experiment, run: Experiment) -> None:
    """Replay ``before``'s spec again, now that ``run`` taught the project its candidate's token counts."""
    spec = {
        "projectId": before.project_id,
        "name": f"{before.name} (after {run.id})",
        "candidatePolicy": before.candidate_policy,
        "candidateConfig": before.candidate_config,
        "windowStart": before.window_start.isoformat(),
        "windowEnd": before.window_end.isoformat(),
        "hypothesis": before.hypothesis,
    }
    after = core.create_experiment(svc, spec)
    out.print(Rule(f"What {run.id} taught the replay"))
    for label, e in (("before", before), ("after", after)):
        assert e.candidate_summary is not None and e.deltas is not None
        c = e.candidate_summary
        spread = (
            f" (90%: {_usd(c.cost_usd_interval.low)} … {_usd(c.cost_usd_interval.high)})" if c.cost_usd_interval else ""
        )
        out.print(
            Text.assemble(
                f"{label:>6}: candidate cost {_usd(c.cost_usd)}{spread}, change ",
                _pct(e.deltas.cost_delta_pct, e.deltas.cost_delta_pct_interval),
            )
        )
    for m in after.token_multipliers:
        if m.output.source == "learned":
            out.print(
                f"  {m.baseline_model} -> {m.candidate_model}: prompt tokens x{m.input.point:.2f}, answer tokens "
                f"x{m.output.point:.2f} ({m.output.pairs} pairs)",
                style="dim",
            )


def with_responses_body(end: dt.date) -> dict[str, Any]:
    """Ten busy minutes of yesterday's traffic re-run through gpt-4o-mini (a few hundred pairs)."""
    start = dt.datetime.combine(end - dt.timedelta(days=1), dt.time(15, 0), tzinfo=dt.UTC)
    return {
        "name": "gpt-4o-mini quality check",
        "projectId": DEMO_PROJECT,
        "candidatePolicy": "single",
        "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
        "windowStart": start.isoformat(),
        "windowEnd": (start + dt.timedelta(minutes=10)).isoformat(),
        "mode": "with_responses",
        "sample": {"size": 1000, "method": "random"},
        "hypothesis": "gpt-4o-mini answers like the current mix on most prompts.",
    }


@contextmanager
def demo_provider(svc: core.Services) -> Iterator[core.Services]:
    """The real provider when OPENAI_API_KEY is set; otherwise the simulator on loopback, started and stopped here."""
    if os.environ.get("OPENAI_API_KEY"):
        err.print("OPENAI_API_KEY is set: the with-responses run calls OpenAI for real (spend cap applies).")
        yield svc
        return
    with SimServer(load_sim_config(DEFAULT_SIM_CONFIG)) as sim:
        err.print(f"No OPENAI_API_KEY: candidate calls go to the rehearsal SIMULATOR at {sim.base_url}.")
        credentials = svc.settings.home / "demo-credentials.yaml"
        credentials.write_text(
            "# Written by `rehearsal demo`: the guides' credential ids, pointed at the simulator.\n"
            "credentials:\n"
            + "".join(
                f"  pc_{vendor}_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n"
                for vendor in ("openai", "anthropic", "google")
            )
        )
        # A short call timeout keeps the simulator's injected hangs from holding the demo for a minute each.
        settings = svc.settings.model_copy(update={"call_timeout_s": 5.0})
        yield core.open_services(settings, logs=svc.logs_root, pricing=svc.pricing_path, credentials=credentials)


def with_responses(svc: core.Services, end: dt.date) -> Experiment:
    """Preflight, run, then the headline, the histogram and the five worst pairs."""
    body = with_responses_body(end)
    pre = core.preflight_experiment(svc, body, create_missing_project=True)
    out.print(Rule("With responses: gpt-4o-mini on ten minutes of real prompts"))
    out.print(preflight_table(pre))
    body["spendCapUsd"] = pre.suggested_spend_cap_usd
    with progress_bar("pairs") as report:
        experiment = core.create_experiment(svc, body, on_progress=report)
    out.print(comparison(experiment))
    out.print(histogram_view(core.experiment_histogram(svc, experiment.id)))
    worst, _ = core.experiment_results(
        svc, experiment.id, sort="similarity_asc", min_similarity=0.0, limit=5, include_texts=True
    )
    out.print(Rule("The five least similar pairs"))
    out.print(pairs_view(worst))
    return experiment


def judge_demo(svc: core.Services, experiment: Experiment) -> None:
    """A small stratified judge run on the demo experiment, with the breakdown and its intervals."""
    body: dict[str, Any] = {"judgeModel": "gpt-4o", "stratification": {"high": 30, "mild": 30, "major": 30}}
    pre = core.preflight_judge(svc, experiment.id, body)
    out.print(Rule("Judge eval: were the divergent answers worse, or just different?"))
    out.print(judge_preflight_table(pre))
    body["spendCapUsd"] = pre.suggested_spend_cap_usd
    with progress_bar("judge calls") as report:
        run = core.create_judge_run(svc, experiment.id, body, on_progress=report)
    out.print(judge_run_view(run))


DEMO_SCHEDULE = {
    "projectId": DEMO_PROJECT,
    "name": "daily gpt-4o-mini regression check (demo)",
    "candidatePolicy": "single",
    "candidateConfig": {"model": "gpt-4o-mini", "provider_credential_id": "pc_openai_default"},
    "cronExpression": "0 9 * * *",
    "windowHours": 48,
    "mode": "routing_only",
    "hypothesis": "Moving everything to gpt-4o-mini keeps latency and errors within bounds while cutting cost.",
    "successCriteria": {
        "logic": "and",
        "min_sample_size": 100,
        "predicates": [
            {"metric": "cost_delta_pct", "op": "lte", "value": -20},
            {"metric": "latency_p95_delta_pct", "op": "lte", "value": 25},
            {"metric": "error_rate_delta_pct", "op": "lte", "value": 50},
        ],
    },
}


def _first_fire(svc: core.Services, experiment_id: str, timeout_s: float = 180) -> Experiment:
    """The fire's experiment once its verdict is in (or it ended without one, or the wait timed out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = svc.store.get_experiment(experiment_id)
        ended = run.status not in ("queued", "running")
        if run.verdict is not None or (ended and run.status != "completed") or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def _flow_run_ended(flow_run_id: str, timeout_s: float = 60) -> None:
    """Wait for a flow run to reach a final state (its last task sends the webhooks)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.is_final():
                return
            time.sleep(0.3)


def scheduled(svc: core.Services) -> None:
    """A scheduled experiment on a Prefect server on loopback: its deployment, its first fire and verdict.

    A demo run again fires the schedule it made before rather than adding another one.
    """
    from service.serve import export_settings, prefect_api

    out.print(Rule("Scheduled experiment: the same question every day at 09:00 UTC"))
    export_settings(svc)
    with prefect_api(svc.settings.home) as (_, embedded):
        from flows.launch import RunnerThread
        from flows.scheduling import PrefectScheduler
        from service import schedules

        with err.status("starting a flow runner…"):
            runner = RunnerThread().start()
        try:
            scheduler = PrefectScheduler()
            known = [
                s
                for s in schedules.list_schedules(svc, scheduler, project_id=DEMO_PROJECT)
                if s.name == DEMO_SCHEDULE["name"]
            ]
            if known:
                fire = schedules.run_schedule_now(svc, known[0].id, scheduler)
                schedule = known[0]
            else:
                schedule = schedules.create_schedule(svc, DEMO_SCHEDULE, scheduler)
                fire = svc.store.get_experiment(schedule.last_experiment_id or "")
            with err.status(f"first fire of {schedule.id} (a flow run of its Prefect deployment)…"):
                run = _first_fire(svc, fire.id)
                if run.flow_run_id:
                    _flow_run_ended(run.flow_run_id)
            next_fire = f"{schedule.next_run_at:%Y-%m-%d %H:%M} UTC" if schedule.next_run_at else "paused"
            out.print(
                f"{schedule.id} {schedule.name}: cron {schedule.cron_expression} (UTC), window "
                f"{schedule.window_hours} h, next fire {next_fire}"
            )
            if run.verdict is not None:
                out.print(verdict_view(run.verdict))
            else:
                out.print(f"the fire ended {run.status}: {run.status_reason}")
            where = f"the Prefect database under {svc.settings.home / 'prefect'}" if embedded else "your Prefect server"
            out.print(
                f"Its deployment lives in {where}: `rehearsal serve` fires it on its cron and its Prefect UI "
                "shows it; edit or pause it there or with `rehearsal schedule …`."
            )
        finally:
            runner.stop()


def run_demo(svc: core.Services) -> None:
    """The whole demo."""
    end = ensure_demo_store(svc)
    experiments = routing_only(svc, end)
    imported_sample(svc)
    out.print(Rule("Recap"))
    out.print(recap(experiments))
    with demo_provider(svc) as paid:
        experiment = with_responses(paid, end)
        learned_replay(svc, experiments[0], experiment)
        judge_demo(paid, experiment)
    out.print(
        f"Next: `rehearsal experiment show {experiment.id}`, `rehearsal experiment results {experiment.id} "
        f"--sort similarity_asc`, `rehearsal judge list {experiment.id}`, `rehearsal experiment promote ID`, "
        "or write your own spec "
        "(see configs/experiments/) and `rehearsal experiment run SPEC`. To serve these results over REST: "
        f"`rehearsal keys create --project {DEMO_PROJECT}`, then `rehearsal serve` (API docs at /docs)."
    )
    scheduled(svc)
