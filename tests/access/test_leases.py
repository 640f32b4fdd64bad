"""The documented bound of leased counters (access.leases), as properties over random interleavings.

Several "instances" (one `LeasedCounters` each) share one `MemoryState`, all on one fake clock, so
any interleaving of requests, answers and pauses can be replayed exactly. Then the same through
real Redis: round trips per request, and what a renewal failure turns into.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.access.budgets import period_bounds
from switchboard.access.counters import Plan
from switchboard.access.leases import LEASE_FRACTION, LeasedCounters
from switchboard.errors import GatewayError
from switchboard.shared_state import Grant, GuardedState, LeaseRequest, MemoryState, build_shared_state
from switchboard.store import VirtualKey
from tests.access.backends import REDIS_URL

WALL = 1_800_000_000.0  # a fixed wall clock: budget periods do not roll over during a test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SpendLog:
    """The store as the budget counter sees it: the usage log's spend, nothing yet."""

    async def spend(self, key_id: str, since: float) -> float:
        return 0.0


def _instances(n: int, clock: Clock, state: object = None) -> tuple[list[LeasedCounters], object]:
    shared = state if state is not None else MemoryState(clock=clock)
    return [LeasedCounters({}, shared, SpendLog(), clock=clock, wall=lambda: WALL)  # type: ignore[arg-type]
            for _ in range(n)], shared


def _key(**limits: float) -> VirtualKey:
    return VirtualKey(id="key_prop", name="prop", secret_hash="0" * 64, hint="sk-sb-...prop", **limits)  # type: ignore[arg-type]


async def _admit(engine: LeasedCounters, plan: Plan) -> bool:
    try:
        if engine.admit_now(plan) is None:
            await engine.admit(plan)
    except GatewayError as err:
        assert err.status == 429
        return False
    return True


def _worst_window(times: Sequence[float], amounts: Sequence[float], rate: float) -> float:
    """The largest (units in a window) - (rate x its length) over every window of the admissions."""
    worst = 0.0
    for i in range(len(times)):
        total = 0.0
        for j in range(i, len(times)):
            total += amounts[j]
            worst = max(worst, total - rate * (times[j] - times[i]))
    return worst


PAUSES = st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.02, 0.3, 2.0, 20.0])


@settings(max_examples=60, deadline=None)
@given(rpm=st.sampled_from([3, 150, 250, 1000, 6000]), n=st.integers(1, 3),
       ops=st.lists(st.tuples(st.integers(0, 2), PAUSES, st.integers(1, 6)), min_size=1, max_size=120))
def test_requests_admitted_in_any_window_stay_within_the_documented_bound(
        rpm: int, n: int, ops: list[tuple[int, float, int]]) -> None:
    """Bound: an exact bucket's allowance (rpm + rate x window) plus N x (lease cap - 1)."""
    clock = Clock()
    engines, _ = _instances(n, clock)
    key = _key(rpm=rpm)
    admitted: list[float] = []

    async def run() -> None:
        for who, pause, burst in ops:
            clock.now += pause
            engine = engines[who % n]
            plan = engine.plan(key, "m")
            assert plan is not None
            results = await asyncio.gather(*(_admit(engine, plan) for _ in range(burst)))
            admitted.extend([clock.now] * sum(results))

    asyncio.run(run())
    cap = max(1, rpm // LEASE_FRACTION)
    bound = rpm + n * (cap - 1)
    assert _worst_window(admitted, [1.0] * len(admitted), rpm / 60) <= bound + 1e-6
    if rpm < 2 * LEASE_FRACTION:  # a lease of one request: as exact as one bucket
        assert _worst_window(admitted, [1.0] * len(admitted), rpm / 60) <= rpm + 1e-6


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), budget=st.sampled_from([0.0, 0.3, 5.0, 100.0]),
       ops=st.lists(st.tuples(st.integers(0, 2), st.floats(0.001, 2.0), st.booleans()), min_size=1, max_size=150))
def test_budgets_go_over_by_at_most_one_request_per_instance(
        n: int, budget: float, ops: list[tuple[int, float, bool]]) -> None:
    """Requests one after another, each charged its cost when answered; sometimes a settlement flush."""
    clock = Clock()
    engines, _ = _instances(n, clock)
    key = _key(budget_usd=budget, budget_period="monthly")
    spent = 0.0
    highest = 0.0

    async def run() -> None:
        nonlocal spent, highest
        for who, cost, flush in ops:
            clock.now += 0.01
            engine = engines[who % n]
            plan = engine.plan(key, "m")
            assert plan is not None
            if await _admit(engine, plan):
                engine.charge(plan, 0, cost)
                spent += cost
                highest = max(highest, cost)
            if flush:
                await engine.flush()

    asyncio.run(run())
    assert spent <= budget + n * highest + 1e-9


