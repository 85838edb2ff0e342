"""Fan-out of paid calls on Ray under one shared spend-tracking actor.

``SpendLedger`` is the pure core; ``SpendTracker`` and ``CallWorker`` are the
classes the actors wrap; ``fan_out`` drives a run. Names load lazily so an
actor process that only needs the tracker does not import the HTTP client.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.fanout._driver import FanoutOptions, FanoutReport, fan_out
    from engine.fanout._ledger import SpendLedger
    from engine.fanout._ray import ensure_ray
    from engine.fanout._tracker import SpendTracker, fence
    from engine.fanout._worker import CallWorker, Endpoint, Job, Outcome, Price

# Before anything imports Ray (it reads both at import): a cluster this process starts itself (no RAY_ADDRESS)
# lives on loopback and asks for Ray's token. With the first, Ray gives its node the address 127.0.0.1, which
# every server of the cluster then binds (GCS, raylet, workers, agents) instead of all interfaces; such a node
# takes no other machines. The second keeps other local users out too (``ensure_ray`` makes the token file).
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")

_HOMES = {
    "FanoutOptions": "_driver",
    "FanoutReport": "_driver",
    "fan_out": "_driver",
    "SpendLedger": "_ledger",
    "ensure_ray": "_ray",
    "SpendTracker": "_tracker",
    "fence": "_tracker",
    "CallWorker": "_worker",
    "Endpoint": "_worker",
    "Job": "_worker",
    "Outcome": "_worker",
    "Price": "_worker",
}

__all__ = [
    "CallWorker",
    "Endpoint",
    "FanoutOptions",
    "FanoutReport",
    "Job",
    "Outcome",
    "Price",
    "SpendLedger",
    "SpendTracker",
    "ensure_ray",
    "fan_out",
    "fence",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'engine.fanout' has no attribute {name!r}")
    return getattr(import_module(f"engine.fanout.{_HOMES[name]}"), name)
