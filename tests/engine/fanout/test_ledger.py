import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fanout import SpendLedger


def test_reserve_refuses_what_would_pass_the_cap() -> None:
    ledger = SpendLedger(cap_usd=1.0)
    assert ledger.reserve_many([("a", 0.4), ("b", 0.4), ("c", 0.4), ("d", 0.1)]) == ["a", "b"]
    assert not ledger.exhausted  # c may fit once a and b settle for less than they hold
    ledger.settle_many([("a", 0.1)])
    assert ledger.reserve_many([("c", 0.4)]) == ["c"]
    ledger.settle_many([("b", 0.45), ("c", 0.4)])
    assert ledger.spent_usd == pytest.approx(0.95) and ledger.reserved_usd == 0
    assert ledger.reserve_many([("e", 0.1), ("f", 0.01)]) == []
    assert ledger.exhausted  # even with nothing in flight there is no room: final
    assert ledger.reserve_many([("g", 0.0)]) == []  # and no later, smaller call sneaks in


def test_settle_needs_an_open_reservation() -> None:
    ledger = SpendLedger(cap_usd=1.0)
    with pytest.raises(KeyError):
        ledger.settle_many([("x", 0.1)])
    ledger.reserve_many([("x", 0.1)])
    with pytest.raises(ValueError, match="already reserved"):
        ledger.reserve_many([("x", 0.1)])
    ledger.release_many(["x"])
    assert ledger.reserved_usd == 0 and ledger.spent_usd == 0


calls = st.lists(
    st.tuples(st.floats(0, 0.2, allow_nan=False), st.floats(0, 0.3, allow_nan=False)), min_size=1, max_size=200
)


@settings(max_examples=200, deadline=None)
@given(calls, st.floats(0.01, 5), st.integers(1, 64), st.randoms(use_true_random=False))
def test_spend_never_passes_the_cap_beyond_in_flight_overruns(
    plan: list[tuple[float, float]], cap: float, concurrency: int, rnd
) -> None:  # type: ignore[no-untyped-def]
    """Random estimates, actual costs, concurrency and settle order."""
    ledger = SpendLedger(cap_usd=cap)
    queue = [(f"c{i}", est, actual) for i, (est, actual) in enumerate(plan)]
    in_flight: dict[str, tuple[float, float]] = {}
    overrun = 0.0
    booked = 0.0
    while queue or in_flight:
        room = concurrency - len(in_flight)
        if queue and room > 0:
            batch = queue[: rnd.randint(1, room)]
            granted = ledger.reserve_many((k, est) for k, est, _ in batch)
            for key, est, actual in batch[: len(granted)]:
                in_flight[key] = (est, actual)
            queue = [] if ledger.exhausted else queue[len(granted) :]
        if in_flight:
            done = rnd.sample(sorted(in_flight), rnd.randint(1, len(in_flight)))
            settle = [(k, in_flight.pop(k)) for k in done]
            ledger.settle_many((k, actual) for k, (_, actual) in settle)
            overrun += sum(max(0.0, actual - est) for _, (est, actual) in settle)
            booked += sum(actual for _, (_, actual) in settle)
        # The invariant holds at every step, not just at the end.
        assert ledger.spent_usd + ledger.reserved_usd <= cap + overrun + 1e-9
        assert ledger.reserved_usd == pytest.approx(sum(est for est, _ in in_flight.values()))
    assert ledger.spent_usd == pytest.approx(booked)  # nothing lost
    assert ledger.reserved_usd == 0
