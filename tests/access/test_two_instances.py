"""Two real `switchboard serve` processes sharing PostgreSQL and Redis behave as one gateway."""

from __future__ import annotations

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
