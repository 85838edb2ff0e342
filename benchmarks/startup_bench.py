"""Benchmark the CLI's start-up: what a user waits for before a command does anything.

In one run, each figure the median of ``--repeat`` fresh processes:

* the reference: a bare ``python -c 'import polars'`` (no CLI can start faster than reading its data);
* ``rehearsal --help`` and ``rehearsal logs inspect --help`` through the installed console script;
* ``import service.cli`` alone, and which heavy packages it pulls in (it should pull in none of
  Ray, openai, torch, Prefect, FastAPI or the MCP SDK: they load when a command needs them).

Target (informational; the script always exits 0): ``rehearsal --help`` within 3x the reference.

Run from the repository root::

    .venv/bin/python benchmarks/startup_bench.py
    .venv/bin/python benchmarks/startup_bench.py --repeat 21
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 3.0
HEAVY = ("ray", "openai", "torch", "sentence_transformers", "prefect", "fastapi", "mcp", "mcp_types")
CLI = Path(sys.executable).with_name("rehearsal")


def _median_s(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _heavy_imports() -> list[str]:
    probe = f"import sys, json, service.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    return list(json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True).stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=11, help="fresh processes per figure (the median is shown)")
    args = parser.parse_args()

    _median_s([sys.executable, "-c", "import polars"], 2)  # warm the page cache
    reference = _median_s([sys.executable, "-c", "import polars"], args.repeat)
    rows = [
        ("rehearsal --help", _median_s([str(CLI), "--help"], args.repeat)),
        ("rehearsal logs inspect --help", _median_s([str(CLI), "logs", "inspect", "--help"], args.repeat)),
        ("import service.cli", _median_s([sys.executable, "-c", "import service.cli"], args.repeat)),
    ]
    print(f"reference: python -c 'import polars'  {reference * 1000:7.0f} ms   (median of {args.repeat})")
    for name, seconds in rows:
        ratio = seconds / reference
        verdict = ("PASS" if ratio <= TARGET else "MISS") if name == "rehearsal --help" else ""
        print(f"{name:<36} {seconds * 1000:7.0f} ms   {ratio:4.1f}x the reference   {verdict}")
    heavy = _heavy_imports()
    print(f"heavy packages `import service.cli` loads: {', '.join(heavy) or 'none'}")
    print(f"target: rehearsal --help within {TARGET:g}x the reference")


if __name__ == "__main__":
    main()