@settings(max_examples=40, deadline=None)
@given(tpm=st.sampled_from([10, 500, 20000]), n=st.integers(1, 3),
       ops=st.lists(st.tuples(st.integers(0, 2), PAUSES, st.integers(0, 400)), min_size=1, max_size=100))
def test_tokens_counted_in_any_window_stay_within_the_documented_bound(
        tpm: int, n: int, ops: list[tuple[int, float, int]]) -> None:
    """Bound: an exact bucket's allowance, plus one request's tokens and one lease per instance."""
    clock = Clock()
    engines, _ = _instances(n, clock)
    key = _key(tpm=tpm)
    times: list[float] = []
    tokens: list[float] = []

    async def run() -> None:
        for who, pause, used in ops:
            clock.now += pause
            engine = engines[who % n]
            plan = engine.plan(key, "m")
            assert plan is not None
            if await _admit(engine, plan):
                engine.charge(plan, used, 0.0)
                times.append(clock.now)
                tokens.append(float(used))

    asyncio.run(run())
    cap = max(1, tpm // LEASE_FRACTION)
    assert _worst_window(times, tokens, tpm / 60) <= tpm + n * (cap + max(tokens, default=0)) + 1e-6


async def test_concurrent_requests_share_one_renewal() -> None:
    clock = Clock()
    (engine,), state = _instances(1, clock)
    calls: list[int] = []
    inner = state.lease  # type: ignore[attr-defined]

    async def counted(requests: Sequence[LeaseRequest]) -> list[Grant]:
        calls.append(len(requests))
        await asyncio.sleep(0)  # a round trip: the others arrive while it is out
        return await inner(requests)  # type: ignore[no-any-return]

    state.lease = counted  # type: ignore[attr-defined]
    plan = engine.plan(_key(rpm=60000, tpm=10**9), "m")
    assert plan is not None
    assert await _admit(engine, plan)  # the first lease is one request: nothing known about the demand yet
    clock.now += 0.001
    results = await asyncio.gather(*(_admit(engine, plan) for _ in range(50)))
    assert all(results)
    assert len(calls) == 2  # the 50 waited for one renewal sized for all of them
    assert engine.renewals == 2


async def test_a_lowered_limit_drops_the_lease_taken_under_the_old_one() -> None:
    clock = Clock()
    (engine,), _ = _instances(1, clock)
    plan = engine.plan(_key(rpm=60000), "m")
    assert plan is not None
    for _ in range(3):  # the demand grows the lease
        await asyncio.gather(*(_admit(engine, plan) for _ in range(40)))
        clock.now += 0.01
    assert plan.requests[0].room(clock.now) > 1  # type: ignore[attr-defined]
    lowered = engine.plan(_key(rpm=2), "m")
    assert lowered is not None and lowered is not plan
    # The shared bucket had 60000; with rpm 2 it holds at most 2, of which the new lease takes 1 at a time.
    assert [await _admit(engine, lowered) for _ in range(4)] == [True, True, False, False]


async def test_redis_round_trips_per_request_are_far_below_one_under_load(redis_key_prefix: str) -> None:
    """Two instances over real Redis, 4000 requests 32 at a time with every limit: counted round trips."""
    states = [build_shared_state(REDIS_URL, redis_key_prefix) for _ in range(2)]
    for s in states:
        await s.start()
    engines = [LeasedCounters({"m": (10**8, 10**10)}, s, SpendLog()) for s in states]  # type: ignore[arg-type]
    for e in engines:
        e.start()
    key = _key(rpm=10**8, tpm=10**10, budget_usd=10**6, budget_period="daily")
    try:
        admitted = 0
        for round_ in range(125):
            engine = engines[round_ % 2]
            plan = engine.plan(key, "m")
            assert plan is not None

            async def one(e: LeasedCounters = engine, p: Plan = plan) -> bool:
                ok = await _admit(e, p)
                if ok:
                    e.charge(p, 20, 0.0001)
                return ok

            admitted += sum(await asyncio.gather(*(one() for _ in range(32))))
            await asyncio.sleep(0.002)
        assert admitted == 4000
        calls = sum(s.calls for s in states if isinstance(s, GuardedState))
        renewals = sum(e.renewals for e in engines)
        assert renewals <= 0.05 * admitted and calls <= 0.2 * admitted, (renewals, calls)
        # Everything spent was settled in Redis, and the money reserved and not used given back at close.
        for e in engines:
            await e.aclose()
        engines = []
        start, _ = period_bounds("daily", time.time())
        probe = await states[0].lease([LeaseRequest(f"budget:{key.id}:daily:{int(start)}", True, 10**6)])
        assert probe[0].level == pytest.approx(10**6 - 4000 * 0.0001)
    finally:
        for e in engines:
            await e.aclose()
        for s in states:
            await s.aclose()


class _Failing:
    """A shared state that fails every lease until `healthy`; records what it was asked to settle."""

    def __init__(self, clock: Clock) -> None:
        self.inner = MemoryState(clock=clock)
        self.healthy = False
        self.settled: list[float] = []
        self.release = asyncio.Event()

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        await self.release.wait()
        if not self.healthy:
            raise ConnectionError("down")
        self.settled += [r.settle for r in requests if r.settle]
        return await self.inner.lease(requests)


async def test_a_failed_renewal_reaches_every_request_waiting_for_it() -> None:
    from switchboard.shared_state import SharedStateUnavailable

    clock = Clock()
    failing = _Failing(clock)
    guarded = GuardedState(failing, timeout_s=1, clock=clock)  # type: ignore[arg-type]
    engine = LeasedCounters({}, guarded, SpendLog(), clock=clock, wall=lambda: WALL)  # type: ignore[arg-type]
    plan = engine.plan(_key(rpm=6000), "m")
    assert plan is not None
    waiting = [asyncio.ensure_future(engine.admit(plan)) for _ in range(5)]
    await asyncio.sleep(0)
    failing.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, SharedStateUnavailable) for r in results)
    assert failing.settled == [] and guarded.calls == 1  # one call for the five: they waited for it


