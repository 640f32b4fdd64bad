"""The store backends (SQLite, PostgreSQL) and shared-state backends (memory, Redis), driven directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.access.budgets import cost_of, period_bounds
from switchboard.access.keys import KeyService, hash_secret, validate_key_fields
from switchboard.access.rate_limits import format_reset
from switchboard.errors import GatewayError
from switchboard.hub import Usage
from switchboard.shared_state import LeaseRequest, MemoryState, SharedState, build_shared_state
from switchboard.store import Store, UsageQuery, UsageRow, build_store
from switchboard.store.base import usage_to_row
from tests.access.backends import REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "sqlite:///data/sb.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = build_store(url, tmp_path)
    await s.open()
    await s.close()
    s = build_store(url, tmp_path)  # migrations are idempotent: a second open finds version 1 applied
    await s.open()
    yield s
    await s.close()


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    # These tests check what Redis computes, not deadlines: 80 first-time connections at once can take over the
    # default 250 ms on a loaded machine (measured 58-174 ms on 2 busy cores), so allow 2 s.
    s = MemoryState() if request.param == "memory" else build_shared_state(
        REDIS_URL, request.getfixturevalue("redis_key_prefix"), timeout_s=2.0)
    await s.start()
    yield s
    await s.aclose()


def _row(i: int, key: str | None, model: str, status: int = 200, cost: float = 0.001) -> UsageRow:
    return UsageRow(ts=1000.0 + i, request_id=f"req_{i}", key_id=key, endpoint="/chat/completions", model=model,
                    provider="up", upstream_model=model, status=status, stream=bool(i % 2), prompt_tokens=5,
                    completion_tokens=3, cost_usd=cost, latency_ms=12.5, ttft_ms=None)


async def test_key_crud_and_lookup_by_hash(store: Store) -> None:
    keys = KeyService(store)
    key, secret = await keys.create(validate_key_fields(
        {"name": "app1", "models": "gpt-4o-mini,researcher", "rpm": 60, "budget_usd": 5}, creating=True))
    assert secret.startswith("sk-sb-") and key.secret_hash == hash_secret(secret) and secret not in repr(key)
    assert key.hint.endswith(secret[-4:]) and secret not in str(key.public())
    found = await store.key_by_hash(hash_secret(secret))
    assert found is not None and found.id == key.id and found.models == ["gpt-4o-mini", "researcher"]
    assert found.rpm == 60 and found.tpm is None and found.budget_usd == 5.0 and not found.revoked
    updated = await keys.update(key.id, {"tpm": 100, "revoked": True, "expires_at": None})
    assert updated is not None and updated.tpm == 100 and updated.revoked and updated.updated_at >= key.updated_at
    assert [k.id for k in await store.list_keys()] == [key.id]
    assert await store.get_key("key_missing") is None
    assert await keys.update("key_missing", {"rpm": 1}) is None


async def test_usage_query_filters_totals_and_spend(store: Store) -> None:
    await store.insert_usage([usage_to_row(_row(i, "k1" if i < 6 else "k2", "a" if i % 3 else "b",
                                                429 if i == 7 else 200)) for i in range(10)])
    rows, totals = await store.query_usage(UsageQuery())
    assert len(rows) == 10 and totals.requests == 10 and totals.prompt_tokens == 50
    assert totals.completion_tokens == 30 and totals.cost_usd == pytest.approx(0.01)
    assert [r.request_id for r in rows[:2]] == ["req_9", "req_8"]  # newest first
    rows, totals = await store.query_usage(UsageQuery(key_id="k1", model="a"))
    assert {r.request_id for r in rows} == {"req_1", "req_2", "req_4", "req_5"} and totals.requests == 4
    rows, totals = await store.query_usage(UsageQuery(since=1003, until=1005, status=200, limit=1))
    assert len(rows) == 1 and totals.requests == 2
    assert (await store.query_usage(UsageQuery(status=429)))[0][0].request_id == "req_7"
    assert rows[0].stream is False and rows[0].latency_ms == 12.5 and rows[0].ttft_ms is None
    assert await store.spend("k1", 1002) == pytest.approx(0.004)
    assert await store.spend("nobody", 0) == 0.0


def _bucket(key: str, limit: float, want: float = 1.0, settle: float = 0.0, rate: float | None = None) -> LeaseRequest:
    return LeaseRequest(key, budget=False, limit=limit, rate=limit / 60 if rate is None else rate, settle=settle,
                        want=want)


def _budget(key: str, limit: float, want: float = 0.0, settle: float = 0.0, seed: float | None = None,
            ttl_s: float | None = 60) -> LeaseRequest:
    return LeaseRequest(key, budget=True, limit=limit, settle=settle, want=want, ttl_s=ttl_s, seed=seed)


async def test_lease_is_all_or_nothing(state: SharedState) -> None:
    a, b = _bucket("a", 2), _bucket("b", 1)
    assert [g.granted for g in await state.lease([a, b])] == [1, 1]
    grants = await state.lease([a, b])  # b is empty: neither is granted
    assert [g.granted for g in grants] == [0, 0]
    assert grants[0].level == pytest.approx(1, abs=0.01) and grants[1].level < 1
    grants = await state.lease([_bucket("a", 2, want=5)])  # at most the whole tokens there are
    assert grants[0].granted == 1 and grants[0].level == pytest.approx(0, abs=0.01)
    # Settling always lands, before the grant, and may leave a debt that refuses the next leases.
    grants = await state.lease([_bucket("t", 10, want=0, settle=25)])
    assert grants[0].granted == 0 and grants[0].level == pytest.approx(-15, abs=0.1)
    assert (await state.lease([_bucket("t", 10)]))[0].granted == 0
    # A settlement next to a refused lease still lands.
    grants = await state.lease([_bucket("t", 10, want=0, settle=5), _bucket("b", 1)])
    assert grants[0].level == pytest.approx(-20, abs=0.1) and grants[1].granted == 0


async def test_parallel_leases_lose_no_update(state: SharedState) -> None:
    bucket = _bucket("par", 50, rate=50 / 3600)
    grants = await asyncio.gather(*(state.lease([bucket]) for _ in range(80)))
    assert sum(g[0].granted for g in grants) == 50
    spend = _budget("spend", 100, settle=0.25, seed=0.0)
    await asyncio.gather(*(state.lease([spend]) for _ in range(40)))
    assert (await state.lease([_budget("spend", 100)]))[0].level == pytest.approx(90.0)
    money = await asyncio.gather(*(state.lease([_budget("spend", 100, want=7)]) for _ in range(20)))
    assert sum(g[0].granted for g in money) == pytest.approx(90.0)  # 12 x 7 and the 6 left, never more


async def test_budget_counters_are_seeded_reserved_and_returned(state: SharedState) -> None:
    grant = (await state.lease([_budget("b", 10, want=1)]))[0]
    assert grant.absent and grant.granted == 0  # not there, no seed: nothing done
    bucket_grant, budget_grant = await state.lease([_bucket("x", 5), _budget("b", 10, want=1)])
    assert budget_grant.absent and bucket_grant.granted == 0  # all or nothing: the bucket waits too
    grant = (await state.lease([_budget("b", 10, want=1, seed=8.5)]))[0]
    assert not grant.absent and grant.granted == 1 and grant.level == pytest.approx(0.5)
    grant = (await state.lease([_budget("b", 10, want=1, seed=0.0)]))[0]  # seeded already: the seed is ignored
    assert grant.granted == pytest.approx(0.5) and grant.level == pytest.approx(0)
    assert (await state.lease([_budget("b", 10, want=1)]))[0].granted == 0  # spent and reserved: refused
    grant = (await state.lease([_budget("b", 10, settle=-1.25)]))[0]  # a reservation given back
    assert grant.level == pytest.approx(1.25)
    grant = (await state.lease([_budget("b", 12, want=5)]))[0]  # the budget was raised
    assert grant.granted == pytest.approx(3.25)


async def test_flags(state: SharedState) -> None:
    assert await state.marked("cool") == 0.0
    await state.mark("cool", 30)
    assert 0 < await state.marked("cool") <= 30


async def test_a_budget_counter_keeps_its_first_expiry(redis_key_prefix: str) -> None:
    import redis.asyncio as aioredis

    state = build_shared_state(REDIS_URL, redis_key_prefix)
    await state.start()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await state.lease([_budget("e", 10, want=1, seed=0.0, ttl_s=100)])
        await state.lease([_budget("e", 10, want=1, settle=0.5, ttl_s=5000)])
        assert 90_000 < await client.pttl(redis_key_prefix + "e") <= 100_000
        await state.lease([_budget("forever", 10, seed=0.0, ttl_s=None)])
        assert await client.pttl(redis_key_prefix + "forever") == -1
    finally:
        await client.aclose()
        await state.aclose()


def test_key_field_validation() -> None:
    with pytest.raises(GatewayError) as err:
        validate_key_fields({"name": "x", "rpmm": 3}, creating=True)
    assert err.value.param == "rpmm"
    for body, param in [({"models": []}, "models"), ({"name": "bad name!"}, "name"), ({"rpm": 0}, "rpm"),
                        ({"budget_usd": -1}, "budget_usd"), ({"budget_period": "hourly"}, "budget_period"),
                        ({"expires_at": "soon"}, "expires_at"), ({"revoked": "yes"}, "revoked")]:
        with pytest.raises(GatewayError) as err:
            validate_key_fields(body, creating=False)
        assert err.value.status == 400 and err.value.param == param
    assert validate_key_fields({"expires_at": "2027-01-01"}, creating=False)["expires_at"] == 1798761600.0
    assert validate_key_fields({"rpm": None}, creating=False) == {"rpm": None}


def test_periods_prices_and_reset_format() -> None:
    now = 1800000000.0  # 2027-01-15 08:00 UTC, a Friday
    assert period_bounds("daily", now) == (1799971200.0, 1800057600.0)
    assert period_bounds("weekly", now) == (1799625600.0, 1800230400.0)  # Monday 2027-01-11
    assert period_bounds("monthly", now) == (1798761600.0, 1801440000.0)
    assert period_bounds("total", now) == (0.0, None)
    prices = {"alias": {"input": 1.0, "output": 2.0}, "up/gpt": {"input": 10.0, "output": 20.0}}
    usage = Usage(1000, 500, 1500)
    assert cost_of(prices, usage, "alias", "up", "gpt") == pytest.approx(0.002)
    assert cost_of(prices, usage, "other", "up", "gpt") == pytest.approx(0.02)
    assert cost_of(prices, usage, "other", "up", "nope") is None  # no price: unknown, not free
    assert cost_of(prices, None, "alias", None, None) == 0.0  # no usage: nothing generated
    assert [format_reset(s) for s in (0.02, 1.5, 30, 360)] == ["20ms", "1.5s", "30s", "6m0s"]


async def test_key_cache_sees_revocation_through_another_service(tmp_path: Path) -> None:
    store = build_store("sqlite:///k.db", tmp_path)
    await store.open()
    try:
        here, other = KeyService(store), KeyService(store)
        key, secret = await here.create({"name": "k"})
        digest = bytes.fromhex(hash_secret(secret))
        assert (await here.resolve(digest)) is not None
        await other.update(key.id, {"revoked": True})  # another instance: `here` is not told
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                await here.resolve(digest)
            except GatewayError as err:
                assert err.status == 401 and err.code == "revoked_api_key" and secret not in err.message
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("a revoked key kept working through the cache")
        assert await here.resolve(bytes(32)) is None
    finally:
        await store.close()


async def test_requests_that_find_a_key_expired_share_one_lookup(tmp_path: Path) -> None:
    """64 connections on one key: when its cache entry expires, one store query, not one per request."""
    store = build_store("sqlite:///k.db", tmp_path)
    await store.open()
    try:
        keys = KeyService(store)
        key, secret = await keys.create({"name": "hot"})
        digest = bytes.fromhex(hash_secret(secret))
        lookups = 0
        real = store.key_by_hash

        async def counted(secret_hash: str) -> object:
            nonlocal lookups
            lookups += 1
            return await real(secret_hash)

        store.key_by_hash = counted  # type: ignore[method-assign,assignment]
        principals = await asyncio.gather(*(keys.resolve(digest) for _ in range(64)))
        assert lookups == 1 and all(p is not None and p.key_id == key.id for p in principals)
        assert len({id(p) for p in principals}) == 1  # one principal shared until the entry expires
        # A change made here while a lookup is under way is not hidden by that lookup's (older) answer.
        keys._cache.clear()  # as if the entry had expired
        pending = asyncio.ensure_future(keys.resolve(digest))
        for _ in range(2):  # the request starts its lookup, which is queued on the store thread before the change
            await asyncio.sleep(0)
        await keys.update(key.id, {"revoked": True})
        assert (await pending) is not None  # it read the row before the change
        assert lookups == 2
        with pytest.raises(GatewayError) as err:
            await keys.resolve(digest)
        assert err.value.code == "revoked_api_key"
    finally:
        await store.close()
