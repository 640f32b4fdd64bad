"""Metrics after a known sequence of requests, the JSON access log, and cooldowns opening and recovering."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.faulty_upstream import FaultyOpenAI
from tests.integration.metrics_util import metric, scrape
from tests.server import SwitchboardProcess

MASTER = "sk-test-master"
APP_KEY = "sk-app-secret-value"
MESSAGES = [{"role": "user", "content": "hi"}]


def config(fake: FaultyOpenAI) -> str:
    return f"""
auth:
  master_key: {MASTER}
  keys: [{{name: app, value: {APP_KEY}}}]
providers:
  main:
    type: openai
    base_url: {fake.base_url}
    keys: [{{value: sk-good}}, {{value: sk-bad}}]
    retries: {{max: 1, backoff_initial_ms: 1, backoff_max_ms: 2}}
    cooldown: {{failures: 2, seconds: 2}}
  solo:
    type: openai
    base_url: {fake.base_url}
    keys: [{{value: sk-solo}}]
    retries: {{max: 0}}
    cooldown: {{failures: 1, seconds: 60}}
  backup:
    type: openai
    base_url: {fake.base_url}
    retries: {{max: 0}}
  flaky:
    type: openai
    base_url: {fake.base_url}
    retries: {{max: 2, backoff_initial_ms: 1, backoff_max_ms: 2}}
    cooldown: {{failures: 0}}
models:
  chat: {{route: backup/ok}}
  broken: {{route: flaky/error-500}}
  broken-fb: {{route: flaky/error-502, fallbacks: [backup/ok]}}
  keyed: {{route: main/keyfail}}
  solo-fb: {{route: solo/keyfail, fallbacks: [backup/ok]}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FaultyOpenAI]:
    upstream = FaultyOpenAI().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(fake: FaultyOpenAI) -> Iterator[SwitchboardProcess]:
    process = SwitchboardProcess(config(fake)).start()
    yield process
    process.stop()


