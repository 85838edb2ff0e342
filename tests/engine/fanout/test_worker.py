"""A call worker built without Ray: an endpoint's checked target reaches the provider client."""

from __future__ import annotations

import asyncio
import pickle

from engine.credentials import check_base_url
from engine.fanout import CallWorker, Endpoint, Job, Outcome, Price
from engine.providers import ChatCall, RetryPolicy
from tests.loopback import CHECKED, COMPLETION, HOOK_NAME, JSON, Loopback


class Grant:
    """A tracker with room for everything."""

    async def reserve_many(self, items: list[tuple[str, float]]) -> tuple[list[str], bool]:
        return [key for key, _ in items], False

    async def settle_many(self, items: list[tuple[str, float]]) -> None:
        return None


def test_a_worker_calls_a_pinned_endpoint_at_its_checked_address() -> None:
    with Loopback(200, JSON, COMPLETION).running() as server:
        base_url = server.url(HOOK_NAME, "/v1")
        endpoint = Endpoint(base_url, "sk-test", pin=check_base_url(base_url, [HOOK_NAME], resolve=CHECKED))
        endpoint = pickle.loads(pickle.dumps(endpoint))  # as it reaches a worker actor

        async def go() -> list[Outcome]:
            worker = CallWorker({"pc_api": endpoint}, Grant(), retry=RetryPolicy(max_attempts=1, backoff_s=0))
            try:
                call = ChatCall("pair_1", "m", {"messages": [{"role": "user", "content": "x"}]})
                return await worker.run([Job(call, "pc_api", 0.01, Price(1.0, 0.5, 2.0))])
            finally:
                await worker.close()

        [outcome] = asyncio.run(go())
    assert outcome.result is not None and outcome.result.status == "ok", outcome
    assert [seen.host for seen in server.seen] == [f"{HOOK_NAME}:{server.port}"]
