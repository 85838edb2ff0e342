"""Fan-out of paid calls on Ray under one shared spend-tracking actor.

``SpendLedger`` is the pure core; ``SpendTracker`` and ``CallWorker`` are the
classes the actors wrap; ``fan_out`` drives a run.
"""

from engine.fanout._driver import FanoutOptions, FanoutReport, fan_out
from engine.fanout._ledger import SpendLedger
from engine.fanout._ray import ensure_ray
from engine.fanout._tracker import SpendTracker
from engine.fanout._worker import CallWorker, Endpoint, Job, Outcome, Price

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
]
