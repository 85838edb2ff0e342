"""The shared spend-tracking actor: a thin shell over ``SpendLedger``, called in batches."""

from __future__ import annotations

from typing import Any

import ray

from engine.fanout._ledger import SpendLedger


class SpendTracker:
    """Holds one run's ledger; every call worker reserves and settles through it."""

    def __init__(self, cap_usd: float) -> None:
        self.ledger = SpendLedger(cap_usd=cap_usd)

    def reserve_many(self, items: list[tuple[str, float]]) -> tuple[list[str], bool]:
        """Grant a prefix of ``items`` that fits under the cap; the flag says whether a refusal is final."""
        granted = self.ledger.reserve_many(items)
        return granted, self.ledger.exhausted

    def settle_many(self, items: list[tuple[str, float]]) -> None:
        """Book actual costs."""
        self.ledger.settle_many(items)

    def snapshot(self) -> dict[str, Any]:
        """The ledger's state."""
        return self.ledger.snapshot()


def spend_tracker(name: str, cap_usd: float) -> Any:
    """The named tracker actor of a run (created on first use; reused by name)."""
    actor = ray.remote(SpendTracker)
    return actor.options(name=name, get_if_exists=True, num_cpus=0, max_concurrency=1).remote(cap_usd)


class TrackerClient:
    """Async calls to the tracker actor from inside another actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def settle_many(self, items: list[tuple[str, float]]) -> None:
        """One round trip for a whole batch."""
        await self.handle.settle_many.remote(items)
