"""Starting (or joining) Ray: a private local cluster by default, ``RAY_ADDRESS`` joins one."""

from __future__ import annotations

import os

import ray


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once per process, offline and quiet."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS") or "local"  # "local": never attach to a stale cluster file
    ray.init(
        address=address,
        num_cpus=num_cpus if address == "local" else None,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
