"""Virtual keys, limits, budgets and the usage log through a real server (SQLite store, in-process state)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.access.helpers import (
    ADMIN,
    CHAT,
    MASTER,
    STATIC,
    access_config,
    bearer,
    burst,
    create_key,
    eventually,
)
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

Sdk = Callable[[str], openai.OpenAI]
SECRETS: list[str] = []  # every secret issued in this module: none may appear in the server log


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    proc = SwitchboardProcess(access_config(fake_openai, "sqlite:///data/switchboard.db")).start()
    yield proc
    proc.stop()
    logs = proc.logs()
    assert SECRETS and not [s for s in SECRETS if s in logs], "a key secret was written to the log"


@pytest.fixture
def client(server: SwitchboardProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def new_key(client: httpx.Client, **fields: object) -> tuple[str, str]:
    key_id, secret = create_key(client, "", **fields)
    SECRETS.append(secret)
    return key_id, secret


@pytest.fixture
def sdk(server: SwitchboardProcess) -> Iterator[Sdk]:
    """The official SDK with a given key (closed after the test, so no socket is left to the GC)."""
    made: list[openai.OpenAI] = []

    def make(secret: str) -> openai.OpenAI:
        made.append(openai.OpenAI(api_key=secret, base_url=server.url + "/v1", max_retries=0))
        return made[-1]

    yield make
    for c in made:
        c.close()


def cli(server: SwitchboardProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", *args, "--config", str(server.config_path)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_admin_api_needs_the_master_key(client: httpx.Client) -> None:
    assert client.get("/admin/keys").status_code == 401
    r = client.get("/admin/keys", headers=bearer(STATIC))
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    _, secret = new_key(client)
    r = client.post("/admin/keys", json={"name": "x"}, headers=bearer(secret))
    assert r.status_code == 403 and secret not in r.text
    assert client.get("/admin/usage", headers=bearer("sk-sb-nonsense")).status_code == 401


def test_key_lifecycle_through_the_admin_api(client: httpx.Client, sdk: Sdk) -> None:
    key_id, secret = new_key(client, name="app1", models=["gpt-4o-mini", "researcher"], rpm=60, tpm=10000,
                             budget_usd=5, budget_period="monthly", expires_at="2099-01-01")
    assert secret.startswith("sk-sb-")
    listing = client.get("/admin/keys", headers=ADMIN)
    assert listing.status_code == 200 and secret not in listing.text and "secret_hash" not in listing.text
    entry = next(k for k in listing.json()["data"] if k["id"] == key_id)
    assert entry["name"] == "app1" and entry["models"] == ["gpt-4o-mini", "researcher"] and entry["rpm"] == 60
    assert entry["budget_usd"] == 5 and entry["expires_at"] == 4070908800.0 and entry["revoked"] is False

    answer = sdk(secret).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.choices[0].message.content == "Hello from gpt-4o-mini"

    r = client.patch(f"/admin/keys/{key_id}", json={"models": ["other"], "rpm": None}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["models"] == ["other"] and r.json()["rpm"] is None
    with pytest.raises(openai.PermissionDeniedError):  # changes through this instance apply at once
        sdk(secret).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert client.get(f"/admin/keys/{key_id}", headers=ADMIN).json()["models"] == ["other"]

    r = client.delete(f"/admin/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(secret).chat.completions.create(**{**CHAT, "model": "other"})  # type: ignore[call-overload]
    assert err.value.code == "revoked_api_key" and secret not in str(err.value)

    assert client.get("/admin/keys/key_nope", headers=ADMIN).status_code == 404
    assert client.delete("/admin/keys/key_nope", headers=ADMIN).status_code == 404
    bad = client.post("/admin/keys", json={"name": "x", "rpm": "fast"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    bad = client.patch(f"/admin/keys/{key_id}", json={"colour": "red"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "colour"
    assert client.put(f"/admin/keys/{key_id}", headers=ADMIN).status_code == 405


def test_scope_limits_models_and_agents_by_glob(client: httpx.Client, sdk: Sdk) -> None:
    _, secret = new_key(client, models=["gpt-4o-*"])
    assert sdk(secret).chat.completions.create(**CHAT).choices  # type: ignore[call-overload]
    with pytest.raises(openai.PermissionDeniedError) as err:
        sdk(secret).chat.completions.create(**{**CHAT, "model": "other"})  # type: ignore[call-overload]
    assert err.value.status_code == 403 and err.value.code == "model_not_allowed" and secret not in str(err.value)


def test_expired_key_is_rejected(server: SwitchboardProcess, client: httpx.Client) -> None:
    _, old = new_key(client, expires_at=time.time() - 1)
    r = client.post("/v1/chat/completions", json=CHAT, headers=bearer(old))
    assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key" and old not in r.text
    key_id, secret = new_key(client, expires_at="2099-01-01T00:00:00Z")
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
    client.patch(f"/admin/keys/{key_id}", json={"expires_at": time.time() - 1}, headers=ADMIN)
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 401


def test_requests_per_minute_with_openai_headers(client: httpx.Client, sdk: Sdk) -> None:
    _, secret = new_key(client, rpm=2)
    first = client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2" and first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in first.headers  # no tpm on this key
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(secret)) as s:
        assert s.status_code == 200 and s.headers["x-ratelimit-remaining-requests"] == "0"
        assert "[DONE]" in s.read().decode()
    with pytest.raises(openai.RateLimitError) as err:
        sdk(secret).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "requests" and body["code"] == "rate_limit_exceeded"
    headers = err.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 30 and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"] == "2" and secret not in err.value.message
    # Other keys are not affected by this key's limit.
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(STATIC)).status_code == 200


def test_tokens_per_minute_counts_each_response(client: httpx.Client) -> None:
    _, secret = new_key(client, tpm=10)  # every answer uses 5 + 3 tokens
    # A stream counts too, even when the client did not ask for the usage chunk.
    first = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(secret))
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "10"
    assert '"usage":null' in first.text.replace(" ", "") and "[DONE]" in first.text
    second = client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-tokens"] == "2"
    third = client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "tokens" and third.json()["error"]["code"] == "rate_limit_exceeded"
    assert third.headers["x-ratelimit-remaining-tokens"] == "0" and int(third.headers["retry-after"]) >= 1


def test_per_model_limit_applies_to_every_caller(client: httpx.Client) -> None:
    body = {**CHAT, "model": "limited"}
    assert client.post("/v1/chat/completions", json=body, headers=ADMIN).status_code == 200
    r = client.post("/v1/chat/completions", json=body, headers=bearer(STATIC))
    assert r.status_code == 429 and "model `limited`" in r.json()["error"]["message"]
    assert r.headers["x-ratelimit-limit-requests"] == "1"


def test_budget_exhaustion(client: httpx.Client, sdk: Sdk) -> None:
    key_id, secret = new_key(client, budget_usd=0.5, budget_period="daily")  # $0.32 per answer
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
    with pytest.raises(openai.RateLimitError) as err:
        sdk(secret).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert err.value.code == "insufficient_quota" and err.value.type == "insufficient_quota"
    assert err.value.response.headers["x-should-retry"] == "false" and secret not in err.value.message
    # A model without a price costs nothing, but the key is over budget for every model.
    r = client.post("/v1/chat/completions", json={**CHAT, "model": "up/free"}, headers=bearer(secret))
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    client.patch(f"/admin/keys/{key_id}", json={"budget_usd": 10}, headers=ADMIN)
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200


def test_usage_rows_and_totals(server: SwitchboardProcess, client: httpx.Client) -> None:
    key_id, secret = new_key(client, models=["gpt-4o-mini", "other"])
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200
    stream = {**CHAT, "model": "other", "stream": True}
    r = client.post("/v1/chat/completions", json=stream, headers=bearer(secret))
    assert r.status_code == 200
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "limited"},
                       headers=bearer(secret)).status_code == 403
    rid = r.headers["x-request-id"]
    usage = client.get("/admin/usage", params={"key_id": key_id}, headers=ADMIN)
    assert usage.status_code == 200, usage.text
    rows = usage.json()["data"]
    assert [row["status"] for row in rows] == [403, 200, 200]
    streamed = next(row for row in rows if row["request_id"] == rid)
    assert streamed["model"] == "other" and streamed["provider"] == "up" and streamed["stream"] is True
    assert streamed["prompt_tokens"] == 5 and streamed["completion_tokens"] == 3
    assert streamed["ttft_ms"] is not None and streamed["latency_ms"] >= streamed["ttft_ms"]
    assert streamed["cost_usd"] == pytest.approx((5 * 1 + 3 * 2) / 1e6)
    totals = usage.json()["totals"]
    assert totals == {"requests": 3, "prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16,
                          "cached_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
                          "unpriced_requests": 0, "estimated_requests": 0,
                          "cost_usd": pytest.approx(0.32 + 11e-6)}
    only_ok = client.get("/admin/usage", params={"key_id": key_id, "status": 200, "model": "gpt-4o-mini"},
                         headers=ADMIN).json()
    assert only_ok["totals"]["requests"] == 1 and only_ok["data"][0]["cost_usd"] == pytest.approx(0.32)
    future = client.get("/admin/usage", params={"key_id": key_id, "since": "2099-01-01"}, headers=ADMIN).json()
    assert future["totals"]["requests"] == 0
    assert client.get("/admin/usage", params={"colour": "x"}, headers=ADMIN).status_code == 400
    assert client.get("/admin/usage", params={"status": "ok"}, headers=ADMIN).status_code == 400

    printed = cli(server, "usage", "--key", key_id)
    assert printed.returncode == 0, printed.stderr
    assert "total: 3 requests, 10 prompt + 6 completion tokens" in printed.stdout and rid in printed.stdout


def test_cli_key_lifecycle_with_no_server_involved(server: SwitchboardProcess, client: httpx.Client) -> None:
    made = cli(server, "keys", "create", "--name", "cli1", "--models", "gpt-4o-mini,researcher", "--rpm", "60",
               "--tpm", "10000", "--budget", "5", "--budget-period", "monthly", "--expires", "2099-01-01", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret, key_id = created["key"], created["id"]
    SECRETS.append(secret)
    assert created["models"] == ["gpt-4o-mini", "researcher"] and created["budget_usd"] == 5.0
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200

    table = cli(server, "keys", "list")
    assert table.returncode == 0 and key_id in table.stdout and "cli1" in table.stdout and secret not in table.stdout
    assert "$5/monthly" in table.stdout and "active" in table.stdout
    updated = cli(server, "keys", "update", key_id, "--rpm", "0", "--budget", "none", "--json")
    assert updated.returncode == 0 and json.loads(updated.stdout)["rpm"] is None
    assert json.loads(updated.stdout)["budget_usd"] is None
    assert cli(server, "keys", "revoke", key_id).returncode == 0
    # The server learns of a change made directly in the store within its one-second key cache.
    assert eventually(lambda: client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code
                      == 401)
    assert "revoked" in cli(server, "keys", "list").stdout
    missing = cli(server, "keys", "revoke", "key_nope")
    assert missing.returncode == 1 and "no API key" in missing.stderr
    bad = cli(server, "keys", "create", "--name", "x", "--rpm", "-3")
    assert bad.returncode == 2 and "rpm" in bad.stderr


def test_parallel_requests_lose_no_update(server: SwitchboardProcess, client: httpx.Client) -> None:
    key_id, secret = new_key(client, rpm=10)
    started = time.monotonic()
    statuses = burst([server.url], secret, 40)
    elapsed = time.monotonic() - started
    ok = statuses.count(200)
    assert set(statuses) == {200, 429}
    # 10 in the bucket, plus one per 6 s it refilled while the burst ran: a lost update would let more through.
    assert 10 <= ok <= 10 + int(elapsed / 6)
    usage = client.get("/admin/usage", params={"key_id": key_id}, headers=ADMIN).json()
    assert usage["totals"]["requests"] == 40 and usage["totals"]["prompt_tokens"] == 5 * ok


def test_ready_checks_the_store(client: httpx.Client) -> None:
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["store"] == "ok"
    assert MASTER not in r.text
    metrics = client.get("/metrics", headers=ADMIN).text
    assert "switchboard_usage_rows_dropped_total 0.0" in metrics and "switchboard_usage_rows_queued" in metrics
