"""Starting (or joining) Ray: a private local cluster on loopback by default, ``RAY_ADDRESS`` joins one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import ray


def _ensure_token() -> None:
    """The token file Ray's token authentication reads (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``).

    Made once, private to this user (0600 in a 0700 folder), when neither it nor ``RAY_AUTH_TOKEN`` exists.
    """
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file() and path.stat().st_size:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once per process, offline and quiet.

    A local cluster binds loopback only and uses Ray's token authentication (``engine.fanout`` sets both up
    before Ray is imported), so neither other hosts nor other local users can join it. Joining a
    cluster (``RAY_ADDRESS``) changes none of that cluster's settings: its own auth mode applies.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS") or "local"  # "local": never attach to a stale cluster file
    if address == "local" and os.environ.get("RAY_AUTH_MODE") == "token":
        _ensure_token()
    ray.init(
        address=address,
        num_cpus=num_cpus if address == "local" else None,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