def post(server: SwitchboardProcess, model: str, key: str = MASTER, request_id: str | None = None,
         **extra: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": MESSAGES, **extra})


def access_lines(server: SwitchboardProcess, expected: set[str]) -> dict[str, dict[str, object]]:
    """The access log lines by request id, once the `expected` ids are there (lines are written in
    batches, a few milliseconds after their requests)."""
    deadline = time.monotonic() + 5
    while True:
        lines: dict[str, dict[str, object]] = {}
        for line in server.logs().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                lines[entry["request_id"]] = entry
        if expected <= lines.keys() or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_metrics_and_access_log_after_known_sequence(server: SwitchboardProcess) -> None:
    assert post(server, "chat", APP_KEY, "obs-1").status_code == 200
    assert post(server, "chat", APP_KEY).status_code == 200
    stream = post(server, "chat", APP_KEY, "obs-stream", stream=True, stream_options={"include_usage": True})
    assert stream.status_code == 200 and stream.text.rstrip().endswith("data: [DONE]")
    assert post(server, "broken", request_id="obs-broken").status_code == 500
    assert post(server, "broken-fb").headers["x-switchboard-fallback"] == "true"
    assert post(server, "no-such-model").status_code == 404

    text = scrape(server)
    assert metric(text, "switchboard_requests_total", model="chat", provider="backup", status="200") == 3
    assert metric(text, "switchboard_requests_total", model="broken", provider="flaky", status="500") == 1
    assert metric(text, "switchboard_requests_total", model="broken-fb", provider="backup", status="200") == 1
    assert metric(text, "switchboard_requests_total", model="other", status="404") == 1
    assert metric(text, "switchboard_tokens_total", model="chat", direction="in") == 15
    assert metric(text, "switchboard_tokens_total", model="chat", direction="out") == 9
    assert metric(text, "switchboard_time_to_first_token_seconds_count", model="chat") == 1
    assert metric(text, "switchboard_request_duration_seconds_count", model="chat", stream="false") == 2
    assert metric(text, "switchboard_upstream_errors_total", provider="flaky", type="server_error") == 6
    assert metric(text, "switchboard_retries_total", provider="flaky") == 4
    assert metric(text, "switchboard_fallbacks_total", model="broken-fb", provider="flaky") == 1
    assert metric(text, "switchboard_in_flight", scope="provider", name="backup") == 0

    logs = access_lines(server, {"obs-1", "obs-stream", "obs-broken"})
    first = logs["obs-1"]
    assert {k: first[k] for k in ("endpoint", "key_id", "model", "provider", "upstream_model", "status", "stream",
                                  "prompt_tokens", "completion_tokens", "attempts", "fallback", "error_type")} == {
        "endpoint": "/chat/completions", "key_id": "cfg:app", "model": "chat", "provider": "backup",
        "upstream_model": "ok", "status": 200, "stream": False, "prompt_tokens": 5, "completion_tokens": 3,
        "attempts": 1, "fallback": False, "error_type": None}
    assert isinstance(first["latency_ms"], float) and first["ttft_ms"] is None
    streamed = logs["obs-stream"]
    assert streamed["stream"] is True and isinstance(streamed["ttft_ms"], float)
    assert streamed["completion_tokens"] == 3
    broken = logs["obs-broken"]
    assert (broken["status"], broken["provider"], broken["attempts"], broken["key_id"]) == (500, "flaky", 3, "master")
    assert broken["error_type"] == "server_error"
    assert APP_KEY not in server.logs() and MASTER not in server.logs()


def _state(server: SwitchboardProcess, deployment: str) -> float:
    return metric(scrape(server), "switchboard_deployment_circuit_state", deployment=deployment)


def test_cooldown_opens_moves_traffic_and_recovers(server: SwitchboardProcess, fake: FaultyOpenAI) -> None:
    fake.bad_keys = {"sk-bad"}
    for _ in range(200):  # keys are picked at random: send until the bad one failed twice
        resp = post(server, "keyed")
        assert resp.status_code == 200  # a failure on the bad key is retried on the good one
        if _state(server, "main#1") == 1:
            break
    assert _state(server, "main#1") == 1
    bad_calls = fake.count("keyfail", "sk-bad")
    attempts = [post(server, "keyed").headers["x-switchboard-attempts"] for _ in range(10)]
    assert _state(server, "main#1") == 1, "the 2 s cooldown ended during 10 requests: machine too slow"
    assert attempts == ["1"] * 10
    assert fake.count("keyfail", "sk-bad") == bad_calls  # out of rotation while open

    fake.bad_keys = set()
    deadline = time.monotonic() + 10
    while _state(server, "main#1") != 2:  # half-open once the cooldown has passed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(200):  # the next request that picks it is the probe; its success closes the circuit
        assert post(server, "keyed").status_code == 200
        if _state(server, "main#1") == 0:
            break
    assert _state(server, "main#1") == 0
    assert fake.count("keyfail", "sk-bad") == bad_calls + 1
    text = scrape(server)
    assert metric(text, "switchboard_deployment_circuit_changes_total", deployment="main#1", state="open") == 1
    assert metric(text, "switchboard_deployment_circuit_changes_total", deployment="main#1", state="closed") == 1


def test_open_route_is_skipped_for_fallback_and_tried_when_nothing_else(server: SwitchboardProcess,
                                                                        fake: FaultyOpenAI) -> None:
    fake.bad_keys = {"sk-solo"}
    try:
        first = post(server, "solo-fb")
        assert first.status_code == 200 and first.headers["x-switchboard-attempts"] == "2"
        solo_calls = fake.count("keyfail", "sk-solo")
        second = post(server, "solo-fb")  # solo's only key is open: straight to the fallback
        assert second.status_code == 200 and second.headers["x-switchboard-attempts"] == "1"
        assert second.headers["x-switchboard-fallback"] == "true"
        assert fake.count("keyfail", "sk-solo") == solo_calls
        direct = post(server, "solo/keyfail")  # nothing healthy to go to: tried anyway rather than refused
        assert direct.status_code == 500 and direct.headers["x-switchboard-attempts"] == "1"
        assert fake.count("keyfail", "sk-solo") == solo_calls + 1
    finally:
        fake.bad_keys = set()
