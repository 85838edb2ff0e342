"""Call workers: async actors that run batches of calls under bounded concurrency and rate limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from engine.fanout._tracker import TrackerClient
from engine.netpolicy import Target
from engine.providers import ChatCall, ChatResult, Provider

if TYPE_CHECKING:
    from engine.providers import RetryPolicy


@dataclass(frozen=True)
class Endpoint:
    """A resolved credential: where to call, how fast, and which cost of a call counts.

    ``pin``, for credentials stored through the API, is the checked target: calls connect to its address.
    ``cost_source`` ``provider`` settles the cost the endpoint reports (the catalog's where it reports none).
    """

    base_url: str
    api_key: str
    rate_limit_rps: float | None = None
    pin: Target | None = None
    cost_source: str = "catalog"

    def cost(self, result: ChatResult, price: Price) -> float:
        """What ``result`` costs the run: usage x ``price``, or the endpoint's reported cost where it counts."""
        if self.cost_source == "provider" and result.reported_cost_usd is not None:
            return result.reported_cost_usd
        return price.cost(result.input_tokens, result.cached_input_tokens, result.output_tokens)


@dataclass(frozen=True)
class Price:
    """USD per million tokens for one model."""

    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, cached_input_tokens: int, output_tokens: int) -> float:
        """The row-cost formula."""
        return (
            (input_tokens - cached_input_tokens) * self.input_per_mtok
            + cached_input_tokens * self.cached_input_per_mtok
            + output_tokens * self.output_per_mtok
        ) / 1e6


@dataclass(frozen=True)
class Job:
    """One call to make: the call, which endpoint serves it, its reserved estimate and its price."""

    call: ChatCall
    endpoint: str
    estimate_usd: float
    price: Price


@dataclass(frozen=True)
class Outcome:
    """A job's result and cost.

    ``started`` is false when the tracker had no room for it: the call was never sent (``final``: the cap
    is reached or the run was closed, so no room will come).
    """

    job: Job
    result: ChatResult | None
    cost_usd: float
    started: bool = True
    final: bool = False


class Tracker(Protocol):
    """What a worker needs from the spend tracker."""

    async def reserve_many(self, items: list[tuple[str, float]]) -> tuple[list[str], bool]: ...
    async def settle_many(self, items: list[tuple[str, float]]) -> None: ...


T = TypeVar("T")
U = TypeVar("U")


class Grouped(Generic[T, U]):
    """Requests made one at a time, sent in groups: those asked in one turn of the event loop share a trip.

    ``flush`` takes the group and returns one answer per request; ``delay_s`` lets a group gather longer
    (for requests whose answer nobody waits on to go on).
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[U]]], delay_s: float = 0.0) -> None:
        self.flush = flush
        self.delay_s = delay_s
        self.pending: list[tuple[T, asyncio.Future[U]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def ask(self, item: T) -> U:
        """Queue ``item`` for the next group and wait for its answer."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[U] = loop.create_future()
        if not self.pending:
            loop.call_later(self.delay_s, self._schedule)  # after every request of this turn has queued
        self.pending.append((item, answer))
        return await answer

    def _schedule(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self) -> None:
        group, self.pending = self.pending, []
        try:
            answers = await self.flush([item for item, _ in group])
        except Exception as exc:  # every request of the group fails alike
            for _, answer in group:
                answer.set_exception(exc)
            return
        for (_, answer), value in zip(group, answers, strict=True):
            answer.set_result(value)


class RateLimiter:
    """Spaces requests to at most ``rps`` per second (shared by all tasks of one worker)."""

    def __init__(self, rps: float) -> None:
        self.interval = 1.0 / rps
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        """Sleep until this request's slot."""
        async with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


#: How long a call waits before asking the tracker again when the cap has no room for it yet.
ROOM_WAIT_S = 0.05
#: How long reservations gather: a call waits this long at most, so the tracker answers far fewer requests.
RESERVE_GATHER_S = 0.003
#: How long settlements gather before they go to the tracker in one round trip.
SETTLE_GATHER_S = 0.02


class CallWorker:
    """Runs batches of jobs; each call reserves as it takes a slot, is sent at once, settles when answered.

    The tracker journals a call as it grants it, so the journal holds the calls on the wire. Reservations
    and settlements of calls that start or end together share one round trip to the tracker
    (``Grouped``), so a batch costs about two round trips, not two per call.
    """

    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        tracker: Tracker,
        *,
        concurrency: int = 64,
        retry: RetryPolicy | None = None,
        share: float = 1.0,
    ) -> None:
        self.endpoints = endpoints
        self.tracker = tracker
        from engine.providers import RetryPolicy  # the SDK loads with the first worker, not with the engine

        self.retry = retry or RetryPolicy()
        self.semaphore = asyncio.Semaphore(concurrency)
        self.providers: dict[str, Provider] = {}
        self.limiters = {
            name: RateLimiter(ep.rate_limit_rps * share) for name, ep in endpoints.items() if ep.rate_limit_rps
        }
        self.reservations: Grouped[tuple[str, float], str] = Grouped(self._reserve, RESERVE_GATHER_S)
        # A settlement only frees money: it may wait a moment for others to share its round trip.
        self.settlements: Grouped[tuple[str, float], None] = Grouped(self._settle, SETTLE_GATHER_S)

    async def _reserve(self, items: list[tuple[str, float]]) -> list[str]:
        granted, final = await self.tracker.reserve_many(items)
        keys = set(granted)
        return ["granted" if key in keys else ("refused" if final else "wait") for key, _ in items]

    async def _settle(self, items: list[tuple[str, float]]) -> list[None]:
        await self.tracker.settle_many(items)
        return [None] * len(items)

    def _provider(self, name: str) -> Provider:
        if name not in self.providers:
            from engine.providers import OpenAICompatible

            ep = self.endpoints[name]
            self.providers[name] = OpenAICompatible(
                base_url=ep.base_url, api_key=ep.api_key, retry=self.retry, pin=ep.pin
            )
        return self.providers[name]

    async def _one(self, job: Job) -> Outcome:
        key = job.call.pair_id
        async with self.semaphore:
            while (verdict := await self.reservations.ask((key, job.estimate_usd))) == "wait":
                await asyncio.sleep(ROOM_WAIT_S)  # calls in flight settle for less than they hold: room comes
            if verdict == "refused":
                return Outcome(job, None, 0.0, started=False, final=True)
            limiter = self.limiters.get(job.endpoint)
            if limiter is not None:
                await limiter.wait()
            result = await self._provider(job.endpoint).complete(job.call)
        cost = self.endpoints[job.endpoint].cost(result, job.price)
        await self.settlements.ask((key, cost))
        return Outcome(job, result, cost)

    async def run(self, jobs: list[Job]) -> list[Outcome]:
        """Run a batch concurrently (each call as a slot frees) and return every job's outcome."""
        return list(await asyncio.gather(*(self._one(j) for j in jobs)))

    async def close(self) -> None:
        """Close every client."""
        for provider in self.providers.values():
            await provider.aclose()


class CallWorkerActor(CallWorker):
    """The Ray shell: built inside the actor process around the tracker actor's handle."""

    def __init__(self, endpoints: dict[str, Endpoint], tracker_handle: Any, **options: Any) -> None:
        super().__init__(endpoints, TrackerClient(tracker_handle), **options)
