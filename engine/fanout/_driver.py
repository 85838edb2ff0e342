"""The driver: feeds call workers with batches, streams outcomes back, stops on cap, cancel or timeout."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.fanout._ray import ensure_ray
from engine.fanout._tracker import spend_tracker, tracker_name
from engine.fanout._worker import CallWorkerActor, Endpoint, Job, Outcome
from engine.providers import RetryPolicy


@dataclass(frozen=True)
class FanoutOptions:
    """How wide to fan out."""

    workers: int = 2
    concurrency: int = 64  # calls in flight per worker
    batch_size: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Start gently: until one call is answered or this many have come back, only the batches that cover
    #: them are out, so an endpoint that refuses every call (an unknown model, a bad key) is not sent
    #: hundreds of them before the run can tell. 0: full width at once.
    probe_calls: int = 0


@dataclass(frozen=True)
class FanoutReport:
    """How a fan-out ended: ``stop`` is ``None`` when every job ran, else why it stopped."""

    stop: str | None
    cap_reached: bool
    spent_usd: float
    started: int
    not_started: int


def fan_out(
    jobs: Sequence[Job],
    *,
    run_id: str,
    cap_usd: float,
    endpoints: dict[str, Endpoint],
    on_outcomes: Callable[[list[Outcome]], str | None],
    journal: str | None = None,
    options: FanoutOptions | None = None,
) -> FanoutReport:
    """Run ``jobs`` on Ray call workers under one spend tracker with cap ``cap_usd``.

    Each call reserves its estimate on the tracker as it takes a worker's slot; the tracker appends it to
    ``journal`` (``engine.fanout._journal``) before granting, so after a crash the journal holds exactly
    the calls that may have gone out. ``on_outcomes`` receives each finished batch's sent calls as they
    arrive (checkpoint, progress) and returns a reason to stop (cancel, auto-cancel, timeout, refused) or
    ``None`` to go on. After a stop no new call starts; calls in flight finish and are reported, since their
    money is spent. Until a call is answered or ``options.probe_calls`` calls have come back, only the
    batches covering those calls are out.
    """
    opts = options or FanoutOptions()
    ensure_ray()
    tracker = spend_tracker(tracker_name(run_id), cap_usd, journal)
    actor: Any = ray.remote(CallWorkerActor)
    workers: list[Any] = [
        actor.options(num_cpus=0, max_concurrency=10_000).remote(
            endpoints, tracker, concurrency=opts.concurrency, retry=opts.retry, share=1 / opts.workers
        )
        for _ in range(opts.workers)
    ]
    batches = [list(jobs[i : i + opts.batch_size]) for i in range(0, len(jobs), opts.batch_size)]
    # Twice a worker's concurrency queued, so a batch held up by one slow call leaves no slot idle. A queued
    # call is not yet reserved nor journaled: a crash leaves it to be sent by the resumed run.
    per_worker = math.ceil(2 * opts.concurrency / opts.batch_size) + 1
    probing = opts.probe_calls > 0
    in_flight: dict[Any, int] = {}
    load = [0] * len(workers)
    stop: str | None = None
    cap_reached = False
    started = not_started = submitted = 0
    try:
        while batches or in_flight:
            while (
                stop is None and batches and min(load) < per_worker and not (probing and submitted >= opts.probe_calls)
            ):
                w = load.index(min(load))
                batch = batches.pop(0)
                in_flight[workers[w].run.remote(batch)] = w
                load[w] += 1
                submitted += len(batch)
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5) if in_flight else ([], [])
            for ref in done:
                load[in_flight.pop(ref)] -= 1
                outcomes: list[Outcome] = ray.get(ref)
                sent = [o for o in outcomes if o.started]
                started += len(sent)
                answered = any(o.result is not None and o.result.status == "ok" for o in sent)
                probing = probing and not answered and started < opts.probe_calls
                not_started += len(outcomes) - len(sent)
                # Every sent call is reported, whatever stops the run: its money is spent.
                reason = on_outcomes(sent) if sent else None
                if len(sent) < len(outcomes) and stop is None:
                    cap_reached, stop = True, "cap"
                stop = stop or reason
            if not done and stop is None:
                stop = on_outcomes([])
            if stop is not None and batches:
                ray.get(tracker.close.remote())  # queued calls come back unsent
                not_started += sum(len(b) for b in batches)
                batches.clear()
        spent = float(ray.get(tracker.snapshot.remote())["spent_usd"])
    finally:
        for handle in workers:
            ray.kill(handle)
        ray.kill(tracker)
    return FanoutReport(stop, cap_reached, spent, started, not_started)
