"""The spend ledger: reserve before a call starts, settle its actual cost after.

Pure and synchronous: the spend-tracking Ray actor is a thin shell around it.
A call may start only when its estimate is reserved, and a reservation is
refused when ``spent + reserved + estimate`` would pass the cap, so the cap is
enforced before money is spent. A call that costs more than its estimate can
only overshoot by that difference, and only while it was already in flight.

A refusal is *final* (the ledger is ``exhausted``) when even the money already
spent leaves no room for the call; otherwise it is temporary: reservations in
flight usually settle for less than they hold, and the call may fit then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class SpendLedger:
    """Spend against one cap (USD)."""

    cap_usd: float
    spent_usd: float = 0.0
    #: Open reservations by key.
    open: dict[str, float] = field(default_factory=dict)
    #: Settled calls.
    settled_count: int = 0
    #: Set once a reservation was refused for lack of room (the run should stop).
    exhausted: bool = False

    @property
    def reserved_usd(self) -> float:
        """Money held for calls in flight."""
        return sum(self.open.values())

    def reserve_many(self, items: Iterable[tuple[str, float]]) -> list[str]:
        """Reserve in order until one does not fit; returns the keys granted (a prefix of ``items``).

        Once a refusal is final the ledger is ``exhausted`` and grants nothing more.
        """
        granted: list[str] = []
        committed = self.spent_usd + self.reserved_usd
        for key, estimate in items:
            if estimate < 0:
                raise ValueError(f"negative estimate for {key!r}")
            if key in self.open:
                raise ValueError(f"{key!r} is already reserved")
            if self.exhausted or self.spent_usd + estimate > self.cap_usd:
                self.exhausted = True
                break
            if committed + estimate > self.cap_usd:
                break  # wait for calls in flight to settle
            self.open[key] = estimate
            committed += estimate
            granted.append(key)
        return granted

    def settle_many(self, items: Iterable[tuple[str, float]]) -> None:
        """Release each reservation and book the call's actual cost."""
        for key, actual in items:
            if key not in self.open:
                raise KeyError(f"no open reservation for {key!r}")
            if actual < 0:
                raise ValueError(f"negative cost for {key!r}")
            del self.open[key]
            self.spent_usd += actual
            self.settled_count += 1

    def release_many(self, keys: Iterable[str]) -> None:
        """Drop reservations of calls that never started (no cost)."""
        for key in keys:
            self.open.pop(key, None)

    def snapshot(self) -> dict[str, float | int | bool]:
        """Spend, reservations and state, for progress reports."""
        return {
            "cap_usd": self.cap_usd,
            "spent_usd": self.spent_usd,
            "reserved_usd": self.reserved_usd,
            "in_flight": len(self.open),
            "settled": self.settled_count,
            "exhausted": self.exhausted,
        }
