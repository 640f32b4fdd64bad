"""Unit tests for the limiter, the circuit breaker, backoff and the router's deadline and cooldown policy."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from switchboard.config import parse_config
from switchboard.errors import GatewayError
from switchboard.providers import build_provider
from switchboard.routing.engine import _jittered_s
from switchboard.routing.health import CLOSED, HALF_OPEN, OPEN, Health
from switchboard.routing.limits import KeyedLimiter, Limiter
from switchboard.routing.router import Deployment, Router, RouterEvent

# -- limiter


async def test_limiter_queues_then_rejects_at_once() -> None:
    limiter = Limiter("provider", "p", max_in_flight=1, queue=1)
    first = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert (limiter.in_flight, limiter.waiting) == (1, 1)
    with pytest.raises(GatewayError) as err:
        await limiter.acquire()
    assert err.value.status == 503 and err.value.code == "queue_full" and err.value.type == "service_unavailable_error"
    assert err.value.headers["retry-after"] == "1"
    assert limiter.rejected == 1
    first.release()
    second = await waiter  # the slot passed to the waiter
    assert (limiter.in_flight, limiter.waiting) == (1, 0)
    second.release()
    second.release()  # idempotent
    assert limiter.in_flight == 0


async def test_limiter_fifo_and_cancelled_waiter_leaves_queue() -> None:
    limiter = Limiter("model", "m", max_in_flight=1, queue=3)
    held = await limiter.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        async with await limiter.acquire():
            order.append(name)

    a = asyncio.ensure_future(take("a"))
    b = asyncio.ensure_future(take("b"))
    c = asyncio.ensure_future(take("c"))
    await asyncio.sleep(0)
    b.cancel()
    await asyncio.sleep(0)
    assert limiter.waiting == 2
    held.release()
    await asyncio.gather(a, c)
    assert order == ["a", "c"]
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


async def test_limiter_waiter_cancelled_after_grant_passes_slot_on() -> None:
    limiter = Limiter("p", "p", max_in_flight=1, queue=2)
    held = await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    held.release()  # grants `first`...
    first.cancel()  # ...which is cancelled before it runs
    lease = await second
    assert limiter.in_flight == 1
    lease.release()
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_limiter_wait_bounded_by_caller_timeout() -> None:
    limiter = Limiter("p", "p", max_in_flight=1, queue=1)
    held = await limiter.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await limiter.acquire()
    assert limiter.waiting == 0
    held.release()
    assert limiter.in_flight == 0


async def test_keyed_limiter_per_key_and_forgets_idle_keys() -> None:
    keyed = KeyedLimiter("agent", max_in_flight=1, queue=0)
    a = await keyed.acquire("researcher")
    b = await keyed.acquire("writer", max_in_flight=2)
    with pytest.raises(GatewayError):
        await keyed.acquire("researcher")
    assert {lim.name for lim in keyed} == {"researcher", "writer"}
    a.release()
    b.release()
    assert list(keyed) == []


# -- breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


HEALTH_CONFIG = """
providers:
  p: {type: openai, base_url: "http://127.0.0.1:1/v1", cooldown: {failures: 2, seconds: 10}}
  off: {type: openai, base_url: "http://127.0.0.1:1/v1", cooldown: {failures: 0}}
"""


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    health = Health(parse_config(HEALTH_CONFIG, environ={}), clock)
    changes: list[str] = []
    health.listeners.append(lambda breaker, state: changes.append(state))
    health.failure("p#0", "p")
    assert health.state("p#0") == CLOSED
    health.success("p#0", "p")  # success resets the consecutive count
    health.failure("p#0", "p")
    assert health.available("p#0", "p")
    health.failure("p#0", "p")
    assert health.state("p#0") == OPEN and not health.available("p#0", "p")
    clock.now += 10
    assert health.state("p#0") == HALF_OPEN and health.available("p#0", "p")
    health.begin("p#0", "p")  # the probe
    assert not health.available("p#0", "p")  # one probe at a time
    health.failure("p#0", "p")  # probe failed: open for another cooldown
    assert health.state("p#0") == OPEN
    clock.now += 10
    health.begin("p#0", "p")
    health.abandon("p#0", "p")  # a cancelled probe frees the probe slot
    assert health.available("p#0", "p")
    health.begin("p#0", "p")
    health.success("p#0", "p")
    assert health.state("p#0") == CLOSED
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, HALF_OPEN, CLOSED]


def test_breaker_disabled_with_zero_failures() -> None:
    health = Health(parse_config(HEALTH_CONFIG, environ={}), Clock())
    for _ in range(10):
        health.failure("off", "off")
    assert health.state("off") == CLOSED and health.available("off", "off")


# -- backoff and router policy


def test_jittered_backoff_grows_and_is_capped() -> None:
    for attempt, (low, high) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.25, 0.5), (0.25, 0.5)]):
        for _ in range(50):
            assert low <= _jittered_s(attempt, 100, 500) <= high


ROUTER_CONFIG = """
server: {request_timeout_s: 30}
providers:
  a:
    type: openai
    base_url: http://127.0.0.1:1/v1
    keys: [{value: k1}, {value: k2}]
    retries: {max: 2, backoff_initial_ms: 1, backoff_max_ms: 50}
    cooldown: {failures: 1, seconds: 60}
  solo:
    type: openai
    base_url: http://127.0.0.1:1/v1
    keys: [{value: s1}]
    retries: {max: 0}
    cooldown: {failures: 1, seconds: 60}
  patient:
    type: openai
    base_url: http://127.0.0.1:1/v1
    retries: {max: 3, backoff_initial_ms: 2000, backoff_max_ms: 4000}
  b:
    type: openai
    base_url: http://127.0.0.1:2/v1
    retries: {max: 0}
    max_in_flight: 1
    queue: 0
