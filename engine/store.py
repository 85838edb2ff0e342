"""Metadata in SQLite (WAL) under ``$REHEARSAL_HOME``.

Objects are stored whole as JSON next to the few columns that are queried
(project, status, creation time); every write is one transaction, so a
failed call leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from engine.crypto import SecretCipher, load_cipher, private_dir, private_file
from engine.errors import ConfigError, DamagedRecord, NotFound
from engine.schema import (
    ApiKey,
    CreatedApiKey,
    Experiment,
    JudgeRun,
    KeyRole,
    Observations,
    Project,
    ProviderCredential,
    RoutingConfigVersion,
)
from engine.settings import get_settings

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
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE TABLE IF NOT EXISTS scheduled_experiments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signals (
    key TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS provider_credentials (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    secret TEXT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS observations (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_by_project ON observations (project_id, created_at DESC, id DESC);
"""


log = logging.getLogger("rehearsal.store")
M = TypeVar("M", bound=BaseModel)

#: Columns added after a table first shipped: (table, column, type). Older stores gain them on open.
_ADDED_COLUMNS = [
    ("experiments", "parent_id", "TEXT"),
    ("experiments", "lease", "TEXT"),
    ("judge_runs", "lease", "TEXT"),
    ("experiments", "heartbeat_at", "TEXT"),
    ("judge_runs", "heartbeat_at", "TEXT"),
    ("experiments", "recoveries", "INTEGER NOT NULL DEFAULT 0"),
    ("judge_runs", "recoveries", "INTEGER NOT NULL DEFAULT 0"),
]
#: A run that has ended keeps its status (a replay finishing after a cancel does not undo the cancel).
_FINAL = "('completed', 'cancelled', 'failed')"
RUN_TABLES = ("experiments", "judge_runs")


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


