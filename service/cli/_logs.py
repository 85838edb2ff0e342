"""``rehearsal logs``: generate, import and inspect log stores, and show one logged request."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from engine.errors import ConfigError, LogSchemaError
from engine.importers import IMPORTERS, run_import
from engine.logs import inspect_store, write_partitioned
from engine.pricing import load_catalog
from engine.schema import LoggedRequest
from engine.settings import get_settings
from engine.synth import generate as generate_traffic
from service import core
from service.cli._common import JsonOpt, LogsOpt, PricingOpt, ServerOpt, err, out, print_json, remote, services
from service.cli._render import logged_view

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
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Files to import (with their companions: a Batch input file, a Langfuse traces file, OTLP logs).",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Log-store root to write into.")],
    project: Annotated[str, typer.Option("--project", help="Project id of the rows.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="Input format: auto (tell it from the first records) or one of `logs formats`."),
    ] = "auto",
    strict: Annotated[bool, typer.Option("--strict", help="Refuse the whole import on the first bad record.")] = False,
    json_: JsonOpt = False,
    pricing: PricingOpt = None,
) -> None:
    """Import another tool's log files into the store (see `rehearsal logs formats`).

    Records whose request id the project already holds are skipped, so importing twice adds nothing.
    Rows without a cost are priced from the catalog at their own date. Bad records are refused and
    reported with their file and line; a file that cannot be read writes nothing.
    """
    started = time.perf_counter()
    catalog = services(pricing=pricing).catalog
    report = run_import(
        files,
        out_dir,
        project,
        catalog,
        fmt=fmt,
        strict=strict,
        on_progress=lambda n: err.print(f"  {n:,} records read …"),
    )
    if json_:
        print_json(report)
        return
    for line in report.lines():
        err.print(line)
    err.print(f"done in {time.perf_counter() - started:.1f}s")


@app.command()
def formats() -> None:
    """The formats `logs import` reads."""
    table = Table("format", "what it reads")
    for name, imp in sorted(IMPORTERS.items()):
        table.add_row(name, imp.summary)
    out.print(table)


@app.command()
def inspect(
    root: Annotated[str, typer.Argument(help="Log-store root.")],
    json_: JsonOpt = False,
    pricing: PricingOpt = None,
) -> None:
    """Row counts per project, day and model, whether the catalog prices each model, and a schema check."""
    counts, problems = inspect_store(root, load_catalog(pricing or get_settings().pricing))
    if json_:
        print_json({"partitions": counts.to_dicts(), "problems": problems})
    else:
        table = Table(title=f"Log store {root}", title_justify="left")
        for col in ("project", "date", "model", "rows", "priced"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for project, date, model, rows, priced in counts.iter_rows():
            table.add_row(project, date, model, f"{rows:,}", "yes" if priced else "[red]no[/red]")
        out.print(table)
        total = int(counts.get_column("rows").sum()) if counts.height else 0
        out.print(f"{total:,} rows; schema: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        unpriced = counts.filter(~pl.col("priced")).group_by("model").agg(pl.col("rows").sum()).sort("model")
        if unpriced.height:
            listed = ", ".join(f"{m} ({n:,} rows)" for m, n in unpriced.iter_rows())
            out.print(
                f"not priced by the catalog: {listed}; add them to a pricing override file (REHEARSAL_PRICING / "
                "--pricing; see `rehearsal pricing show`)"
            )
        for line in problems:
            err.print(f"[red]schema:[/red] {line}", soft_wrap=True)
    if problems:
        raise LogSchemaError(f"{len(problems)} problem(s) in the log store; the first: {problems[0]}")


@app.command()
def show(
    request_id: Annotated[str, typer.Argument(help="The logged request's id (a pair's request_id).")],
    project: Annotated[str | None, typer.Option("--project", help="Look in this project only.")] = None,
    logs: LogsOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show one logged request: its metadata, the prompt's messages and the logged answer."""
    if server:
        with remote(server, logs=logs) as api:
            entry = LoggedRequest.model_validate(api.get_logged_request(request_id, project_id=project))
    else:
        entry = core.get_logged_request(services(logs=logs), request_id, project_id=project)
    if json_:
        print_json(entry)
    else:
        out.print(logged_view(entry))
