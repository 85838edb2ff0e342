"""Benchmark a scheduled experiment's fire: from its scheduled time to the webhook delivered.

Setup (not timed), in a temporary directory: a log store whose traffic runs up
to now (``--rows-per-day`` rows a day), a Prefect server on loopback
(``service.serve.EmbeddedPrefect``), a flow runner (``RunnerThread``, polling
every 0.5 s as ``rehearsal serve`` does), a loopback webhook receiver
subscribed to ``experiment.completed``, and a routing-only scheduled experiment
(24 h window, three predicates) created through the service layer.

Measured: ``--fires`` fires, each a flow run of the schedule's deployment put in
Prefect's ``Scheduled`` state for two seconds ahead, exactly like a cron fire;
for each, from the scheduled time to: the runner picking it up (Prefect's
``start_time``), the experiment completed, the verdict stored, and the
``experiment.completed`` delivery received (its signature checked).

References, measured in the same run: the same replay and verdict in-process
(``execution.run_experiment`` on a stored experiment of the same window), and
one signed POST to the receiver.

Run from the repository root::

    .venv/bin/python benchmarks/schedule_bench.py [--fires 5] [--rows-per-day 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
)

from engine.logs import write_partitioned
from engine.settings import Settings
from engine.synth import generate
from engine.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_target, send, verify
from service import core
from service.serve import EmbeddedPrefect, export_settings

PROJECT = "bench"


class Receiver:
    """Records when each event arrives."""

    def __init__(self, secret: list[str]) -> None:
        self.arrivals: dict[str, tuple[float, dict[str, Any]]] = {}
        self.secret = secret
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                at = time.time()
                valid = not receiver.secret or verify(
                    receiver.secret[0], body, self.headers[TIMESTAMP_HEADER], self.headers[SIGNATURE_HEADER]
                )
                item = json.loads(body)
                receiver.arrivals[item["data"].get("experiment_id", item["id"])] = (at, item | {"valid": valid})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=5)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.update({"REHEARSAL_HOME": str(home), "REHEARSAL_WEBHOOK_ALLOW_HOSTS": '["127.0.0.1"]'})
        settings = Settings()
        svc = core.open_services(settings)
        tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        frame = generate(svc.catalog, project_id=PROJECT, days=3, rows_per_day=args.rows_per_day, seed=5, end=tomorrow)
        write_partitioned(frame, svc.logs_root, PROJECT)
        core.create_project(svc, PROJECT)
        export_settings(svc)
        prefect = EmbeddedPrefect(Path(tmp) / "prefect").start()
        os.environ["PREFECT_API_URL"] = prefect.api_url
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.states import Scheduled

        from engine import execution, scheduled_runs
        from flows.launch import RunnerThread
        from flows.scheduling import PrefectScheduler
        from service import schedules

        runner = RunnerThread(poll_seconds=0.5).start()
        secret: list[str] = []
        receiver = Receiver(secret)
        try:
            hook = schedules.create_webhook(
                svc, {"projectId": PROJECT, "url": receiver.url, "events": ["experiment.completed"]}
            )
            secret.append(hook.secret)
            body = {
                "projectId": PROJECT,
                "name": "bench",
                "candidatePolicy": "single",
                "candidateConfig": {"model": "gpt-4o-mini"},
                "cronExpression": "0 9 * * *",
                "windowHours": 24,
                "successCriteria": {
                    "predicates": [
                        {"metric": "cost_delta_pct", "op": "lte", "value": 0},
                        {"metric": "latency_p95_delta_pct", "op": "lte", "value": 25},
                        {"metric": "error_rate_delta_pct", "op": "lte", "value": 50},
                    ]
                },
            }
            scheduler = PrefectScheduler()
            schedule = schedules.create_schedule(svc, body, scheduler)
            deadline = time.monotonic() + 120
            while schedule.last_experiment_id not in receiver.arrivals and time.monotonic() < deadline:
                time.sleep(0.1)  # the first fire (at create) warms things up
            assert schedule.deployment_id is not None
            rows = []
            for _ in range(args.fires):
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
                with get_client(sync_client=True) as client:
                    flow_run = client.create_flow_run_from_deployment(
                        UUID(schedule.deployment_id), state=Scheduled(scheduled_time=due)
                    )
                deadline = time.monotonic() + 180
                experiment_id = None
                while time.monotonic() < deadline:
                    runs = [
                        r
                        for r in schedules.schedule_runs(svc, schedule.id)
                        if r.scheduled_for is not None and abs((r.scheduled_for - due).total_seconds()) < 1e-3
                    ]
                    if runs and runs[0].id in receiver.arrivals:
                        experiment_id = runs[0].id
                        break
                    time.sleep(0.05)
                assert experiment_id is not None, "the fire's webhook never arrived"
                experiment = svc.store.get_experiment(experiment_id)
                with get_client(sync_client=True) as client:
                    started = client.read_flow_run(flow_run.id).start_time
                arrived, item = receiver.arrivals[experiment_id]
                t0 = due.timestamp()
                rows.append(
                    {
                        "picked up": (started.timestamp() - t0) if started else float("nan"),
                        "experiment completed": experiment.completed_at.timestamp() - t0
                        if experiment.completed_at
                        else float("nan"),
                        "webhook delivered": arrived - t0,
                        "rows": experiment.progress.total,
                        "valid": item["valid"],
                    }
                )

            # references: the same replay and verdict in-process; one signed POST
            ctx = svc.run_context()
            local = []
            for _ in range(3):
                stored = scheduled_runs.start_fire(ctx, schedules.get_schedule(svc, schedule.id, scheduler), due)
                t = time.perf_counter()
                execution.run_experiment(ctx, stored.id)
                local.append(time.perf_counter() - t)
            posts = []
            for _ in range(10):
                t = time.perf_counter()
                send(
                    check_target(receiver.url, ["127.0.0.1"]),
                    hook.secret,
                    {"id": "evt_ref", "type": "ping", "created_at": "", "data": {}},
                )
                posts.append(time.perf_counter() - t)
        finally:
            runner.stop()
            prefect.stop()

    ref = statistics.median(local)
    print(
        f"scheduled fires: {len(rows)}, {rows[0]['rows']:,} rows per 24 h window, signatures valid: "
        f"{all(r['valid'] for r in rows)}"
    )
    print(f"{'from the scheduled time to':<28}{'p50 s':>8}{'p95 s':>8}{'p50 / in-process':>18}")
    for step in ("picked up", "experiment completed", "webhook delivered"):
        values = [r[step] for r in rows]
        print(f"{step:<28}{pct(values, 0.5):>8.2f}{pct(values, 0.95):>8.2f}{pct(values, 0.5) / ref:>17.1f}x")
    print(f"{'reference: in-process replay':<28}{ref:>8.2f}")
    print(f"{'reference: one signed POST':<28}{statistics.median(posts) * 1000:>7.1f}ms")


if __name__ == "__main__":
    main()
