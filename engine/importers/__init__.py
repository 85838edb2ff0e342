"""Importers: other tools' log files into the log store, one module per format, registered by name.

``run_import`` is the one path every format takes: it streams the importer's rows in chunks, skips
request ids the project already holds (so importing the same records twice adds nothing), prices rows
whose logged cost is missing or 0 from the catalog at their own date, stages what it writes and moves
it into the store only once every record has been read (a file that cannot be read writes nothing),
and returns an ``ImportReport`` of what it did.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, Field

from engine.errors import ConfigError
from engine.importers._base import (
    FileError,
    Importer,
    Refusal,
    Row,
    Source,
    first_record,
)
from engine.logs import SCHEMA, partition_files, write_partitioned
from engine.pricing import Catalog, row_cost

IMPORTERS: dict[str, Importer] = {}


def register(importer: Importer) -> Importer:
    """Make ``importer`` reachable by its name (``--format``)."""
    IMPORTERS[importer.name] = importer
    return importer


def importer(name: str) -> Importer:
    """The importer called ``name``; a ``ConfigError`` naming the choices otherwise."""
    try:
        return IMPORTERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown import format {name!r}; choose one of: auto, " + ", ".join(sorted(IMPORTERS)), param="format"
        ) from None


def detect(files: Sequence[Path]) -> Importer:
    """The one format that reads every file, judged by each file's first record."""
    chosen: dict[str, list[str]] = {}
    for path in files:
        first = first_record(path)
        if first is None:
            raise ConfigError(f"{path}: holds no records to tell its format by", param="format")
        names = [name for name, imp in sorted(IMPORTERS.items()) if imp.sniff(first)]
        if not names:
            raise ConfigError(
                f"{path}: its first record is not in a format rehearsal knows; pass --format (one of: "
                + ", ".join(sorted(IMPORTERS))
                + ")",
                param="format",
            )
        chosen[str(path)] = names
    common = set.intersection(*(set(v) for v in chosen.values()))
    if not common:
        described = "; ".join(f"{p} → {' or '.join(v)}" for p, v in chosen.items())
        raise ConfigError(f"the files are in different formats ({described}): import them separately", param="format")
    # The most specific format first: one that claims fewer of the files' first records wins a tie.
    return IMPORTERS[min(common, key=lambda n: (len(_claims(n, chosen)), n))]


def _claims(name: str, chosen: dict[str, list[str]]) -> list[str]:
    return [n for names in chosen.values() for n in names if n == name]


class Refused(BaseModel):
    """Records refused for one reason."""

    field: str
    reason: str
    count: int
    first: list[str] = Field(description="Where the first ones are (`file:line`).")


class ImportReport(BaseModel):
    """What an import read, wrote, skipped and refused, and how it priced rows without a cost."""

    format: str
    files: list[str]
    project_id: str
    records_read: int = 0
    rows_written: int = 0
    duplicates_skipped: int = 0
    refused: int = 0
    refusals: list[Refused] = Field(default_factory=list)
    rows_per_model: dict[str, int] = Field(default_factory=dict)
    unpriced_models: dict[str, int] = Field(
        default_factory=dict, description="Models the price catalog does not know, with their rows."
    )
    cost_missing: int = Field(0, description="Successful rows that carried no cost.")
    cost_zero: int = Field(0, description="Successful rows whose logged cost was 0.")
    priced_rows: int = Field(0, description="Of those, rows priced from the catalog at their own date.")
    priced_usd: float = Field(0.0, description="What the priced rows cost.")
    unpriced_rows: int = Field(0, description="Rows without a cost whose model the catalog cannot price: stored at 0.")
    batch_rows: int = Field(0, description="Rows priced at batch rates.")
    latency_missing: int = Field(0, description="Rows without a latency: stored as 0 ms.")
    files_written: int = 0
    notes: list[str] = Field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as sentences for a terminal."""
        out = [
            f"format {self.format}: read {self.records_read:,} records from {len(self.files)} file(s); "
            f"wrote {self.rows_written:,} rows for project {self.project_id} in {self.files_written} file(s)",
        ]
        if self.duplicates_skipped:
            out.append(f"skipped {self.duplicates_skipped:,} records whose request id the project already holds")
        for r in self.refusals:
            out.append(f"refused {r.count:,}: {r.field}: {r.reason} (first at {', '.join(r.first)})")
        if self.cost_missing or self.cost_zero:
            out.append(
                f"{self.cost_missing:,} successful rows had no cost and {self.cost_zero:,} a cost of 0: "
                f"{self.priced_rows:,} priced from the catalog at their own date (${self.priced_usd:,.4f}), "
                f"{self.unpriced_rows:,} left at 0 (model not in the catalog)"
            )
        if self.unpriced_models:
            listed = ", ".join(f"{m} ({n:,} rows)" for m, n in sorted(self.unpriced_models.items()))
            out.append(
                f"the price catalog does not know: {listed}; add them to a pricing override file (see "
                "`rehearsal pricing show`) to use them as candidates"
            )
        if self.batch_rows:
            out.append(f"{self.batch_rows:,} rows are Batch API calls, priced at batch rates")
        if self.latency_missing:
            out.append(
                f"{self.latency_missing:,} rows carry no latency (stored as 0 ms): "
                "latency figures over them mean nothing"
            )
        out += self.notes
        return out


#: Rows per chunk written to the staging area (bounds memory).
CHUNK_ROWS = 50_000
#: How many places of one refusal reason the report lists.
FIRST_REFUSALS = 5

_COLUMNS = {k: v for k, v in SCHEMA.items() if k != "project_id"}


def existing_ids(root: Path, project_id: str) -> set[str]:
    """Request ids the project's store already holds."""
    files = partition_files(str(root), project_id, strict=False)
    if not files:
        return set()
    ids = pl.scan_parquet(files).select("request_id").unique().collect()
    return set(ids["request_id"].to_list())