async def test_a_failed_settlement_is_kept_and_sent_again_a_token_debt_capped_at_a_minute() -> None:
    clock = Clock()
    failing = _Failing(clock)
    failing.release.set()
    failing.healthy = True
    engine = LeasedCounters({}, failing, SpendLog(), clock=clock, wall=lambda: WALL)  # type: ignore[arg-type]
    plan = engine.plan(_key(tpm=1000, budget_usd=100.0), "m")
    assert plan is not None
    assert await _admit(engine, plan)
    engine.charge(plan, 5000, 2.5)  # far beyond both leases
    failing.healthy = False
    await engine.flush()  # fails: the debts stay
    await engine.flush()
    failing.healthy = True
    await engine.flush()
    # The token debt was capped at one minute of the limit; the money is owed in full.
    assert plan.budget is not None
    assert sorted(failing.settled) == [pytest.approx(2.5 - plan.budget.cap / 100), pytest.approx(1000.0)]  # type: ignore[attr-defined]


async def test_in_process_admission_is_one_synchronous_pass() -> None:
    """No await once the budget's spend is read: admit_now decides (and charges are counted at once)."""
    from switchboard.access.local_counters import LocalCounters

    class Store:
        reads = 0

        async def spend(self, key_id: str, since: float) -> float:
            Store.reads += 1
            await asyncio.sleep(0)
            return 0.25

    clock = Clock()
    engine = LocalCounters({"m": (2, None)}, Store(), clock=clock, wall=lambda: WALL)  # type: ignore[arg-type]
    plan = engine.plan(_key(rpm=10, tpm=100, budget_usd=1.0), "m")
    assert plan is not None
    assert engine.admit_now(plan) is None  # the spend is not known yet: the slow path reads it
    first = await asyncio.gather(*(engine.admit(plan) for _ in range(2)))  # concurrent first requests: one read
    assert Store.reads == 1
    assert first[1]["x-ratelimit-remaining-requests"] == "0"  # the model's rpm 2 is the tightest
    engine.charge(plan, 99, 0.5)
    clock.now += 60  # everything refilled; the budget has 0.25 left
    headers = engine.admit_now(plan)
    assert headers is not None and headers["x-ratelimit-remaining-tokens"] == "100"
    engine.charge(plan, 10, 0.25)
    with pytest.raises(GatewayError) as err:
        engine.admit_now(plan)
    assert err.value.status == 429 and err.value.code == "insufficient_quota"


async def test_a_burst_on_a_small_lease_gets_exactly_the_limit_and_nothing_unchecked() -> None:
    """rpm 150 leases one request at a time; 200 at once: the renewal takes one unit per waiting request."""
    clock = Clock()
    (engine,), _ = _instances(1, clock)
    plan = engine.plan(_key(rpm=150), "m")
    assert plan is not None
    results = await asyncio.gather(*(_admit(engine, plan) for _ in range(200)))
    assert results.count(True) == 150
    assert engine.renewals <= 3
    assert plan.requests[0].room(clock.now) == 0  # nothing left over in the lease
