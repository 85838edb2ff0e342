"""A standalone load generator for an experiment's results pages and similarity histogram.

Run it as its own process against a served rehearsal (``rehearsal serve``, the
API bench's server, or the API tests' loopback uvicorn)::

    .venv/bin/python benchmarks/load_test.py --url http://127.0.0.1:8000 --key rhk_… \\
        --experiment exp_… --clients 50 --seconds 30 [--json]

Each of ``--clients`` clients has its own keep-alive connection (one
``httpx.AsyncClient``) and loops, until ``--seconds`` have passed, over:

* a results page with a random sort, ``candidate_status`` filter, optional
  similarity bounds and page size, then up to two more pages following
  ``next_cursor`` (reported as ``results`` and ``results+cursor``);
* a similarity histogram at a random threshold (``histogram``).

Any non-2xx answer, a body without its ``data``, or an exception (timeout,
connection reset) is an error. The report gives the total requests, requests
per second, the error count and p50 / p95 / max latency per endpoint;
``--json`` prints it as JSON. The exit status is 1 if there was any error.
Requires only httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

SORTS = ["similarity_asc", "similarity_desc", "cost_delta_desc", "cost_delta_asc", "timestamp_desc", "timestamp_asc"]
STATUSES = ["ok", "error", "any"]
LIMITS = [20, 50, 100]
#: Pages followed after the first one of a query, at most.
MAX_EXTRA_PAGES = 2
#: Error messages kept for the report.
KEEP_ERRORS = 10
#: A client's pause after a failed request, so a down server is not hammered in a tight loop.
ERROR_PAUSE_S = 0.1


@dataclass
class Tally:
    """What the clients saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def error(self, endpoint: str, what: str) -> None:
        self.errors[endpoint] += 1
        if len(self.samples) < KEEP_ERRORS:
            self.samples.append(f"{endpoint}: {what}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def results_query(rng: random.Random) -> dict[str, Any]:
    """A random but valid results query."""
    params: dict[str, Any] = {
        "sort": rng.choice(SORTS),
        "candidate_status": rng.choice(STATUSES),
        "limit": rng.choice(LIMITS),
    }
    bounds = rng.random()
    if bounds < 0.3:
        params["min_similarity"] = round(rng.uniform(0.0, 0.6), 2)
    elif bounds < 0.45:
        params["max_similarity"] = round(rng.uniform(0.5, 1.0), 2)
    elif bounds < 0.6:
        low = round(rng.uniform(0.0, 0.5), 2)
        params.update(min_similarity=low, max_similarity=round(low + 0.4, 2))
    return params


async def timed_get(
    client: httpx.AsyncClient, tally: Tally, endpoint: str, path: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """GET ``path``; records the latency (successes only) or the error; returns the JSON body on success."""
    started = time.perf_counter()
    try:
        response = await client.get(path, params=params)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    except Exception as exc:  # timeouts, resets, bad JSON: all count as errors
        what = f"{type(exc).__name__}: {exc}"
    else:
        elapsed = time.perf_counter() - started
        if isinstance(body, dict) and "data" in body and response.is_success:
            tally.latencies[endpoint].append(elapsed)
            return body
        what = f"HTTP {response.status_code}: {response.text[:200]}"
    tally.error(endpoint, what)
    await asyncio.sleep(ERROR_PAUSE_S)
    return None


async def one_client(index: int, args: argparse.Namespace, deadline: float, tally: Tally) -> None:
    """Loop over results pages (following cursors) and histograms until the deadline."""
    rng = random.Random(args.seed * 1000 + index)
    base = f"/manage/v1/experiments/{args.experiment}"
    async with httpx.AsyncClient(
        base_url=args.url.rstrip("/"),
        headers={"Authorization": f"Bearer {args.key}"},
        timeout=args.timeout,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    ) as client:
        await asyncio.sleep(rng.uniform(0, 0.2))  # no lock-step start
        while time.monotonic() < deadline:
            params = results_query(rng)
            body = await timed_get(client, tally, "results", f"{base}/results", params)
            for _ in range(rng.randint(0, MAX_EXTRA_PAGES)):
                if body is None or not body.get("next_cursor") or time.monotonic() >= deadline:
                    break
                params = {**params, "cursor": body["next_cursor"]}
                body = await timed_get(client, tally, "results+cursor", f"{base}/results", params)
            if time.monotonic() >= deadline:
                break
            threshold = rng.choice([0.5, 0.7, 0.8, 0.85, 0.9, 0.95])
            await timed_get(client, tally, "histogram", f"{base}/similarity-histogram", {"threshold": threshold})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the clients; the report."""
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    await asyncio.gather(*(one_client(i, args, deadline, tally) for i in range(args.clients)))
    elapsed = time.monotonic() - started
    ok = sum(len(v) for v in tally.latencies.values())
    errors = sum(tally.errors.values())
    endpoints = {}
    for name in sorted(set(tally.latencies) | set(tally.errors)):
        values = tally.latencies.get(name, [])
        endpoints[name] = {
            "requests": len(values) + tally.errors[name],
            "errors": tally.errors[name],
            "p50_ms": round(percentile(values, 50) * 1000, 2) if values else None,
            "p95_ms": round(percentile(values, 95) * 1000, 2) if values else None,
            "max_ms": round(max(values) * 1000, 2) if values else None,
        }
    return {
        "url": args.url,
        "experiment": args.experiment,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": ok + errors,
        "requests_per_s": round((ok + errors) / elapsed, 1) if elapsed else 0.0,
        "errors": errors,
        "endpoints": endpoints,
        "error_samples": tally.samples,
    }


def render(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    lines = [
        f"{report['clients']} clients for {report['seconds']:.1f} s against {report['url']} "
        f"(experiment {report['experiment']})",
        f"requests {report['requests']:,}  ({report['requests_per_s']:,.1f}/s)  errors {report['errors']}",
        f"{'endpoint':<16}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}",
    ]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for name, e in report["endpoints"].items():
        lines.append(
            f"{name:<16}{e['requests']:>10,}{e['errors']:>8}{ms(e['p50_ms']):>10}{ms(e['p95_ms']):>10}"
            f"{ms(e['max_ms']):>10}"
        )
    lines += [f"  error: {s}" for s in report["error_samples"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the load, print the report; 1 if any request failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="a management key that may read the experiment")
    parser.add_argument("--experiment", required=True, help="a with-responses experiment id (exp_…)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients, one connection each")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send requests")
    parser.add_argument("--timeout", type=float, default=30.0, help="timeout of one request (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' query choices")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds positive")
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
