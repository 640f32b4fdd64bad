"""Two real `switchboard serve` processes sharing PostgreSQL and Redis behave as one gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.access.backends import REDIS_URL, pg_schema, redis_prefix
from tests.access.helpers import ADMIN, CHAT, access_config, bearer, burst, create_key, eventually
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.metrics_util import metric, scrape
from tests.server import SwitchboardProcess


@pytest.fixture(scope="module")
def pair(fake_openai: FakeOpenAI) -> Iterator[tuple[SwitchboardProcess, SwitchboardProcess]]:
    with pg_schema() as store_url, redis_prefix() as prefix:
        shared = f'shared_state: {{url: "{REDIS_URL}", key_prefix: "{prefix}"}}'
        config = access_config(fake_openai, store_url, shared)
        a = SwitchboardProcess(config)
        b = SwitchboardProcess(config)
        a.start()
        try:
            b.start()
            try:
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()


def test_both_ready_with_store_and_shared_state(pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    for proc in pair:
        checks = httpx.get(proc.url + "/ready").json()["checks"]
        assert checks["store"] == "ok" and checks["shared_state"] == "ok"


def test_a_key_made_on_one_works_on_the_other_and_revocation_reaches_both(
        pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    with httpx.Client(timeout=10) as c:
        key_id, secret = create_key(c, a.url, models=["gpt-4o-mini"])
        assert c.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
        assert c.post(b.url + "/v1/chat/completions", json={**CHAT, "model": "other"},
                      headers=bearer(secret)).status_code == 403
        assert c.delete(f"{b.url}/admin/keys/{key_id}", headers=ADMIN).status_code == 200
        assert c.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 401
        # `a` may have the key cached for up to a second.
        assert eventually(lambda: c.post(a.url + "/v1/chat/completions", json=CHAT,
                                         headers=bearer(secret)).status_code == 401)
    for proc in pair:
        assert secret not in proc.logs()


def test_limits_and_budget_are_enforced_across_both(pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    with httpx.Client(timeout=10) as c:
        _, secret = create_key(c, a.url, rpm=3)
        statuses = [c.post(p.url + "/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code
                    for p in (a, b, a, b)]
        assert statuses == [200, 200, 200, 429]
        r = c.post(a.url + "/v1/chat/completions", json=CHAT, headers=bearer(secret))
        assert r.status_code == 429 and r.headers["x-ratelimit-remaining-requests"] == "0"

        _, tokens_key = create_key(c, a.url, tpm=10)
        assert c.post(a.url + "/v1/chat/completions", json=CHAT, headers=bearer(tokens_key)).status_code == 200
        # The 8 tokens of a's answer are in Redis a moment after a answered.
        assert eventually(lambda: httpx.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(tokens_key))
                          .headers.get("x-ratelimit-remaining-tokens") in ("2", "0"))
        # b's own answers are charged a moment after they went out too: once b refuses, the bucket both share
        # is spent, and a refuses as well. (Asking a at once raced b's charge on a loaded machine.)
        assert eventually(lambda: httpx.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(tokens_key))
                          .status_code == 429)
        assert c.post(a.url + "/v1/chat/completions", json=CHAT, headers=bearer(tokens_key)).status_code == 429

        _, budget_key = create_key(c, a.url, budget_usd=0.3)  # $0.32 per answer
        assert c.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(budget_key)).status_code == 200
        assert eventually(lambda: httpx.post(a.url + "/v1/chat/completions", json=CHAT, headers=bearer(budget_key))
                          .json().get("error", {}).get("code") == "insufficient_quota")


def test_parallel_requests_on_both_lose_no_update_and_land_in_one_log(
        pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    with httpx.Client(timeout=10) as c:
        key_id, secret = create_key(c, b.url, rpm=10)
    started = time.monotonic()
    statuses = burst([a.url, b.url], secret, 40)
    elapsed = time.monotonic() - started
    ok = statuses.count(200)
    assert set(statuses) == {200, 429}
    assert 10 <= ok <= 10 + int(elapsed / 6)  # one bucket for both instances

    def totals() -> dict[str, int]:
        r = httpx.get(a.url + "/admin/usage", params={"key_id": key_id}, headers=ADMIN)
        return r.json()["totals"]  # type: ignore[no-any-return]

    # b writes its rows in batches every half second; then both instances' rows are in one log.
    assert eventually(lambda: totals()["requests"] == 40)
    assert totals()["prompt_tokens"] == 5 * ok
    rows = httpx.get(b.url + "/admin/usage", params={"key_id": key_id, "status": 429, "limit": 100},
                     headers=ADMIN).json()
    assert rows["totals"]["requests"] == 40 - ok


def test_cli_writes_the_shared_database(pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    made = subprocess.run([sys.executable, "-m", "switchboard.cli", "keys", "create", "--name", "from-cli", "--json",
                           "--config", str(a.config_path)], capture_output=True, text=True, timeout=30, check=False)
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["key"]
    assert httpx.post(b.url + "/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
    printed = subprocess.run([sys.executable, "-m", "switchboard.cli", "usage", "--config", str(b.config_path)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert printed.returncode == 0 and "REQUEST" in printed.stdout and "total:" in printed.stdout


def test_leased_limits_across_both_stay_within_the_documented_bound(
        pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    """rpm 300: each instance leases up to 3 requests at a time (1 %), so the two together may admit at
    most 2 x 2 more than one exact bucket would, and fewer by at most the 2 x 3 they may still hold."""
    a, b = pair
    with httpx.Client(timeout=10) as c:
        _, secret = create_key(c, a.url, rpm=300)
    started = time.monotonic()
    statuses = burst([a.url, b.url], secret, 340)
    elapsed = time.monotonic() - started
    ok = statuses.count(200)
    for proc in pair:  # every request was checked (none admitted unchecked for want of a lease)
        assert metric(scrape(proc), "switchboard_limits_unchecked_total", outcome="admitted") == 0
    assert set(statuses) == {200, 429}
    assert 300 - 2 * 3 <= ok <= 300 + int(elapsed * 300 / 60) + 1 + 2 * 2


def test_a_budget_shared_by_both_goes_over_by_at_most_one_request_each(
        pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    with httpx.Client(timeout=10) as c:
        _, secret = create_key(c, a.url, budget_usd=3.2)  # ten answers at $0.32
        answers = [c.post((a, b)[i % 2].url + "/v1/chat/completions", json=CHAT, headers=bearer(secret))
                   for i in range(16)]
    ok = [r.status_code for r in answers].count(200)
    assert 10 <= ok <= 12, [r.status_code for r in answers]
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in answers[-2:])
    refused = [r for r in answers if r.status_code != 200]
    assert all(r.status_code == 429 for r in refused)


def _count_commands(prefix: str, stop_key: str, counted: list[int]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        with client.monitor() as monitor:
            counted.append(0)  # MONITOR is on: the load may start
            for command in monitor.listen():
                text = command.get("command", "")
                if stop_key in text:
                    return
                # What a client sent (a round trip), not the commands its Lua script ran inside Redis.
                if prefix in text and command.get("client_type") != "lua":
                    counted[0] += 1
    finally:
        client.close()


def test_redis_round_trips_per_admitted_request_are_at_most_one_on_average(
        pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    """Counted by Redis itself (MONITOR), every command under this pair's key prefix: 2000 requests with
    rpm, tpm and a budget on the key and a priced model, 32 at a time over both instances."""
    import threading

    import redis

    a, b = pair
    prefix = a.config_path.read_text().split('key_prefix: "')[1].split('"')[0]
    stop_key = prefix + "monitor-stop"
    with httpx.Client(timeout=10) as c:
        _, secret = create_key(c, a.url, rpm=10**8, tpm=10**10, budget_usd=10**6, budget_period="daily")
    counted: list[int] = []
    watcher = threading.Thread(target=_count_commands, args=(prefix, stop_key, counted))
    watcher.start()
    try:
        assert eventually(lambda: bool(counted), timeout=10)

        async def load() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                statuses: list[int] = []
                for round_ in range(63):
                    answers = await asyncio.gather(*(
                        client.post((a, b)[(round_ + i) % 2].url + "/v1/chat/completions", json=CHAT,
                                    headers=bearer(secret)) for i in range(32)))
                    statuses += [r.status_code for r in answers]
                return statuses

        statuses = asyncio.run(load())
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        client.get(stop_key)
        client.close()
        watcher.join(10)
    assert statuses == [200] * len(statuses) and len(statuses) == 2016
    per_request = counted[0] / len(statuses)
    print(f"Redis commands: {counted[0]} for {len(statuses)} requests")
    assert 0 < per_request <= 0.25, f"{counted[0]} Redis commands for {len(statuses)} requests"
