"""``rehearsal demo``: a week of synthetic traffic replayed against a few instructive candidates."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.rule import Rule
from rich.table import Table

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
    comparison,
    histogram_view,
    judge_preflight_table,
    judge_run_view,
    pairs_view,
    preflight_table,
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


def recap(experiments: list[Experiment]) -> Table:
    """One line per candidate."""
    table = Table(title="What each candidate would have changed", title_justify="left")
    for col in ("candidate", "cost", "p50", "p95", "errors", "experiment"):
        table.add_column(col)
    for e in experiments:
        assert e.deltas is not None
        table.add_row(
            e.name,
            _pct(e.deltas.cost_delta_pct),
            _pct(e.deltas.latency_p50_delta_pct),
            _pct(e.deltas.latency_p95_delta_pct),
            _pct(e.deltas.error_rate_delta_pct),
            e.id,
        )
    return table


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
            f"# Written by `rehearsal demo`: the guides' credential id, pointed at the simulator.\n"
            f"credentials:\n  pc_openai_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n"
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


def run_demo(svc: core.Services) -> None:
    """The whole demo."""
    end = ensure_demo_store(svc)
    experiments = routing_only(svc, end)
    out.print(Rule("Recap"))
    out.print(recap(experiments))
    with demo_provider(svc) as paid:
        experiment = with_responses(paid, end)
        judge_demo(paid, experiment)
    out.print(
        f"Next: `rehearsal experiment show {experiment.id}`, `rehearsal experiment results {experiment.id} "
        f"--sort similarity_asc`, `rehearsal judge list {experiment.id}`, `rehearsal experiment promote ID`, "
        "or write your own spec "
        "(see configs/experiments/) and `rehearsal experiment run SPEC`. To serve these results over REST: "
        f"`rehearsal keys create --project {DEMO_PROJECT}`, then `rehearsal serve` (API docs at /docs)."
    )
