"""The crash journal of a run's calls, written by the spend tracker.

``+<call id>``, a tab, ``<reserved USD>`` as it grants a call, before the call is sent (appended and
fsynced), so exactly the calls that may go out are in it; ``=<call id>``, a tab, ``<actual USD>`` as it
settles one. After a crash, a call sent but not recorded costs what it settled for, else its reservation.
Journals of earlier versions also hold bare ``+<id>`` lines (reservation unknown) and ``-<id>`` lines for
calls that were in fact never sent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path


def append_sent(path: str | Path, calls: Iterable[tuple[str, float]]) -> None:
    """Journal calls about to be sent, with their reservations (durably: a crash right after loses none)."""
    _append(path, "+", calls)


def append_settled(path: str | Path, calls: Iterable[tuple[str, float]]) -> None:
    """Journal what answered calls cost (so a crash before they are recorded does not lose it)."""
    _append(path, "=", calls)


def _append(path: str | Path, sign: str, calls: Iterable[tuple[str, float]]) -> None:
    lines = "".join(f"{sign}{key}\t{usd!r}\n" for key, usd in calls)
    if not lines:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def read_sent(path: str | Path) -> dict[str, float]:
    """Every call that may have been sent, with its cost: settled if it was, else its reservation.

    A call of an old journal with no reservation costs 0.
    """
    sent: dict[str, float] = {}
    if not Path(path).exists():
        return sent
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, _, usd = line[1:].partition("\t")
        if line.startswith(("+", "=")) and (line[0] == "+" or key in sent):
            sent[key] = _usd(usd)
        elif line.startswith("-"):
            sent.pop(key, None)
    return sent


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0
