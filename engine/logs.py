"""The log store: a hive-partitioned Parquet tree of gateway request logs.

Layout: ``<root>/project_id=<id>/date=<YYYY-MM-DD>/<any>.parquet``. Scans are
lazy; partitions outside the project and the window's dates are never opened.
Each file is checked once against the log schema before it is read, and an
error names the file, the column, the expected and the found type.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from engine.errors import EmptyWindowError, LogSchemaError

if TYPE_CHECKING:
    from engine.pricing import Catalog

#: Column -> canonical type. Required columns first.
REQUIRED: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "model": pl.String(),
    "provider": pl.String(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "latency_ms": pl.Float64(),
    "cost_usd": pl.Float64(),
    "status": pl.String(),
}
OPTIONAL: dict[str, pl.DataType] = {
    "cached_input_tokens": pl.Int64(),
    "error_type": pl.String(),
    "end_user_id": pl.String(),
    "tags": pl.List(pl.String()),
    "routing_config_version": pl.Int64(),
    "request_json": pl.String(),
    "response_text": pl.String(),
}
SCHEMA: dict[str, pl.DataType] = {"project_id": pl.String(), **REQUIRED, **OPTIONAL}

_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
STATUSES = ("ok", "error")
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_input_tokens")


@dataclass(frozen=True)
class Filters:
    """Narrow a window: each list is any-of; an empty list means no filter."""

    models: Sequence[str] = ()
    end_user_ids: Sequence[str] = ()
    tags: Sequence[str] = ()

    def expr(self) -> pl.Expr:
        """The filters as one boolean expression over log columns."""
        out = pl.lit(True)
        if self.models:
            out &= pl.col("model").is_in(list(self.models))
        if self.end_user_ids:
            out &= pl.col("end_user_id").is_in(list(self.end_user_ids)).fill_null(False)
        if self.tags:
            has_any = pl.any_horizontal([pl.col("tags").list.contains(t) for t in self.tags])
            out &= has_any.fill_null(False)
        return out

    @property
    def columns(self) -> set[str]:
        """Log columns the filters read."""
        cols = {"model"} if self.models else set()
        if self.end_user_ids:
            cols.add("end_user_id")
        if self.tags:
            cols.add("tags")
        return cols


@dataclass(frozen=True)
class Window:
    """A half-open UTC time range ``[start, end)`` over one project's logs."""

    project_id: str
    start: dt.datetime
    end: dt.datetime
    filters: Filters = field(default_factory=Filters)

    def dates(self) -> list[dt.date]:
        """Every calendar date (UTC) the window touches."""
        last = (self.end - dt.timedelta(microseconds=1)).date()
        day, out = self.start.date(), []
        while day <= last:
            out.append(day)
            day += dt.timedelta(days=1)
        return out


def _is_remote(root: str) -> bool:
    return "://" in root


def _partition_date(name: str) -> str | None:
    """``YYYY-MM-DD`` of a ``date=`` folder name that is a real date, else ``None``."""
    match = _PARTITION.match(name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1)).isoformat()
    except ValueError:
        return None


def bad_partitions(root: str, project_id: str) -> list[Path]:
    """Folders of ``project_id`` named ``date=…`` that are not a real date: their rows would never be read."""
    project_dir = Path(root) / f"project_id={project_id}"
    if not project_dir.is_dir():
        return []
    return [p for p in sorted(project_dir.iterdir()) if p.name.startswith("date=") and _partition_date(p.name) is None]


def partition_files(
    root: str, project_id: str, dates: Iterable[dt.date] | None = None, *, strict: bool = True
) -> list[Path]:
    """Parquet files of ``project_id`` under ``root``, limited to ``dates`` when given.

    A ``date=`` folder that is not a real date is a ``LogSchemaError`` (``strict``): its rows would be
    missed silently. ``logs inspect`` lists such folders apart instead.
    """
    project_dir = Path(root) / f"project_id={project_id}"
    if not project_dir.is_dir():
        return []
    bad = bad_partitions(root, project_id) if strict else []
    if bad:
        raise LogSchemaError(
            f"{bad[0]}: not a date=YYYY-MM-DD partition, so its files would never be read", param="date"
        )
    wanted = None if dates is None else {d.isoformat() for d in dates}
    files: list[Path] = []
    for part in sorted(project_dir.iterdir()):
        day = _partition_date(part.name)
        if day is None or (wanted is not None and day not in wanted):
            continue
        files.extend(sorted(part.glob("*.parquet")))
    return files


