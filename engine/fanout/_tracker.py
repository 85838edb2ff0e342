"""The shared spend-tracking actor: a thin shell over ``SpendLedger``, called in batches.

It is also where a run's crash journal is written: a call is granted only once its line is on disk,
so the journal holds exactly the calls that may have gone out.
"""

from __future__ import annotations

import time
from typing import Any

from engine.fanout._journal import append_sent, append_settled
from engine.fanout._ledger import SpendLedger


class SpendTracker:
    """Holds one run's ledger; every call worker reserves and settles through it."""

    def __init__(self, cap_usd: float, journal: str | None = None) -> None:
        self.ledger = SpendLedger(cap_usd=cap_usd)
        self.journal = journal
        self.closed = False

    def reserve_many(self, items: list[tuple[str, float]]) -> tuple[list[str], bool]:
        """Grant a prefix of ``items`` that fits under the cap (journaled first); the flag: a refusal is final."""
        if self.closed:
            return [], True
        granted = self.ledger.reserve_many(items)
        if self.journal is not None and granted:
            estimates = dict(items)
            append_sent(self.journal, [(key, estimates[key]) for key in granted])
        return granted, self.ledger.exhausted

    def settle_many(self, items: list[tuple[str, float]]) -> None:
        """Book actual costs (journaled too)."""
        self.ledger.settle_many(items)
        if self.journal is not None and items:
            append_settled(self.journal, items)

    def close(self) -> None:
        """Grant nothing more (cancel, timeout, cap): calls in flight still settle."""
        self.closed = True

    def snapshot(self) -> dict[str, Any]:
        """The ledger's state."""
        return {**self.ledger.snapshot(), "closed": self.closed}


def tracker_name(run_id: str) -> str:
    """The name of a run's tracker actor."""
    return f"rehearsal-spend-{run_id}"


def fence(run_id: str, timeout_s: float = 30.0) -> None:
    """Make sure no call of an earlier driver of ``run_id`` can still start: kill its tracker, if it lives.

    A driver killed mid-run may leave its call workers running for a while (until Ray notices); without
    their tracker they are granted nothing more, so once this returns the run's journal is complete.
    """
    import ray  # here, not at the top: importing the engine (a CLI's --help) must not import Ray

    try:
        leftover = ray.get_actor(tracker_name(run_id))
    except ValueError:
        return
    ray.kill(leftover)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(tracker_name(run_id))
        except ValueError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the spend tracker of an earlier driver of {run_id} did not go away")


def spend_tracker(name: str, cap_usd: float, journal: str | None = None) -> Any:
    """The named tracker actor of a run (created on first use; reused by name), on the driver's node.

    It writes the run's journal, which the driver reads after a crash: so it runs where the driver does.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(SpendTracker)
    return actor.options(name=name, get_if_exists=True, num_cpus=0, max_concurrency=1, scheduling_strategy=here).remote(
        cap_usd, journal
    )


class TrackerClient:
    """Async calls to the tracker actor from inside another actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def reserve_many(self, items: list[tuple[str, float]]) -> tuple[list[str], bool]:
        """One round trip for a whole group."""
        granted, final = await self.handle.reserve_many.remote(items)
        return list(granted), bool(final)

    async def settle_many(self, items: list[tuple[str, float]]) -> None:
        """One round trip for a whole group."""
        await self.handle.settle_many.remote(items)
