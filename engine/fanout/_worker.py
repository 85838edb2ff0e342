"""Call workers: async actors that run batches of calls under bounded concurrency and rate limits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from engine.fanout._tracker import TrackerClient
from engine.netpolicy import Target
from engine.providers import ChatCall, ChatResult, OpenAICompatible, Provider, RetryPolicy


@dataclass(frozen=True)
class Endpoint:
    """A resolved credential: where to call and how fast.

    ``pin``, for credentials stored through the API, is the checked target: calls connect to its address.
    """

    base_url: str
    api_key: str
    rate_limit_rps: float | None = None
    pin: Target | None = None


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
    """A sent job's result and what it cost."""

    job: Job
    result: ChatResult
    cost_usd: float


class Tracker(Protocol):
    """What a worker needs from the spend tracker."""

    async def settle_many(self, items: list[tuple[str, float]]) -> None: ...


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


class CallWorker:
    """Runs batches of jobs (reserved by the driver before they were sent) and settles each batch after."""

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
        self.retry = retry or RetryPolicy()
        self.semaphore = asyncio.Semaphore(concurrency)
        self.providers: dict[str, Provider] = {}
        self.limiters = {
            name: RateLimiter(ep.rate_limit_rps * share) for name, ep in endpoints.items() if ep.rate_limit_rps
        }

    def _provider(self, name: str) -> Provider:
        if name not in self.providers:
            ep = self.endpoints[name]
            self.providers[name] = OpenAICompatible(
                base_url=ep.base_url, api_key=ep.api_key, retry=self.retry, pin=ep.pin
            )
        return self.providers[name]

    async def _one(self, job: Job) -> Outcome:
        async with self.semaphore:
            limiter = self.limiters.get(job.endpoint)
            if limiter is not None:
                await limiter.wait()
            result = await self._provider(job.endpoint).complete(job.call)
        cost = job.price.cost(result.input_tokens, result.cached_input_tokens, result.output_tokens)
        return Outcome(job, result, cost)

    async def run(self, jobs: list[Job]) -> list[Outcome]:
        """Run the (reserved) batch concurrently, settle it, and return every job's outcome."""
        outcomes = list(await asyncio.gather(*(self._one(j) for j in jobs)))
        if outcomes:
            await self.tracker.settle_many([(o.job.call.pair_id, o.cost_usd) for o in outcomes])
        return outcomes

    async def close(self) -> None:
        """Close every client."""
        for provider in self.providers.values():
            await provider.aclose()


class CallWorkerActor(CallWorker):
    """The Ray shell: built inside the actor process around the tracker actor's handle."""

    def __init__(self, endpoints: dict[str, Endpoint], tracker_handle: Any, **options: Any) -> None:
        super().__init__(endpoints, TrackerClient(tracker_handle), **options)