models:
  m: {route: a/x, fallbacks: [b/y]}
  short: {route: patient/x, timeout_s: 0.05}
  capped: {route: b/y, max_in_flight: 1, queue: 0}
"""


def make_router() -> Router:
    cfg = parse_config(ROUTER_CONFIG, environ={})
    return Router(cfg, {name: build_provider(p) for name, p in cfg.providers.items()})


def test_retry_delay_honours_retry_after_only_for_the_same_key() -> None:
    router = make_router()
    picker = router._picker(router.routes("m")[0])
    hinted = GatewayError(429, "slow down", headers={"retry-after-ms": "30"})
    assert router._retry_delay(0, hinted, picker, {"a#0", "a#1"}, "a", 1, 50) == pytest.approx(0.03)
    assert router._retry_delay(0, hinted, picker, {"a#0"}, "a", 1, 50) <= 0.001  # another key: no need to wait
    too_long = GatewayError(429, "slow down", headers={"retry-after": "5"})
    assert router._retry_delay(0, too_long, picker, {"a#0", "a#1"}, "a", 1, 50) is None  # give the route up


async def test_open_circuit_moves_traffic_to_healthy_key_then_fallback() -> None:
    router = make_router()
    events: list[RouterEvent] = []
    router.listeners.append(events.append)
    used: Counter[str] = Counter()

    async def attempt(d: Deployment) -> str:
        used[d.id] += 1
        if d.id == "a#0":
            raise GatewayError(500, "broken key")
        return d.id

    for _ in range(30):
        await router.execute("m", attempt)
    assert used["a#0"] == 1  # failures: 1 opened it; afterwards only a#1 is chosen
    assert router.health.state("a#0") == OPEN

    async def a_down(d: Deployment) -> str:
        used[d.id] += 1
        if d.provider.name == "a":
            raise GatewayError(503, "down")
        return d.id

    await router.execute("m", a_down)  # opens a#1 too
    used.clear()
    result, outcome = await router.execute("m", a_down)  # every key of `a` open: straight to the fallback
    assert result == "b" and outcome.attempts == 1 and outcome.fallback and used == Counter({"b": 1})
    assert {e.kind for e in events} >= {"upstream_error", "retry", "fallback"}


async def test_all_open_still_tries() -> None:
    router = make_router()
    calls = 0

    async def fail(d: Deployment) -> str:
        nonlocal calls
        calls += 1
        raise GatewayError(400, "bad") if calls > 1 else GatewayError(502, "bad gateway")

    with pytest.raises(GatewayError):
        await router.execute("solo/x", fail)
    assert router.health.state("solo#0") == OPEN
    with pytest.raises(GatewayError) as err:
        await router.execute("solo/x", fail)
    assert err.value.status == 400 and calls == 2  # the only deployment is open, yet it was tried


async def test_deadline_cuts_attempt_and_skips_backoff() -> None:
    router = make_router()
    seen: list[object] = []

    async def hang(d: Deployment) -> str:
        await asyncio.sleep(10)
        return "late"

    with pytest.raises(GatewayError) as err:
        await router.execute("short", hang, observe=seen.append)
    assert err.value.status == 504 and err.value.code == "deadline_exceeded"
    assert err.value.headers["x-switchboard-attempts"] == "1" and len(seen) == 1

    async def fail(d: Deployment) -> str:
        raise GatewayError(500, "boom")

    with pytest.raises(GatewayError) as err:
        await router.execute("short", fail)  # a 1-2 s backoff cannot fit in 50 ms: the 500 comes back at once
    assert err.value.status == 500 and err.value.headers["x-switchboard-attempts"] == "1"


async def test_model_and_provider_slots_held_with_hold_and_released() -> None:
    router = make_router()
    limiter = router.limits.models["capped"]

    async def ok(d: Deployment) -> str:
        return "ok"

    _, outcome = await router.execute("capped", ok, hold=True)
    assert limiter.in_flight == 1 and router.limits.providers["b"].in_flight == 1
    with pytest.raises(GatewayError) as err:
        await router.execute("capped", ok)
    assert err.value.code == "queue_full"
    outcome.release()
    assert limiter.in_flight == 0 and router.limits.providers["b"].in_flight == 0
    await router.execute("capped", ok)  # not held: released before returning
    assert limiter.in_flight == 0 and router.limits.providers["b"].in_flight == 0


async def test_direct_routes_are_not_cached() -> None:
    router = make_router()

    async def ok(d: Deployment) -> str:
        return d.model

    pickers_before = len(router._pickers)
    for i in range(20):
        assert (await router.execute(f"a/model-{i}", ok))[0] == f"model-{i}"
    # direct names share the picker of their provider's key set: nothing grows per name
    assert len(router._routes) == 3 and len(router._pickers) == pickers_before
