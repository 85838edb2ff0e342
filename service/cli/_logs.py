"""``rehearsal logs``: generate, import and inspect log stores."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.errors import ConfigError, LogSchemaError
from engine.importers import import_openai_jsonl
from engine.logs import inspect_store, write_partitioned
from engine.synth import generate as generate_traffic
from service.cli._common import JsonOpt, PricingOpt, err, out, print_json, services

app = typer.Typer(help="Create, import and inspect Parquet log stores.", no_args_is_help=True)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Log-store root to write into.")],
    project: Annotated[str, typer.Option("--project", help="Project id of the rows.")],
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of traffic.")] = 7,
    rows_per_day: Annotated[int, typer.Option(min=1, help="Requests per day.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed: the same arguments write the same rows.")] = 0,
    end: Annotated[
        str | None, typer.Option(help="First day after the traffic (YYYY-MM-DD, default today UTC).")
    ] = None,
    metadata_only: Annotated[
        bool, typer.Option("--metadata-only", help="Leave request_json/response_text empty.")
    ] = False,
    pricing: PricingOpt = None,
) -> None:
    """Write realistic synthetic traffic (several models, diurnal volume, errors, topic-coherent text)."""
    try:
        end_date = dt.date.fromisoformat(end) if end else None
    except ValueError:
        raise ConfigError(f"--end {end!r} is not a date (YYYY-MM-DD)", param="end") from None
    started = time.perf_counter()
    frame = generate_traffic(
        services(pricing=pricing).catalog,
        project_id=project,
        days=days,
        rows_per_day=rows_per_day,
        seed=seed,
        end=end_date,
        metadata_only=metadata_only,
    )
    files = write_partitioned(frame, out_dir, project)
    err.print(
        f"wrote {frame.height:,} rows for project {project} into {len(files)} daily partitions under {out_dir} "
        f"in {time.perf_counter() - started:.1f}s"
    )


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL file to import.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Log-store root to write into.")],
    project: Annotated[str, typer.Option("--project", help="Project id of the rows.")],
    fmt: Annotated[str, typer.Option("--format", help="Input format.")] = "openai-jsonl",
    pricing: PricingOpt = None,
) -> None:
    """Import OpenAI-style chat request/response records (with usage) into the store."""
    if fmt != "openai-jsonl":
        raise ConfigError(f"--format {fmt!r} is not supported; use openai-jsonl", param="format")
    rows, files = import_openai_jsonl(file, out_dir, project, services(pricing=pricing).catalog)
    err.print(f"imported {rows:,} rows for project {project} into {len(files)} daily partitions under {out_dir}")


@app.command()
def inspect(
    root: Annotated[str, typer.Argument(help="Log-store root.")],
    json_: JsonOpt = False,
) -> None:
    """Row counts per project, day and model, and a schema check of every file."""
    counts, problems = inspect_store(root)
    if json_:
        print_json({"partitions": counts.to_dicts(), "problems": problems})
    else:
        table = Table(title=f"Log store {root}", title_justify="left")
        for col in ("project", "date", "model", "rows"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for project, date, model, rows in counts.iter_rows():
            table.add_row(project, date, model, f"{rows:,}")
        out.print(table)
        total = int(counts.get_column("rows").sum()) if counts.height else 0
        out.print(f"{total:,} rows; schema: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        for line in problems:
            err.print(f"[red]schema:[/red] {line}", soft_wrap=True)
    if problems:
        raise LogSchemaError(f"{len(problems)} problem(s) in the log store; the first: {problems[0]}")
