"""A call worker built without Ray: an endpoint's checked target reaches the provider client; its cost source."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from engine.credentials import check_base_url
from engine.fanout import CallWorker, Endpoint, Job, Outcome, Price
from engine.providers import REPORTED_COST_HEADER, ChatCall, RetryPolicy
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


class Ledger(Grant):
    """A tracker with room for everything that keeps what each call settled."""

    def __init__(self) -> None:
        self.settled: dict[str, float] = {}

    async def settle_many(self, items: list[tuple[str, float]]) -> None:
        self.settled.update(items)


def test_a_credential_chooses_which_cost_is_settled() -> None:
    # COMPLETION's usage: 3 prompt + 1 completion tokens, so 3 x $1 + 1 x $2 per million at the catalog price.
    price = Price(1.0, 0.5, 2.0)
    catalog_cost = price.cost(3, 0, 1)
    with (
        Loopback(200, {**JSON, REPORTED_COST_HEADER: "0.25"}, COMPLETION).running() as proxy,
        Loopback(200, JSON, COMPLETION).running() as silent,
    ):
        endpoints = {
            "catalog": Endpoint(proxy.url(path="/v1"), "sk-test"),
            "provider": Endpoint(proxy.url(path="/v1"), "sk-test", cost_source="provider"),
            "unreported": Endpoint(silent.url(path="/v1"), "sk-test", cost_source="provider"),
        }
        ledger = Ledger()

        async def go() -> list[Outcome]:
            worker = CallWorker(endpoints, ledger, retry=RetryPolicy(max_attempts=1, backoff_s=0))
            try:
                jobs = [
                    Job(ChatCall(name, "m", {"messages": [{"role": "user", "content": "x"}]}), name, 0.5, price)
                    for name in endpoints
                ]
                return await worker.run(jobs)
            finally:
                await worker.close()

        outcomes = {o.job.endpoint: o for o in asyncio.run(go())}
    assert ledger.settled == pytest.approx({"catalog": catalog_cost, "provider": 0.25, "unreported": catalog_cost})
    assert {name: o.cost_usd for name, o in outcomes.items()} == pytest.approx(ledger.settled)
    reported = {name: o.result.reported_cost_usd for name, o in outcomes.items() if o.result is not None}
    assert reported == {"catalog": 0.25, "provider": 0.25, "unreported": None}  # recorded whichever counts
