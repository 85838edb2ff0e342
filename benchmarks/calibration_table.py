"""How good the routing-only estimate is for the demo's candidates, before and after one learning run.

For each of the demo's four routing-only specs (``configs/experiments``), over one day of synthetic
traffic (``--rows`` rows), against the demo's simulator (``configs/sim.yaml``):

* ``naive``: the candidate's cost with the logged token counts as they are (what rehearsal reported
  before token multipliers);
* ``before``: the routing-only experiment's cost and 90% interval on priors alone (no runs yet);
* ``truth``: what the simulator bills for every moved row of the window (its own token counts of the
  prompt and of the answer it gives; a row whose logged call failed costs its prompt), plus the logged
  cost of every row that stays;
* ``after``: the same experiment after one with-responses run of the candidate (``--pairs`` pairs,
  seed 1) taught the project its token multipliers;
* the preflight's estimate error (actual ÷ estimated spend) of that learning run, whose preflight
  had nothing to learn from, and of a second run (seed 2) whose preflight used what the first taught.

Run from the repository root (a few minutes: Ray, the embedding model and the simulator start once)::

    .venv/bin/python benchmarks/calibration_table.py
    .venv/bin/python benchmarks/calibration_table.py --rows 5000 --pairs 200

Target (informational; the script always exits 0): ``truth`` inside the ``after`` interval for every
candidate (PASS/MISS per row), and the second run's estimate error closer to 1 than the first's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from engine.experiment import candidate_policy, spec_of, window_of
from engine.fanout import ensure_ray
from engine.logs import load_window, write_partitioned
from engine.providers._sim import DEFAULT_SIM_CONFIG, SimServer, load_sim_config, simulate_chat
from engine.replay import REPLAY_COLUMNS, candidate_rows
from engine.routing import RoutingContext
from engine.schema import Experiment
from engine.settings import CONFIGS_DIR, Settings
from engine.synth import generate
from service import core
from service.demo import DEMO_SPECS


def _spec(name: str, project: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((CONFIGS_DIR / "experiments" / name).read_text())
    return spec | {"projectId": project, "windowStart": start.isoformat(), "windowEnd": end.isoformat()}


def _naive_and_truth(svc: core.Services, experiment: Experiment, sim_config: Any) -> tuple[float, float]:
    """The candidate's cost at the logged tokens, and at the simulator's own token counts."""
    spec = spec_of(experiment)
    policy = candidate_policy(spec, svc.store)
    frame = load_window(svc.logs_root, window_of(spec), [*REPLAY_COLUMNS, "request_json", *sorted(policy.columns())])
    rows = candidate_rows(frame, policy, RoutingContext(svc.catalog, frame)).collect()
    naive = float(rows.get_column("candidate_cost_usd").sum())
    truth = 0.0
    for row in rows.select("model", "route_model", "cost_usd", "status", "request_json").iter_rows(named=True):
        if row["route_model"] == row["model"]:
            truth += row["cost_usd"] or 0.0
            continue
        reply = simulate_chat(sim_config, row["route_model"], json.loads(row["request_json"])["messages"], 1)
        price = svc.catalog.price(row["route_model"])
        answer = reply.completion_tokens if row["status"] == "ok" else 0
        truth += (reply.prompt_tokens * price.input_per_mtok + answer * price.output_per_mtok) / 1e6
    return naive, truth


def _cost(experiment: Experiment) -> tuple[float, float, float]:
    summary = experiment.candidate_summary
    assert summary is not None and summary.cost_usd_interval is not None
    return summary.cost_usd, summary.cost_usd_interval.low, summary.cost_usd_interval.high


def _paid_run(svc: core.Services, spec: dict[str, Any], pairs: int, seed: int) -> tuple[float, Experiment]:
    body = spec | {"mode": "with_responses", "sample": {"size": pairs, "method": "random", "seed": seed}}
    estimate = core.preflight_experiment(svc, body).estimate.estimated_cost_usd
    body["spendCapUsd"] = max(5 * estimate, 0.05)
    run = core.create_experiment(svc, body)
    return estimate, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the one-day window")
    parser.add_argument("--pairs", type=int, default=300, help="pairs of each with-responses run")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="rehearsal-calibration-"))
    sim_config = load_sim_config(DEFAULT_SIM_CONFIG)
    ensure_ray()
    with SimServer(sim_config) as sim:
        credentials = home / "credentials.yaml"
        credentials.write_text(
            "credentials:\n"
            + "".join(
                f"  pc_{v}_default: {{vendor: openai, base_url: '{sim.base_url}'}}\n"
                for v in ("openai", "anthropic", "google")
            )
        )
        settings = Settings(home=home / "home", sample_min=1, call_timeout_s=5.0)
        svc = core.open_services(settings, logs=str(home / "logs"), credentials=credentials)
        end = dt.datetime.now(dt.UTC).date()
        # Each candidate learns in a project of its own (the same traffic), so one's runs teach no other.
        projects = {name: name.removesuffix(".yaml") for name in DEMO_SPECS}
        for project in projects.values():
            frame = generate(svc.catalog, project_id=project, days=1, rows_per_day=args.rows, seed=42, end=end)
            write_partitioned(frame, svc.logs_root, project)
            core.create_project(svc, project)
        stop = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
        start = stop - dt.timedelta(days=1)

        print(f"One day, {args.rows:,} rows; learning runs of {args.pairs} pairs against the simulator.\n")
        header = (
            f"{'candidate':<38} {'naive':>9} {'before (90%)':>28} {'truth':>9} {'after (90%)':>28} "
            f"{'in after':>8} {'est. error run 1 -> 2':>22}"
        )
        print(header)
        print("-" * len(header))
        for name, project in projects.items():
            spec = _spec(name, project, start, stop)
            before = core.create_experiment(svc, spec)
            naive, truth = _naive_and_truth(svc, before, sim_config)
            _, first = _paid_run(svc, spec, args.pairs, 1)
            after = core.create_experiment(svc, spec)
            _, second = _paid_run(svc, spec, args.pairs, 2)
            b, a = _cost(before), _cost(after)
            inside = a[1] <= truth <= a[2]
            errors = [r.estimate_error.overall if r.estimate_error else None for r in (first, second)]
            error_text = " -> ".join("n/a" if e is None else f"{e:.2f}x" for e in errors)
            print(
                f"{before.name[:38]:<38} ${naive:>8.2f} ${b[0]:>8.2f} (${b[1]:>7.2f}-${b[2]:>7.2f}) ${truth:>8.2f} "
                f"${a[0]:>8.2f} (${a[1]:>7.2f}-${a[2]:>7.2f}) {'PASS' if inside else 'MISS':>8} {error_text:>22}"
            )
    print(f"\nScratch state under {home}")


if __name__ == "__main__":
    pl.Config.set_tbl_rows(50)
    main()
