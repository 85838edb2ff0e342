"""``rehearsal demo``: a week of synthetic traffic replayed against a few instructive candidates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from rich.rule import Rule
from rich.table import Table

from engine.logs import partition_files, write_partitioned
from engine.schema import Experiment
from engine.settings import CONFIGS_DIR
from engine.synth import generate
from service import core
from service.cli._common import err, out
from service.cli._render import _pct, comparison

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


def run_demo(svc: core.Services) -> None:
    """The whole demo."""
    end = ensure_demo_store(svc)
    experiments = routing_only(svc, end)
    out.print(Rule("Recap"))
    out.print(recap(experiments))
    out.print(
        "Next: `rehearsal experiment show ID`, `rehearsal experiment promote ID`, or write your own spec "
        "(see configs/experiments/) and `rehearsal experiment run SPEC`."
    )
