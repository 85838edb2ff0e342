"""Per-pair results of with-responses experiments: Parquet checkpoints, then one scored file.

Layout: ``<home>/results/<experiment_id>/part-NNNNNN.parquet`` while calls
arrive (each batch written atomically), ``pairs.parquet`` once scored.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import ConfigError
from engine.fanout._journal import read_sent

PAIR_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "baseline_model": pl.String(),
    "candidate_model": pl.String(),
    "baseline_cost_usd": pl.Float64(),
    "candidate_cost_usd": pl.Float64(),
    "cost_delta_usd": pl.Float64(),
    "baseline_latency_ms": pl.Float64(),
    "candidate_latency_ms": pl.Float64(),
    "candidate_status": pl.String(),
    "error_type": pl.String(),
    # Why a call failed, as the provider put it (results written before these columns read them as null).
    "candidate_status_code": pl.Int64(),
    "candidate_error_message": pl.String(),
    "candidate_input_tokens": pl.Int64(),
    "candidate_output_tokens": pl.Int64(),
    # What the endpoint reported the call cost (``x-litellm-response-cost``), beside the catalog's price.
    "candidate_reported_cost_usd": pl.Float64(),
    "attempts": pl.Int64(),
    "request_json": pl.String(),
    "baseline_text": pl.String(),
    "candidate_text": pl.String(),
    "similarity": pl.Float64(),
}
#: ``error_type`` of a call that was sent before a crash and never recorded (its reservation counts as spent).
INTERRUPTED = "interrupted"
#: Columns of a results row in lists (the two texts only on the single-pair view).
ROW_COLUMNS = [c for c in PAIR_SCHEMA if c not in ("request_json", "baseline_text", "candidate_text")]

SORTS: dict[str, tuple[str, bool]] = {
    "similarity_asc": ("similarity", False),
    "similarity_desc": ("similarity", True),
    "cost_delta_desc": ("cost_delta_usd", True),
    "cost_delta_asc": ("cost_delta_usd", False),
    "timestamp_desc": ("timestamp", True),
    "timestamp_asc": ("timestamp", False),
}


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with ``schema``'s columns in its order; a column an older file lacks reads as nulls."""
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
    return frame.with_columns(missing).select(list(schema)) if missing else frame.select(list(schema))


class ResultFiles:
    """Checkpointed result rows of one run: atomic Parquet parts, a crash journal, then one final file."""

    def __init__(self, directory: Path, schema: dict[str, pl.DataType], final: str, key: str = "request_id") -> None:
        self.dir = directory
        self.schema = schema
        self.final = self.dir / final
        self.key = key

    def _parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Checkpoint a batch of pairs (atomic: a crash never leaves half a file)."""
        if not rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        index = len(self._parts())
        target = self.dir / f"part-{index:06d}.parquet"
        tmp = target.with_suffix(".tmp")
        pl.DataFrame(list(rows), schema=self.schema).write_parquet(tmp)
        os.replace(tmp, target)

    def frame(self) -> pl.DataFrame:
        """Every recorded pair (scored file if present, else the checkpoints), in the current schema."""
        if self.final.exists():
            return self.read_final()
        parts = self._parts()
        if not parts:
            return pl.DataFrame(schema=self.schema)
        return pl.concat([conform(pl.read_parquet(p), self.schema) for p in parts], how="vertical")

    def read_final(self, columns: list[str] | None = None) -> pl.DataFrame:
        """``columns`` (default: all) of the final file; those a file written by an earlier version lacks are nulls."""
        wanted = {name: self.schema[name] for name in columns or self.schema}
        present = pl.read_parquet_schema(self.final)
        return conform(pl.read_parquet(self.final, columns=[c for c in wanted if c in present]), wanted)

    @property
    def journal(self) -> Path:
        """Calls journaled just before they were sent, with their reservations (``engine.fanout._journal``)."""
        return self.dir / "started.txt"

    def sent(self) -> dict[str, float]:
        """Every call that may have been made, with its cost (settled, else its reservation)."""
        return read_sent(self.journal)

    def unrecorded(self) -> dict[str, float]:
        """Calls sent but never recorded (a crash came between), with what they cost as far as is known."""
        recorded = self.done_ids()
        return {k: usd for k, usd in self.sent().items() if k not in recorded}

    def done_ids(self) -> set[str]:
        """Pairs already recorded: a resumed run never calls them again."""
        return set(self.frame().get_column(self.key).to_list())

    def write_final(self, frame: pl.DataFrame) -> None:
        """Replace the checkpoints with the scored file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.final.with_suffix(".tmp")
        frame.select(list(self.schema)).write_parquet(tmp)
        os.replace(tmp, self.final)
        for part in self._parts():
            part.unlink()


class PairStore(ResultFiles):
    """The per-pair results of one with-responses experiment."""

    def __init__(self, home: Path, experiment_id: str) -> None:
        super().__init__(home / "results" / experiment_id, PAIR_SCHEMA, "pairs.parquet")


def encode_cursor(offset: int) -> str:
    """An opaque cursor for the next page."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor points at; ``ConfigError`` when it is not one of ours."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("o:"):
            raise ValueError(text)
        return int(text[2:])
    except ValueError:
        raise ConfigError(f"invalid cursor {cursor!r}", param="cursor") from None


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise ConfigError("limit must be between 1 and 1000", param="limit")
    return limit


def page(frame: pl.DataFrame, limit: int, cursor: str | None) -> tuple[pl.DataFrame, str | None]:
    """One page of an already sorted frame, and the cursor of the next page (``None`` at the end)."""
    _check_limit(limit)
    offset = decode_cursor(cursor)
    more = offset + limit < frame.height
    return frame.slice(offset, limit), (encode_cursor(offset + limit) if more else None)


def query_pairs(
    frame: pl.DataFrame,
    *,
    sort: str = "timestamp_desc",
    candidate_status: str = "any",
    min_similarity: float | None = None,
    max_similarity: float | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[pl.DataFrame, str | None]:
    """Filter, sort and page pairs; any similarity filter excludes unscored rows."""
    if sort not in SORTS:
        raise ConfigError(f"sort must be one of: {', '.join(SORTS)}", param="sort")
    if candidate_status not in ("ok", "error", "any"):
        raise ConfigError("candidate_status must be ok, error or any", param="candidate_status")
    out = frame
    if candidate_status != "any":
        out = out.filter(pl.col("candidate_status") == candidate_status)
    if min_similarity is not None:
        out = out.filter(pl.col("similarity") >= min_similarity)
    if max_similarity is not None:
        out = out.filter(pl.col("similarity") <= max_similarity)
    column, descending = SORTS[sort]
    by, order = [column, "request_id"], [descending, False]
    offset = decode_cursor(cursor)
    if offset + _check_limit(limit) < out.height // 10:
        # A shallow page: a lazy sort + slice runs as a top-k, several times faster than sorting every row.
        rows = out.lazy().sort(by, descending=order, nulls_last=True).slice(offset, limit + 1).collect()
        return rows.head(limit), (encode_cursor(offset + limit) if rows.height > limit else None)
    return page(out.sort(by, descending=order, nulls_last=True), limit, cursor)
