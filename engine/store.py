"""Metadata in SQLite (WAL) under ``$REHEARSAL_HOME``.

Objects are stored whole as JSON next to the few columns that are queried
(project, status, creation time); every write is one transaction, so a
failed call leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, NotFound
from engine.schema import Experiment, JudgeRun, Project, RoutingConfigVersion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    parent_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_by_project ON experiments (project_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS judge_runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS judge_runs_by_experiment ON judge_runs (parent_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS routing_configs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    slug TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (project_id, slug, version)
);
"""


#: Columns added after a table first shipped: (table, column, type). Older stores gain them on open.
_ADDED_COLUMNS = [("experiments", "parent_id", "TEXT")]


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def new_id(prefix: str) -> str:
    """A time-ordered, unguessable id such as ``exp_0193f2a4c1d2e3f4a5b6c7d8``."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def utcnow() -> dt.datetime:
    """Now, in UTC, to the microsecond."""
    return dt.datetime.now(dt.UTC)


class Store:
    """The metadata store of one ``$REHEARSAL_HOME``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            _add_missing_columns(conn)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    # projects -----------------------------------------------------------------
    def get_project(self, project_id: str) -> Project:
        """The project, or ``NotFound``."""
        with self._connect() as conn:
            row = conn.execute("SELECT body FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist", param="projectId")
        return Project.model_validate_json(row[0])

    def put_project(self, project: Project, *, create: bool) -> Project:
        """Insert (``create``) or replace a project."""
        with self._connect() as conn:
            if create:
                try:
                    conn.execute(
                        "INSERT INTO projects (id, body) VALUES (?, ?)", (project.id, project.model_dump_json())
                    )
                except sqlite3.IntegrityError:
                    raise ConfigError(f"project {project.id!r} already exists", param="id") from None
            else:
                conn.execute("UPDATE projects SET body = ? WHERE id = ?", (project.model_dump_json(), project.id))
        return project

    def list_projects(self) -> list[Project]:
        """Every project, by id."""
        with self._connect() as conn:
            rows = conn.execute("SELECT body FROM projects ORDER BY id").fetchall()
        return [Project.model_validate_json(r[0]) for r in rows]

    # runs: experiments and judge runs share one shape ----------------------------
    def _put(self, table: str, run: Experiment | JudgeRun) -> None:
        extra = run.experiment_id if isinstance(run, JudgeRun) else None
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {table} (id, project_id, status, created_at, parent_id, body) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body",
                (run.id, run.project_id, run.status, run.created_at.isoformat(), extra, run.model_dump_json()),
            )

    def _body(self, table: str, run_id: str, what: str) -> str:
        with self._connect() as conn:
            row = conn.execute(f"SELECT body FROM {table} WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"{what} {run_id!r} does not exist", param="id")
        return str(row[0])

    def _status(self, table: str, run_id: str, what: str) -> str:
        with self._connect() as conn:
            row = conn.execute(f"SELECT status FROM {table} WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"{what} {run_id!r} does not exist", param="id")
        return str(row[0])

    def _progress(self, table: str, run_id: str, done: int, total: int, spend_usd: float) -> None:
        with self._connect() as conn:
            conn.execute(
                f"UPDATE {table} SET body = json_set(body, '$.progress.done', ?, '$.progress.total', ?, "
                "'$.spend_usd', ?) WHERE id = ? AND status = 'running'",
                (done, total, spend_usd, run_id),
            )

    def _cancel(self, table: str, run_id: str, reason: str) -> bool:
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE {table} SET status = 'cancelled', body = json_set(body, '$.status', 'cancelled', "
                "'$.status_reason', ?, '$.completed_at', ?) WHERE id = ? AND status IN ('queued', 'running')",
                (reason, utcnow().isoformat(), run_id),
            )
            return cur.rowcount == 1

    def _page(
        self, table: str, where: list[str], args: list[Any], limit: int, cursor: str | None
    ) -> tuple[list[str], str | None]:
        if cursor:
            with self._connect() as conn:
                anchor = conn.execute(f"SELECT created_at, id FROM {table} WHERE id = ?", (cursor,)).fetchone()
            if anchor is None:
                raise ConfigError(f"unknown cursor {cursor!r}", param="cursor")
            where = [*where, "(created_at, id) < (?, ?)"]
            args = [*args, *anchor]
        sql = f"SELECT body, id FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
        return [r[0] for r in rows[:limit]], (rows[limit - 1][1] if len(rows) > limit else None)

    # experiments --------------------------------------------------------------
    def put_experiment(self, experiment: Experiment) -> Experiment:
        """Insert or replace an experiment."""
        self._put("experiments", experiment)
        return experiment

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment, or ``NotFound``."""
        return Experiment.model_validate_json(self._body("experiments", experiment_id, "experiment"))

    def experiment_status(self, experiment_id: str) -> str:
        """Just the status (cheap, for polling)."""
        return self._status("experiments", experiment_id, "experiment")

    def update_progress(self, experiment_id: str, *, done: int, total: int, spend_usd: float) -> None:
        """Record progress of a running experiment (a no-op once it has ended or was cancelled)."""
        self._progress("experiments", experiment_id, done, total, spend_usd)

    def cancel_experiment(self, experiment_id: str, reason: str) -> bool:
        """Mark a queued or running experiment cancelled; the run sees it and stops. False if it had ended."""
        return self._cancel("experiments", experiment_id, reason)

    def list_experiments(
        self, *, project_ids: list[str] | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Experiment], str | None]:
        """Newest first; returns a page and the cursor of the next page (``None`` at the end)."""
        where, args = [], []
        if project_ids is not None:
            where.append(f"project_id IN ({','.join('?' * len(project_ids))})")
            args.extend(project_ids)
        bodies, next_cursor = self._page("experiments", where, args, limit, cursor)
        return [Experiment.model_validate_json(b) for b in bodies], next_cursor

    # judge runs ---------------------------------------------------------------
    def put_judge_run(self, run: JudgeRun) -> JudgeRun:
        """Insert or replace a judge run."""
        self._put("judge_runs", run)
        return run

    def get_judge_run(self, run_id: str) -> JudgeRun:
        """The judge run, or ``NotFound``."""
        return JudgeRun.model_validate_json(self._body("judge_runs", run_id, "judge run"))

    def judge_run_status(self, run_id: str) -> str:
        """Just the status."""
        return self._status("judge_runs", run_id, "judge run")

    def update_judge_progress(self, run_id: str, *, done: int, total: int, spend_usd: float) -> None:
        """Record progress of a running judge run."""
        self._progress("judge_runs", run_id, done, total, spend_usd)

    def cancel_judge_run(self, run_id: str, reason: str) -> bool:
        """Mark a queued or running judge run cancelled."""
        return self._cancel("judge_runs", run_id, reason)

    def list_judge_runs(
        self, experiment_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[JudgeRun], str | None]:
        """An experiment's judge runs, newest first."""
        bodies, next_cursor = self._page("judge_runs", ["parent_id = ?"], [experiment_id], limit, cursor)
        return [JudgeRun.model_validate_json(b) for b in bodies], next_cursor

    # routing configs ----------------------------------------------------------
    def add_routing_config(
        self,
        project_id: str,
        slug: str,
        policy: str,
        config: dict[str, Any],
        *,
        source_experiment_id: str | None = None,
    ) -> RoutingConfigVersion:
        """Save the next version of ``slug`` in ``project_id``."""
        with self._connect() as conn:
            (latest,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM routing_configs WHERE project_id = ? AND slug = ?",
                (project_id, slug),
            ).fetchone()
            saved = RoutingConfigVersion(
                id=new_id("rc"),
                project_id=project_id,
                slug=slug,
                version=latest + 1,
                policy=policy,
                config=config,
                source_experiment_id=source_experiment_id,
                created_at=utcnow(),
            )
            conn.execute(
                "INSERT INTO routing_configs (id, project_id, slug, version, created_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (saved.id, project_id, slug, saved.version, saved.created_at.isoformat(), saved.model_dump_json()),
            )
        return saved

    def get_routing_config(self, project_id: str, slug: str, version: int | None = None) -> RoutingConfigVersion:
        """A saved version (the latest when ``version`` is ``None``), or ``NotFound``."""
        sql = "SELECT body FROM routing_configs WHERE project_id = ? AND slug = ?"
        args: list[Any] = [project_id, slug]
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        with self._connect() as conn:
            row = conn.execute(sql + " ORDER BY version DESC LIMIT 1", args).fetchone()
        if row is None:
            which = f"{slug}:{version}" if version is not None else slug
            raise NotFound(f"routing config '@{which}' does not exist in project {project_id!r}", param="slug")
        return RoutingConfigVersion.model_validate_json(row[0])

    def list_routing_configs(self, project_id: str) -> list[RoutingConfigVersion]:
        """Every saved version of the project's routing configs, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT body FROM routing_configs WHERE project_id = ? ORDER BY slug, version DESC", (project_id,)
            ).fetchall()
        return [RoutingConfigVersion.model_validate_json(r[0]) for r in rows]
