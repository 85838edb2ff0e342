"""Benchmark `logs import` on LiteLLM logs: throughput and peak memory against a bare Polars read.

The input is LiteLLM ``StandardLoggingPayload`` JSON lines, made from the records LiteLLM's own logger
wrote for the test fixtures (``tests/engine/importers/fixtures/litellm/standard_logging.jsonl``): the
successful chat records are repeated with fresh ids and times spread over seven days, as a gateway's
log of that many calls would be. In one run, each in a fresh process so peak memory is its own:

* ``polars.read_ndjson`` of the whole file (the reference: a bare parse, no mapping, no output);
* ``run_import`` of the same file into an empty store (sniffing, mapping, de-duplication, pricing of
  rows without a cost, staged Parquet writes), at the full size and at a quarter of it.

Targets: import throughput at least 0.5x the bare read's (rows/s), and peak RSS flat in the file's size
(the full-size import's peak within 1.5x the quarter-size import's). At the default size (200,000
records, about 1.7 GB) it takes a few minutes on two cores; ``--records 1000000`` writes ~9 GB and needs
that much free disk and, for the bare read, more memory than the import.

Run from the repository root::

    .venv/bin/python benchmarks/import_bench.py
    .venv/bin/python benchmarks/import_bench.py --records 50000

The targets are informational; the script always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "engine" / "importers" / "fixtures" / "litellm" / "standard_logging.jsonl"
THROUGHPUT_TARGET = 0.5
RSS_FLAT_TARGET = 1.5
START = 1_796_000_000.0  # 2026-11-29, unix seconds
SPAN_S = 7 * 86_400


def templates() -> list[dict]:
    out = []
    for line in FIXTURE.read_text().splitlines():
        record = orjson.loads(line)
        chat = record.get("call_type") == "completion" and not record.get("cache_hit")
        if chat and record.get("status") == "success":
            out.append(record)
    return out


def write_input(path: Path, n: int) -> None:
    bases = templates()
    with path.open("wb") as fh:
        for i in range(n):
            record = dict(bases[i % len(bases)])
            start = START + SPAN_S * i / n
            took = record["endTime"] - record["startTime"]
            record.update(id=f"bench-{i}", litellm_call_id=f"call-{i}", startTime=start, endTime=start + took)
            record["completionStartTime"] = start + took
            fh.write(orjson.dumps(record) + b"\n")


CHILD = {
    "bare": "import polars as pl, sys; print(pl.read_ndjson(sys.argv[1]).height)",
    "import": (
        "import sys; from engine.importers import run_import; from engine.pricing import load_catalog; "
        "from engine.settings import Settings; "
        "r = run_import([sys.argv[1]], sys.argv[2], 'bench', load_catalog(Settings().pricing), fmt='litellm'); "
        "print(r.rows_written)"
    ),
}


def timed(kind: str, *args: str) -> tuple[float, int, int]:
    """Seconds, rows and peak RSS (bytes) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD[kind], *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{kind} failed ({status})")
    return seconds, int(output.strip().splitlines()[-1]), usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        base = Path(tmp)
        small, full = base / "quarter.jsonl", base / "full.jsonl"
        write_input(small, args.records // 4)
        write_input(full, args.records)
        size_gb = full.stat().st_size / 1e9
        q_s, q_rows, q_rss = timed("import", str(small), str(base / "store-q"))
        i_s, i_rows, i_rss = timed("import", str(full), str(base / "store"))
        b_s, b_rows, b_rss = timed("bare", str(full))
    assert i_rows == b_rows == args.records, (i_rows, b_rows)
    ratio = (i_rows / i_s) / (b_rows / b_s)
    flat = i_rss / q_rss
    print(f"LiteLLM StandardLoggingPayload, {args.records:,} records ({size_gb:.2f} GB)")
    print(f"  bare polars.read_ndjson: {b_s:6.1f} s  {b_rows / b_s:10,.0f} rows/s  peak RSS {b_rss / 2**20:7,.0f} MiB")
    print(f"  logs import            : {i_s:6.1f} s  {i_rows / i_s:10,.0f} rows/s  peak RSS {i_rss / 2**20:7,.0f} MiB")
    print(f"  logs import (1/4 size) : {q_s:6.1f} s  {q_rows / q_s:10,.0f} rows/s  peak RSS {q_rss / 2**20:7,.0f} MiB")
    verdict = "PASS" if ratio >= THROUGHPUT_TARGET else "MISS"
    print(f"throughput: {ratio:.2f}x the bare read (target >= {THROUGHPUT_TARGET}x): {verdict}")
    verdict = "PASS" if flat <= RSS_FLAT_TARGET else "MISS"
    print(f"peak RSS at 4x the records: {flat:.2f}x (target <= {RSS_FLAT_TARGET}x, flat): {verdict}")
    print(json.dumps({"records": args.records, "throughput_ratio": round(ratio, 3), "rss_growth": round(flat, 3)}))


if __name__ == "__main__":
    main()