def _row_checks(columns: set[str]) -> list[tuple[str, str, pl.Expr]]:
    """``(column, problem, true on a bad row)`` for the log schema's value rules over ``columns``."""
    checks = [(c, "is missing (null)", pl.col(c).is_null()) for c in REQUIRED if c in columns]
    checks += [(c, "is negative", pl.col(c) < 0) for c in TOKEN_COLUMNS if c in columns]
    if {"cached_input_tokens", "input_tokens"} <= columns:
        checks.append(
            ("cached_input_tokens", "is above input_tokens", pl.col("cached_input_tokens") > pl.col("input_tokens"))
        )
    checks += [
        (c, "is negative or not finite", (pl.col(c) < 0) | ~pl.col(c).is_finite())
        for c in ("latency_ms", "cost_usd")
        if c in columns
    ]
    if "status" in columns:
        checks.append(("status", "is neither 'ok' nor 'error'", ~pl.col("status").is_in(list(STATUSES))))
    if "request_json" in columns:
        messages = pl.col("request_json").str.json_path_match("$.messages")
        bad = pl.col("request_json").is_not_null() & ~messages.str.starts_with("[").fill_null(False)
        checks.append(("request_json", "is not an OpenAI chat request (a JSON object with a messages list)", bad))
    return checks


def content_problems(frame: pl.DataFrame | pl.LazyFrame, *, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(column, sentence)`` for every value rule the rows break, with how many rows and one request id.

    One pass over the frame; only the columns it holds (less ``skip``) are checked.
    """
    lazy = frame.lazy()
    columns = set(lazy.collect_schema().names()) - set(skip)
    checks = _row_checks(columns)
    if not checks:
        return []
    example = pl.col("request_id") if "request_id" in columns else pl.lit(None, pl.String)
    counts = lazy.select(
        *(bad.fill_null(False).sum().alias(f"n{i}") for i, (_, _, bad) in enumerate(checks)),
        *(example.filter(bad.fill_null(False)).first().alias(f"e{i}") for i, (_, _, bad) in enumerate(checks)),
    ).collect()
    found = []
    for i, (column, problem, _) in enumerate(checks):
        n = int(counts[f"n{i}"][0] or 0)
        if n:
            where = f" (e.g. request {counts[f'e{i}'][0]})" if counts[f"e{i}"][0] is not None else ""
            found.append((column, f"{column} {problem} in {n:,} row{'s' if n > 1 else ''}{where}"))
    return found


def _compatible(found: object, expected: pl.DataType) -> bool:
    if not isinstance(found, pl.DataType):
        return False
    if found == expected:
        return True
    if expected == pl.String():
        return found in (pl.String(), pl.Categorical(), pl.Null()) or isinstance(found, pl.Enum | pl.Categorical)
    if expected == pl.Int64():
        return found.is_integer() or found == pl.Null()
    if expected == pl.Float64():
        return found.is_numeric() or found == pl.Null()
    if isinstance(expected, pl.Datetime):
        return isinstance(found, pl.Datetime)
    if isinstance(expected, pl.List):
        return (isinstance(found, pl.List) and _compatible(found.inner, pl.String())) or found == pl.Null()
    return False


def check_file(path: Path | str) -> pl.Schema:
    """Read a file's Parquet footer and check it against the log schema."""
    try:
        schema = pl.Schema(pl.read_parquet_schema(path))
    except Exception as exc:  # polars raises several types for a corrupt footer
        raise LogSchemaError(f"{path}: not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
    for column, expected in REQUIRED.items():
        if column not in schema:
            raise LogSchemaError(f"{path}: required column {column!r} is missing (expected {expected})", param=column)
    for column, expected in {**REQUIRED, **OPTIONAL}.items():
        found = schema.get(column)
        if found is not None and not _compatible(found, expected):
            raise LogSchemaError(f"{path}: column {column!r} has type {found}, expected {expected}", param=column)
    return schema


def _conform(frame: pl.LazyFrame, schema: pl.Schema, project_id: str) -> pl.LazyFrame:
    """Cast a checked file's columns to the canonical types; fill absent optional ones."""
    exprs: list[pl.Expr] = []
    for column, expected in SCHEMA.items():
        found = schema.get(column)
        if column == "project_id" and found is None:
            exprs.append(pl.lit(project_id, pl.String()).alias(column))
        elif found is None:
            default = 0 if column == "cached_input_tokens" else None
            exprs.append(pl.lit(default, expected).alias(column))
        elif isinstance(expected, pl.Datetime) and isinstance(found, pl.Datetime) and found.time_zone is None:
            exprs.append(pl.col(column).dt.replace_time_zone("UTC").dt.cast_time_unit("us"))
        elif found != expected:
            exprs.append(pl.col(column).cast(expected))
        else:
            exprs.append(pl.col(column))
    out = frame.select(exprs)
    return out.with_columns(pl.col("cached_input_tokens").fill_null(0))


def scan_window(root: str, window: Window, columns: Iterable[str] | None = None) -> pl.LazyFrame:
    """A lazy frame of the window's rows (after filters), canonical types, pruned partitions.

    Raises ``LogSchemaError`` naming the first bad file. ``columns`` limits the
    result to those log columns (the ones a replay needs).
    """
    wanted = list(dict.fromkeys(columns)) if columns is not None else list(SCHEMA)
    unknown = [c for c in wanted if c not in SCHEMA]
    if unknown:
        raise LogSchemaError(f"unknown log column(s): {', '.join(unknown)}", param=unknown[0])
    in_window = (pl.col("timestamp") >= window.start) & (pl.col("timestamp") < window.end)
    predicate = in_window & window.filters.expr()
    if _is_remote(root):
        frame = pl.scan_parquet(
            f"{root.rstrip('/')}/project_id={window.project_id}/**/*.parquet", hive_partitioning=True
        )
        frame = frame.filter(pl.col("date").is_in(window.dates()))
        return frame.filter(predicate).select(wanted)
    files = partition_files(root, window.project_id, window.dates())
    # Each file is conformed on its own: files written at different times may
    # carry different optional columns or integer widths.
    frames = [
        _conform(pl.scan_parquet(path), check_file(path), window.project_id).filter(predicate).select(wanted)
        for path in files
    ]
    if not frames:
        return pl.LazyFrame(schema={c: SCHEMA[c] for c in wanted})
    return pl.concat(frames, how="vertical")


def store_projects(root: str) -> list[str]:
    """The projects with a ``project_id=`` folder in a local log store (none for a remote one)."""
    base = Path(root)
    if _is_remote(root) or not base.is_dir():
        return []
    return sorted(p.name.removeprefix("project_id=") for p in base.iterdir() if p.name.startswith("project_id="))


def find_request(root: str, project_id: str, request_id: str) -> dict[str, Any] | None:
    """The logged row of ``request_id`` in ``project_id``'s store (every column, canonical types), or ``None``.

    One lazy scan of the project's files with the ``request_id`` filter pushed into the Parquet reader;
    its time grows with the project's log volume (about 30 ms over 2M rows on two cores).
    """
    if _is_remote(root):
        frame = pl.scan_parquet(f"{root.rstrip('/')}/project_id={project_id}/**/*.parquet", hive_partitioning=True)
        frame = frame.select([c for c in SCHEMA if c != "project_id"]).with_columns(project_id=pl.lit(project_id))
    else:
        files = partition_files(root, project_id, strict=False)
        if not files:
            return None
        frame = pl.concat(
            [_conform(pl.scan_parquet(path), check_file(path), project_id) for path in files], how="vertical"
        )
    found = frame.filter(pl.col("request_id") == request_id).head(1).collect()
    return found.row(0, named=True) if found.height else None


def load_window(root: str, window: Window, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """Collect the window's rows; an ``EmptyWindowError`` when none match."""
    if window.end <= window.start:
        raise EmptyWindowError("windowEnd must be after windowStart", param="windowEnd")
    frame = scan_window(root, window, columns).collect()
    # Prompts are parsed only where they are sent: with-responses runs check their sample (``check_prompts``).
    problems = content_problems(frame, skip=["request_json"])
    if problems:
        column, sentence = problems[0]
        raise LogSchemaError(
            f"the logs of project {window.project_id!r} in the window break the log schema: {sentence}; "
            "fix or re-import them",
            param=column,
        )
    if frame.height == 0:
        raise EmptyWindowError(
            f"no log rows for project {window.project_id!r} in "
            f"[{window.start.isoformat()}, {window.end.isoformat()}) after filters "
            f"(log store: {root})",
            param="windowStart",
        )
    return frame


def check_prompts(rows: pl.DataFrame) -> None:
    """Refuse rows whose ``request_json`` is not an OpenAI chat request (a with-responses run sends them)."""
    problems = content_problems(rows.select("request_id", "request_json"))
    if problems:
        column, sentence = problems[0]
        raise LogSchemaError(
            f"the sampled log rows break the log schema: {sentence}; fix or re-import them", param=column
        )


def write_partitioned(frame: pl.DataFrame, root: str | Path, project_id: str, *, part: str = "part-0") -> list[Path]:
    """Write ``frame`` into the store layout, one file per UTC date; returns the files."""
    root = Path(root)
    dated = frame.with_columns(pl.col("timestamp").dt.date().alias("_date"))
    written: list[Path] = []
    for (day,), rows in dated.sort("timestamp").group_by("_date", maintain_order=True):
        assert isinstance(day, dt.date)
        target = root / f"project_id={project_id}" / f"date={day.isoformat()}"
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{part}.parquet"
        rows.drop("_date", "project_id", strict=False).write_parquet(path, statistics=True)
        written.append(path)
    return written


def inspect_store(root: str, catalog: Catalog | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Row counts per project, day and model, plus one line per file that fails the schema check.

    With ``catalog``, a ``priced`` column says whether the catalog prices each model on that day.
    """
    base = Path(root)
    if not base.is_dir():
        raise LogSchemaError(f"log store {root} does not exist or is not a directory", param="logs")
    counts: list[pl.LazyFrame] = []
    problems: list[str] = []
    for project_id in store_projects(root):
        problems += [
            f"{p}: not a date=YYYY-MM-DD partition, so its files are never read"
            for p in bad_partitions(root, project_id)
        ]
        for path in partition_files(root, project_id, strict=False):
            try:
                schema = check_file(path)
            except LogSchemaError as exc:
                problems.append(exc.message)
                continue
            rows = _conform(pl.scan_parquet(path), schema, project_id)
            problems += [f"{path}: {sentence}" for _, sentence in content_problems(rows)]
            counts.append(
                pl.scan_parquet(path)
                .group_by("model")
                .agg(pl.len().alias("rows"))
                .with_columns(
                    pl.lit(project_id).alias("project_id"), pl.lit(path.parent.name.removeprefix("date=")).alias("date")
                )
            )
    if not counts:
        empty: dict[str, pl.DataType] = {
            "project_id": pl.String(),
            "date": pl.String(),
            "model": pl.String(),
            "rows": pl.Int64(),
        }
        if catalog is not None:
            empty["priced"] = pl.Boolean()
        return pl.DataFrame(schema=empty), problems
    frame = pl.concat(pl.collect_all(counts)).with_columns(
        pl.col("model").cast(pl.String), pl.col("rows").cast(pl.Int64)
    )
    table = frame.group_by("project_id", "date", "model").agg(pl.col("rows").sum()).sort("project_id", "date", "model")
    table = table.select("project_id", "date", "model", "rows")
    if catalog is not None:
        priced = [
            catalog.rates(model, on=dt.date.fromisoformat(day)) is not None
            for day, model in table.select("date", "model").iter_rows()
        ]
        table = table.with_columns(pl.Series("priced", priced, pl.Boolean))
    return table, problems
