"""The driver: feeds call workers with batches, streams outcomes back, stops on cap, cancel or timeout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.fanout._ray import ensure_ray
from engine.fanout._tracker import spend_tracker
from engine.fanout._worker import CallWorkerActor, Endpoint, Job, Outcome
from engine.providers import RetryPolicy


@dataclass(frozen=True)
class FanoutOptions:
    """How wide to fan out."""

    workers: int = 2
    concurrency: int = 64  # calls in flight per worker (never more are sent to it)
    batch_size: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class FanoutReport:
    """How a fan-out ended: ``stop`` is ``None`` when every job ran, else why it stopped."""

    stop: str | None
    cap_reached: bool
    spent_usd: float
    started: int
    not_started: int


def reserve(tracker: Any, jobs: list[Job]) -> tuple[int, bool]:
    """Reserve a prefix of ``jobs`` on the tracker: how many may be sent now, and whether a refusal is final."""
    granted, final = ray.get(tracker.reserve_many.remote([(j.call.pair_id, j.estimate_usd) for j in jobs]))
    return len(granted), bool(final)


def fan_out(
    jobs: Sequence[Job],
    *,
    run_id: str,
    cap_usd: float,
    endpoints: dict[str, Endpoint],
    on_outcomes: Callable[[list[Outcome]], str | None],
    on_sent: Callable[[list[Job]], None] | None = None,
    options: FanoutOptions | None = None,
) -> FanoutReport:
    """Run ``jobs`` on Ray call workers under one spend tracker with cap ``cap_usd``.

    The driver reserves each batch on the tracker before it sends it, so exactly the jobs granted are
    sent: ``on_sent(jobs)`` sees them first (a crash journal), and a job the cap has no room for is never
    sent. ``on_outcomes`` receives each finished batch as it arrives (checkpoint, progress) and returns a
    reason to stop (cancel, auto-cancel, timeout) or ``None`` to go on. After a stop no new batch starts;
    batches in flight finish and are reported, since their money is spent.
    """
    opts = options or FanoutOptions()
    ensure_ray()
    tracker = spend_tracker(f"rehearsal-spend-{run_id}", cap_usd)
    actor: Any = ray.remote(CallWorkerActor)
    workers: list[Any] = [
        actor.options(num_cpus=0, max_concurrency=10_000).remote(
            endpoints, tracker, concurrency=opts.concurrency, retry=opts.retry, share=1 / opts.workers
        )
        for _ in range(opts.workers)
    ]
    # Started before anything is journaled as sent: a call handed to a worker still starting is not yet sent.
    ray.get([w.__ray_ready__.remote() for w in workers])
    # A worker gets no more calls than it has slots, so every call sent to it starts at once: the journal
    # then holds calls that are on the wire, not calls waiting in a queue (which a crash would strand).
    in_flight: dict[Any, tuple[int, int]] = {}  # result ref -> (worker, calls in the batch)
    busy = [0] * len(workers)
    stop: str | None = None
    cap_reached = False
    sent = started = 0
    try:
        while in_flight or (stop is None and sent < len(jobs)):
            while stop is None and sent < len(jobs):
                w = busy.index(min(busy))
                room = min(opts.batch_size, opts.concurrency - busy[w])
                if room <= 0:
                    break
                batch = list(jobs[sent : sent + room])
                granted, final = reserve(tracker, batch)
                if granted == 0 and (final or not in_flight):
                    cap_reached, stop = True, "cap"
                if granted == 0:
                    break  # wait for calls in flight to settle and free money (or stop: the cap)
                if on_sent is not None:
                    on_sent(batch[:granted])
                in_flight[workers[w].run.remote(batch[:granted])] = (w, granted)
                busy[w] += granted
                sent += granted
                if granted < len(batch):
                    break
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5) if in_flight else ([], [])
            for ref in done:
                w, size = in_flight.pop(ref)
                busy[w] -= size
                outcomes: list[Outcome] = ray.get(ref)
                started += len(outcomes)
                stop = stop or on_outcomes(outcomes)
            if not done and stop is None:
                stop = on_outcomes([])
        spent = float(ray.get(tracker.snapshot.remote())["spent_usd"])
    finally:
        for handle in workers:
            ray.kill(handle)
        ray.kill(tracker)
    return FanoutReport(stop, cap_reached, spent, started, len(jobs) - sent)