def this_process() -> str:
    """The lease a run takes while this process executes it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class RunLease:
    """Who executes an unfinished run: its lease (``host:pid``), that process's last heartbeat, its recoveries."""

    table: str
    run_id: str
    status: str
    lease: str | None
    heartbeat_at: dt.datetime | None
    recoveries: int
    flow_run_id: str | None = None
    created_at: dt.datetime | None = None


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def lease_is_live(lease: str | None, heartbeat_at: dt.datetime | None = None, expiry_s: float | None = None) -> bool:
    """Whether the process holding ``lease`` still runs.

    On this host the process itself is asked. Another host's lease is live until its heartbeat is older
    than ``expiry_s`` (one with no heartbeat recorded counts as live: a run is never executed twice).
    """
    if not lease:
        return False
    host, _, pid = lease.rpartition(":")
    if host != socket.gethostname():
        return heartbeat_at is None or expiry_s is None or (utcnow() - heartbeat_at).total_seconds() <= expiry_s
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def load_one(model: type[M], body: str, what: str) -> M:
    """A stored object; one that no longer validates is ``DamagedRecord`` naming it and the field, not a crash."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise DamagedRecord(
            f"the stored {what} cannot be read ({field}: {err['msg']}); set that field again to repair it",
            param=field,
        ) from None


def load_many(model: type[M], bodies: Iterable[str], what: str) -> list[M]:
    """Stored objects; one that no longer validates is skipped (and logged), so one bad row never hides the rest."""
    loaded = []
    for body in bodies:
        try:
            loaded.append(load_one(model, body, what))
        except DamagedRecord as exc:
            log.warning("skipping a damaged %s: %s", what, exc.message)
    return loaded


def descendants(keys: Iterable[ApiKey], key_id: str, *, include_self: bool = False) -> list[str]:
    """The ids of the keys minted from ``key_id``, directly or not (and ``key_id`` itself when asked)."""
    children: dict[str | None, list[str]] = {}
    for key in keys:
        children.setdefault(key.parent_id, []).append(key.id)
    found, todo = [], [key_id]
    while todo:
        current = todo.pop()
        if current != key_id or include_self:
            found.append(current)
        todo.extend(c for c in children.get(current, []) if c not in found)
    return found


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})"


def _live_key(body: str) -> ApiKey | None:
    """The stored key, unless it is revoked (or its record is damaged: then it authenticates nobody)."""
    keys = load_many(ApiKey, [body], "management key")
    return keys[0] if keys and keys[0].revoked_at is None else None


def _key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class Store:
    """The metadata store of one ``$REHEARSAL_HOME``.

    The directory holding the database is the state directory: it is made private (0700) and the SQLite
    files 0600 before anything is written. Secret columns are encrypted with ``cipher``; by default the one
    of ``REHEARSAL_SECRET_KEY``, else of the key file generated next to the database.
    """

    def __init__(self, path: str | Path, cipher: SecretCipher | None = None) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        # SQLite creates the -wal and -shm files with the database file's mode, so that one comes first.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for part in (self.path.with_name(self.path.name + suffix) for suffix in ("", "-wal", "-shm")):
            if part.exists():
                private_file(part)
        self.cipher = cipher if cipher is not None else load_cipher(get_settings().secret_key, self.path.parent)
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
        return load_one(Project, row[0], f"project {project_id!r}")

    def get_project_fields(self, project_id: str) -> dict[str, Any]:
        """A project's stored fields as they are, valid or not (so an update can repair a damaged one)."""
        with self._connect() as conn:
            row = conn.execute("SELECT body FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist", param="projectId")
        fields: dict[str, Any] = json.loads(row[0])
        return fields

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

    def list_projects(self, project_ids: list[str] | None = None) -> list[Project]:
        """The projects (those of ``project_ids`` when given), by id; damaged ones are skipped."""
        sql, args = "SELECT body FROM projects", list(project_ids or [])
        if project_ids is not None:
            sql += f" WHERE {_in('id', project_ids)}"
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return load_many(Project, (r[0] for r in rows), "project")

    # runs: experiments and judge runs share one shape ----------------------------
    def _put(self, table: str, run: Experiment | JudgeRun) -> None:
        extra = run.experiment_id if isinstance(run, JudgeRun) else None
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {table} (id, project_id, status, created_at, parent_id, body) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body "
                f"WHERE NOT ({table}.status IN {_FINAL} AND excluded.status != {table}.status)",
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

    def run_status(self, table: str, run_id: str) -> str:
        """The status of a run of ``table`` (cheap, for polling)."""
        return self._status(table, run_id, "run")

    def claim_run(self, table: str, run_id: str) -> bool:
        """Take the lease of an unfinished run for this process; False if it ended or a live process holds it."""
        mine = this_process()
        with self._connect() as conn:
            row = conn.execute(f"SELECT status, lease FROM {table} WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"run {run_id!r} does not exist", param="id")
            status, lease = row
            if status not in ("queued", "running") or (lease != mine and lease_is_live(lease)):
                return False
            cur = conn.execute(
                f"UPDATE {table} SET lease = ?, heartbeat_at = ? WHERE id = ? AND lease IS ?",
                (mine, utcnow().isoformat(), run_id, lease),
            )
            return cur.rowcount == 1

    def heartbeat(self, table: str, run_id: str) -> None:
        """Renew this process's lease of a run (other hosts judge it by this)."""
        with self._connect() as conn:
            conn.execute(
                f"UPDATE {table} SET heartbeat_at = ? WHERE id = ? AND lease = ?",
                (utcnow().isoformat(), run_id, this_process()),
            )

    def release_lease(self, table: str, run_id: str, lease: str | None) -> bool:
        """Free the lease of a run whose process died (only if ``lease`` still holds it), counting a recovery."""
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE {table} SET lease = NULL, heartbeat_at = NULL, recoveries = recoveries + 1 "
                "WHERE id = ? AND lease IS ? AND status IN ('queued', 'running')",
                (run_id, lease),
            )
            return cur.rowcount == 1

    def unfinished_runs(self, table: str) -> list[RunLease]:
        """Every queued or running run of ``table`` with its lease, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, status, lease, heartbeat_at, recoveries, json_extract(body, '$.flow_run_id'), created_at "
                f"FROM {table} WHERE status IN ('queued', 'running') ORDER BY created_at"
            ).fetchall()
        return [RunLease(table, r[0], r[1], r[2], _when(r[3]), int(r[4] or 0), r[5], _when(r[6])) for r in rows]

    def fail_run(self, table: str, run_id: str, reason: str) -> bool:
        """Mark an unfinished run failed with ``reason``; False if it had ended."""
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE {table} SET status = 'failed', body = json_set(body, '$.status', 'failed', "
                "'$.status_reason', ?, '$.completed_at', ?) WHERE id = ? AND status IN ('queued', 'running')",
                (reason, utcnow().isoformat(), run_id),
            )
            return cur.rowcount == 1

    def set_flow_run(self, table: str, run_id: str, flow_run_id: str) -> None:
        """Record the Prefect flow run that executes a run."""
        with self._connect() as conn:
            conn.execute(
                f"UPDATE {table} SET body = json_set(body, '$.flow_run_id', ?) WHERE id = ?", (flow_run_id, run_id)
            )

    def _page(
        self, table: str, where: list[str], args: list[Any], limit: int, cursor: str | None
    ) -> tuple[list[str], str | None]:
        if cursor:
            # The anchor must pass the same filters: a cursor naming another project's run is unknown here.
            scope = "".join(f" AND {w}" for w in where)
            with self._connect() as conn:
                anchor = conn.execute(
                    f"SELECT created_at, id FROM {table} WHERE id = ?{scope}", (cursor, *args)
                ).fetchone()
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
        return load_one(Experiment, self._body("experiments", experiment_id, "experiment"), "experiment")

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
        self,
        *,
        project_ids: list[str] | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Experiment], str | None]:
        """Newest first; returns a page and the cursor of the next page (``None`` at the end)."""
        where: list[str] = []
        args: list[Any] = []
        if project_ids is not None:
            where.append(_in("project_id", project_ids))
            args.extend(project_ids)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        bodies, next_cursor = self._page("experiments", where, args, limit, cursor)
        return load_many(Experiment, bodies, "experiment"), next_cursor

    # judge runs ---------------------------------------------------------------
    def put_judge_run(self, run: JudgeRun) -> JudgeRun:
        """Insert or replace a judge run."""
        self._put("judge_runs", run)
        return run

    def get_judge_run(self, run_id: str) -> JudgeRun:
        """The judge run, or ``NotFound``."""
        return load_one(JudgeRun, self._body("judge_runs", run_id, "judge run"), "judge run")

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
        return load_many(JudgeRun, bodies, "judge run"), next_cursor

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
        return load_one(RoutingConfigVersion, row[0], "routing config")

    def list_routing_configs(self, project_id: str) -> list[RoutingConfigVersion]:
        """Every saved version of the project's routing configs, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT body FROM routing_configs WHERE project_id = ? ORDER BY slug, version DESC", (project_id,)
            ).fetchall()
        return load_many(RoutingConfigVersion, (r[0] for r in rows), "routing config")

    # management keys ------------------------------------------------------------
    def create_api_key(
        self,
        project_ids: list[str],
        *,
        all_projects: bool = False,
        name: str = "",
        role: KeyRole = "member",
        parent_id: str | None = None,
    ) -> CreatedApiKey:
        """A new key; only its hash is kept, so the returned secret is the one chance to see it.

        ``role`` ``admin`` may also change caps, keys and credentials; an all-projects key is always admin.
        ``parent_id`` is the key that minted it: revoking that key revokes this one too.
        """
        key_id = new_id("key")
        raw = f"rhk_{key_id.removeprefix('key_')}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=key_id,
            name=name,
            prefix=raw[:16],
            project_ids=sorted(set(project_ids)),
            all_projects=all_projects,
            role="admin" if all_projects else role,
            parent_id=parent_id,
            created_at=utcnow(),
        )
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, hash, body) VALUES (?, ?, ?)",
                (key.id, _key_hash(raw), key.model_dump_json()),
            )
        return CreatedApiKey(**key.model_dump(), key=raw)

    def authenticate(self, raw: str) -> ApiKey | None:
        """The live key ``raw`` is, compared in constant time; ``None`` for anything else."""
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "rhk":
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT hash, body FROM api_keys WHERE id = ?", (f"key_{parts[1]}",)).fetchone()
        if row is None or not hmac.compare_digest(row[0], _key_hash(raw)):
            return None
        return _live_key(row[1])

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT body FROM api_keys ORDER BY id").fetchall()
        return load_many(ApiKey, (r[0] for r in rows), "management key")

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key for good, and every key minted from it (at any depth), in one transaction."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, body FROM api_keys").fetchall()
            keys = {k.id: k for k in load_many(ApiKey, (r[1] for r in rows), "management key")}
            if key_id not in keys:
                raise NotFound(f"key {key_id!r} does not exist", param="id")
            now = utcnow()
            for victim in descendants(keys.values(), key_id, include_self=True):
                key = keys[victim]
                if key.revoked_at is None:
                    keys[victim] = key.model_copy(update={"revoked_at": now})
                    conn.execute("UPDATE api_keys SET body = ? WHERE id = ?", (keys[victim].model_dump_json(), victim))
        return keys[key_id]

    # idempotency ------------------------------------------------------------------
    def idempotency_begin(self, principal: str, key: str, fingerprint: str) -> tuple[str, int | None, str | None]:
        """Reserve ``key`` for a request: ``("new", …)``, ``("replay", status, body)``, ``("mismatch"|"busy", …)``."""
        with self._connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO idempotency (principal, key, fingerprint, created_at) VALUES (?, ?, ?, ?)",
                    (principal, key, fingerprint, utcnow().isoformat()),
                )
                return "new", None, None
            except sqlite3.IntegrityError:
                row = conn.execute(
                    "SELECT fingerprint, status, response FROM idempotency WHERE principal = ? AND key = ?",
                    (principal, key),
                ).fetchone()
        if row[0] != fingerprint:
            return "mismatch", None, None
        if row[1] is None:
            return "busy", None, None
        return "replay", int(row[1]), str(row[2])

    def idempotency_finish(self, principal: str, key: str, status: int | None, response: str | None) -> None:
        """Keep the response of a reserved key, or release the key (``status`` ``None``) so it can be retried."""
        with self._connect() as conn:
            if status is None:
                conn.execute("DELETE FROM idempotency WHERE principal = ? AND key = ?", (principal, key))
            else:
                conn.execute(
                    "UPDATE idempotency SET status = ?, response = ? WHERE principal = ? AND key = ?",
                    (status, response, principal, key),
                )

    # provider credentials -----------------------------------------------------------
    def put_credential(self, credential: ProviderCredential, secret: str | None) -> ProviderCredential:
        """Save a credential; its secret goes, encrypted, to its own column and never into the body."""
        stored = self.cipher.encrypt(secret) if secret is not None else None
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO provider_credentials (id, project_id, secret, body) VALUES (?, ?, ?, ?)",
                (credential.id, credential.project_id, stored, credential.model_dump_json()),
            )
        return credential

    def get_credential(self, credential_id: str) -> ProviderCredential:
        """One credential (without its secret), or ``NotFound``."""
        with self._connect() as conn:
            row = conn.execute("SELECT body FROM provider_credentials WHERE id = ?", (credential_id,)).fetchone()
        if row is None:
            raise NotFound(f"provider credential {credential_id!r} does not exist", param="id")
        return load_one(ProviderCredential, row[0], "provider credential")

    def list_credentials(self, project_ids: list[str] | None = None) -> list[ProviderCredential]:
        """Credentials (without secrets), by id."""
        sql, args = "SELECT body FROM provider_credentials", list(project_ids or [])
        if project_ids is not None:
            sql += f" WHERE {_in('project_id', project_ids)}"
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return load_many(ProviderCredential, (r[0] for r in rows), "provider credential")

    def credential_secrets(self, project_id: str) -> list[tuple[ProviderCredential, str | None]]:
        """A project's credentials with their secrets, for the runs that call providers."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT body, secret FROM provider_credentials WHERE project_id = ?", (project_id,)
            ).fetchall()
        found = []
        for body, stored in rows:
            credential = load_one(ProviderCredential, body, "provider credential")
            what = f"the API key of provider credential {credential.id!r}"
            found.append((credential, self.cipher.decrypt(stored, what) if stored is not None else None))
        return found

    def delete_credential(self, credential_id: str) -> None:
        """Forget a credential and its secret."""
        with self._connect() as conn:
            conn.execute("DELETE FROM provider_credentials WHERE id = ?", (credential_id,))

    # observations: what completed with-responses runs showed about model moves -------------
    def put_observations(self, observations: Observations) -> None:
        """Keep one run's observations (replacing any it had)."""
        self.put_doc(
            "observations",
            observations.experiment_id,
            observations.project_id,
            observations.model_dump_json(),
            created_at=observations.created_at.isoformat(),
        )

    def list_observations(self, project_id: str) -> list[Observations]:
        """The project's observations, newest first."""
        return self.list_docs(
            "observations", Observations, "project_id = ?", (project_id,), order="created_at DESC, id DESC"
        )

    # documents: schedules, signals, webhooks, deliveries ---------------------------------
    def put_doc(self, table: str, key: str, project_id: str, body: str, **columns: Any) -> None:
        """Insert or replace one JSON document (``columns``: the table's other queried columns).

        A ``secret`` column (a webhook's signing secret) is stored encrypted.
        """
        if columns.get("secret") is not None:
            columns["secret"] = self.cipher.encrypt(columns["secret"])
        names = ["project_id", "body", *columns]
        values = [project_id, body, *columns.values()]
        key_column = "key" if table == "signals" else "id"
        assignments = ", ".join(f"{n} = excluded.{n}" for n in names)
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {table} ({key_column}, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))}) "
                f"ON CONFLICT ({key_column}) DO UPDATE SET {assignments}",
                (key, *values),
            )

    def get_doc(self, table: str, key: str, model: type[M], what: str) -> M:
        """One document, or ``NotFound``."""
        key_column = "key" if table == "signals" else "id"
        with self._connect() as conn:
            row = conn.execute(f"SELECT body FROM {table} WHERE {key_column} = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"{what} {key!r} does not exist", param="id")
        return load_one(model, str(row[0]), what)

    def list_docs(
        self, table: str, model: type[M], where: str = "", args: tuple[Any, ...] = (), order: str = "rowid"
    ) -> list[M]:
        """Documents matching ``where`` (SQL over the table's columns); damaged ones are skipped."""
        sql = f"SELECT body FROM {table}" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return load_many(model, (str(r[0]) for r in rows), table.removesuffix("s").replace("_", " "))

    def delete_doc(self, table: str, key: str) -> None:
        """Remove one document."""
        key_column = "key" if table == "signals" else "id"
        with self._connect() as conn:
            conn.execute(f"DELETE FROM {table} WHERE {key_column} = ?", (key,))

    def claim_delivery(self, delivery_id: str, now: str, hold_until: str) -> bool:
        """Take a due delivery for one sender (the flow and the service's dispatcher may both look).

        A claim holds until ``hold_until``; a sender that died meanwhile leaves it due again then.
        """
        with self._connect() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET status = 'sending', next_attempt_at = ? "
                "WHERE id = ? AND status IN ('pending', 'sending') AND next_attempt_at <= ?",
                (hold_until, delivery_id, now),
            )
            return cur.rowcount == 1

    def webhook_secret(self, webhook_id: str) -> str:
        """The signing secret of an endpoint (for signing only; never returned by the API after creation)."""
        with self._connect() as conn:
            row = conn.execute("SELECT secret FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
        if row is None:
            raise NotFound(f"webhook {webhook_id!r} does not exist", param="id")
        return self.cipher.decrypt(str(row[0]), f"the signing secret of webhook {webhook_id!r}")

    # secrets at rest ---------------------------------------------------------------------
    def rotate_secrets(self) -> dict[str, int]:
        """Re-encrypt every stored secret under the cipher's first key, in one transaction.

        Returns how many provider API keys and webhook secrets were rewritten, and how many of
        them had been plaintext. One that no key decrypts raises ``SecretKeyError`` and changes nothing.
        """
        counts = {"provider_credentials": 0, "webhooks": 0, "plaintext": 0}
        names = {
            "provider_credentials": "the API key of provider credential",
            "webhooks": "the signing secret of webhook",
        }
        with self._connect() as conn:
            for table, what in names.items():
                rows = conn.execute(f"SELECT id, secret FROM {table} WHERE secret IS NOT NULL").fetchall()
                for row_id, stored in rows:
                    fresh = self.cipher.rotate(stored, f"{what} {row_id!r}")
                    conn.execute(f"UPDATE {table} SET secret = ? WHERE id = ?", (fresh, row_id))
                    counts[table] += 1
                    counts["plaintext"] += not self.cipher.is_encrypted(stored)
        return counts

    # dashboard sessions --------------------------------------------------------------------
    def create_session(self, key_id: str, ttl_s: float) -> str:
        """A new dashboard session for a management key, valid ``ttl_s``; only its hash is kept.

        Returns the session id, the one chance to see it. Expired sessions are swept on the way.
        """
        raw = f"rhs_{secrets.token_urlsafe(32)}"
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl_s)
        with self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (self._stamp(now),))
            conn.execute(
                "INSERT INTO sessions (id_hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (_key_hash(raw), key_id, self._stamp(now), self._stamp(expires)),
            )
        return raw

    def session_key(self, raw: str) -> ApiKey | None:
        """The live management key a session belongs to; ``None`` when unknown, expired, signed out or revoked."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT s.expires_at, k.body FROM sessions s JOIN api_keys k ON k.id = s.key_id WHERE s.id_hash = ?",
                (_key_hash(raw),),
            ).fetchone()
        if row is None or row[0] <= self._stamp(utcnow()):
            return None
        return _live_key(row[1])

    def delete_session(self, raw: str) -> None:
        """End a session for good (sign-out): its id no longer signs anyone in, even if replayed."""
        with self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_key_hash(raw),))

    @staticmethod
    def _stamp(at: dt.datetime) -> str:
        # Fixed width, so stored times compare as strings.
        return at.astimezone(dt.UTC).isoformat(timespec="microseconds")