def row_problem(values: dict[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` where a mapped row breaks the log schema's rules, else ``None``."""
    for name in ("request_id", "model", "provider", "timestamp"):
        if values.get(name) in (None, ""):
            return name, "missing"
    if values.get("status") not in ("ok", "error"):
        return "status", f"{values.get('status')!r} is neither ok nor error"
    if (values.get("cached_input_tokens") or 0) > values["input_tokens"]:
        return "cached_input_tokens", "more cached prompt tokens than prompt tokens"
    return None


def _checked(item: Row | Refusal) -> Row | Refusal:
    if isinstance(item, Refusal):
        return item
    problem = row_problem(item.values)
    return item if problem is None else Refusal(item.file, item.line, *problem)


class _Refusals:
    """Refused records by reason, with where the first ones are; under ``strict`` the first one is fatal."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: Counter[tuple[str, str]] = Counter()
        self.places: dict[tuple[str, str], list[str]] = {}

    def add(self, item: Refusal) -> None:
        if self.strict:
            raise ConfigError(
                f"{item.file}: line {item.line}: {item.field}: {item.reason} (--strict: nothing written)",
                param=item.field,
            )
        key = (item.field, item.reason)
        self.counts[key] += 1
        places = self.places.setdefault(key, [])
        if len(places) < FIRST_REFUSALS:
            places.append(f"{item.file}:{item.line}")

    def listed(self) -> list[Refused]:
        return [
            Refused(field=f, reason=r, count=n, first=self.places[(f, r)]) for (f, r), n in self.counts.most_common()
        ]


def run_import(
    files: Sequence[str | Path],
    out: str | Path,
    project_id: str,
    catalog: Catalog,
    *,
    fmt: str = "auto",
    strict: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``files`` into the store at ``out`` for ``project_id``; see the module docstring."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", project_id):
        raise ConfigError(f"project id {project_id!r} must be 1–100 of A-Z a-z 0-9 _ . -", param="project")
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{path} is not a file", param="file")
    chosen = detect(paths) if fmt == "auto" else importer(fmt)
    root = Path(out)
    report = ImportReport(format=chosen.name, files=[str(p) for p in paths], project_id=project_id)
    seen = existing_ids(root, project_id)
    staging = root / f".import-{uuid.uuid4().hex}"
    tally = _Tally(report, catalog)
    source = Source(paths)
    refused = _Refusals(strict)
    chunk: list[Row] = []
    try:
        for item in chosen.rows(source):
            report.records_read += 1
            item = _checked(item)
            if isinstance(item, Refusal):
                refused.add(item)
                continue
            key = str(item.values["request_id"])
            if key in seen:
                report.duplicates_skipped += 1
                continue
            seen.add(key)
            chunk.append(item)
            if len(chunk) >= CHUNK_ROWS:
                tally.write(chunk, staging, project_id)
                chunk = []
                if on_progress is not None:
                    on_progress(report.records_read)
        if chunk:
            tally.write(chunk, staging, project_id)
        if report.records_read == 0:  # nothing became a row or a refusal
            why = f" ({'; '.join(source.notes)})" if source.notes else ""
            raise ConfigError(f"the files hold no records to import{why}", param="file")
        report.files_written = _publish(staging, root)
    except FileError as exc:
        raise ConfigError(f"{exc} (nothing written)", param="file") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.records_read += source.skipped
    report.refusals = refused.listed()
    report.refused = sum(r.count for r in report.refusals)
    report.notes = source.notes
    return report


class _Tally:
    """Prices, counts and stages one chunk of rows at a time."""

    def __init__(self, report: ImportReport, catalog: Catalog) -> None:
        self.report = report
        self.catalog = catalog
        self.models: Counter[str] = Counter()
        self.n = 0

    def write(self, chunk: list[Row], staging: Path, project_id: str) -> None:
        frame = pl.DataFrame([r.values for r in chunk], schema=_COLUMNS)
        frame = frame.with_columns(
            pl.Series("_batch", [r.batch for r in chunk], pl.Boolean),
            pl.Series("_cache_write", [r.cache_write_tokens for r in chunk], pl.Int64),
        )
        frame = self._price(frame)
        report = self.report
        report.latency_missing += frame["latency_ms"].null_count()
        frame = frame.with_columns(pl.col("latency_ms").fill_null(0.0))
        for model, n in frame["model"].value_counts().iter_rows():
            report.rows_per_model[model] = report.rows_per_model.get(model, 0) + n
        report.rows_written += frame.height
        write_partitioned(frame.drop("_batch", "_cache_write"), staging, project_id, part=f"import-{self.n}")
        self.n += 1

    def _price(self, frame: pl.DataFrame) -> pl.DataFrame:
        report, catalog = self.report, self.catalog
        ok = pl.col("status") == "ok"
        report.cost_missing += frame.select((pl.col("cost_usd").is_null() & ok).sum()).item()
        report.cost_zero += frame.select(((pl.col("cost_usd") == 0) & ok).sum()).item()
        report.batch_rows += frame.select(pl.col("_batch").sum()).item()
        frame = frame.with_columns(pl.col("timestamp").dt.date().alias("_day"))
        keys = frame.select("model", "provider", "_day", "_batch").unique()
        rates: list[dict[str, Any]] = []
        for model, provider, day, batch in keys.iter_rows():
            price = catalog.rates(model, on=day, provider=provider, batch=batch)
            if price is None:
                continue
            rates.append(
                {
                    "model": model,
                    "provider": provider,
                    "_day": day,
                    "_batch": batch,
                    "_in": price.input_per_mtok,
                    "_cached": price.cached_rate,
                    "_write": price.cache_write_per_mtok
                    if price.cache_write_per_mtok is not None
                    else price.input_per_mtok,
                    "_out": price.output_per_mtok,
                }
            )
        table = pl.DataFrame(
            rates,
            schema={
                "model": pl.String,
                "provider": pl.String,
                "_day": pl.Date,
                "_batch": pl.Boolean,
                "_in": pl.Float64,
                "_cached": pl.Float64,
                "_write": pl.Float64,
                "_out": pl.Float64,
            },
        )
        frame = frame.join(table, on=["model", "provider", "_day", "_batch"], how="left", nulls_equal=True)
        for model, n in frame.filter(pl.col("_in").is_null()).group_by("model").len().iter_rows():
            report.unpriced_models[model] = report.unpriced_models.get(model, 0) + n
        wanted = ok & (pl.col("cost_usd").is_null() | (pl.col("cost_usd") == 0))
        listed = (
            row_cost(
                pl.col("input_tokens") - pl.col("_cache_write"),
                pl.col("output_tokens"),
                pl.col("cached_input_tokens"),
                input_per_mtok=pl.col("_in"),
                output_per_mtok=pl.col("_out"),
                cached_input_per_mtok=pl.col("_cached"),
            )
            + pl.col("_cache_write") * pl.col("_write") / 1e6
        )
        priced = wanted & pl.col("_in").is_not_null()
        report.priced_rows += frame.select(priced.sum()).item()
        report.priced_usd += float(frame.select(pl.when(priced).then(listed).otherwise(0.0).sum()).item())
        report.unpriced_rows += frame.select((wanted & pl.col("_in").is_null()).sum()).item()
        return frame.with_columns(
            pl.when(priced).then(listed).otherwise(pl.col("cost_usd").fill_null(0.0)).alias("cost_usd")
        ).drop("_day", "_in", "_cached", "_write", "_out")


def _publish(staging: Path, root: Path) -> int:
    """Move every staged file into the store (new names: nothing there is overwritten)."""
    if not staging.is_dir():
        return 0
    tag = uuid.uuid4().hex[:12]
    moved = 0
    for path in sorted(staging.rglob("*.parquet")):
        target = root / path.parent.relative_to(staging) / f"{path.stem}-{tag}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        moved += 1
    return moved


#: The shipped formats' modules; each registers itself on import.
BUILTIN = ("openai_jsonl", "litellm", "litellm_spendlogs", "langfuse", "otel", "openai_batch")


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN:
        importlib.import_module(f"engine.importers.{module}")


_load_builtin()

__all__ = [
    "IMPORTERS",
    "ImportReport",
    "Importer",
    "Refusal",
    "Row",
    "Source",
    "detect",
    "importer",
    "register",
    "run_import",
]
