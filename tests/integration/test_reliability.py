"""Retries, fallbacks, deadlines and concurrency limits through the real server, against injected faults.

Each fault x (stream, non-stream) checks the status, the attempt count the gateway reports, the
number of upstream calls, and that nothing is left behind: no slot held, no upstream handler open,
no extra asyncio task in the gateway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.faulty_upstream import FaultyOpenAI
from tests.integration.metrics_util import metric, samples, scrape
from tests.server import SwitchboardProcess

MASTER = "sk-test-master"
AUTH = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi"}]

FAULTS = ["error-500", "error-502", "error-429", "slow-800", "reset", "reset-after", "malformed", "truncated",
          "stall"]


def config(fake: FaultyOpenAI) -> str:
    models = "\n".join(
        f"  {fault}: {{route: flaky/{fault}}}\n  {fault}-fb: {{route: flaky/{fault}, fallbacks: [backup/ok]}}"
        for fault in FAULTS)
    return f"""
server: {{request_timeout_s: 20}}
auth: {{master_key: {MASTER}}}
providers:
  flaky:
    type: openai
    base_url: {fake.base_url}
    keys: [{{value: sk-flaky}}]
    timeout_s: 0.3
    retries: {{max: 2, backoff_initial_ms: 1, backoff_max_ms: 5}}
    cooldown: {{failures: 0}}
  backup:
    type: openai
    base_url: {fake.base_url}
    keys: [{{value: sk-backup}}]
    retries: {{max: 0}}
    cooldown: {{failures: 0}}
  patient:
    type: openai
    base_url: {fake.base_url}
    retries: {{max: 3, backoff_initial_ms: 5000, backoff_max_ms: 10000}}
    cooldown: {{failures: 0}}
  narrow:
    type: openai
    base_url: {fake.base_url}
    max_in_flight: 1
    queue: 1
    retries: {{max: 0}}
models:
{models}
  ratelimited: {{route: flaky/ratelimited-30}}
  ratelimited-fb: {{route: flaky/ratelimited-30, fallbacks: [backup/ok]}}
  recovers: {{route: flaky/fail-2-503-recovers}}
  deadline: {{route: patient/slow-1000, timeout_s: 0.3}}
  no-room-for-backoff: {{route: patient/error-500, timeout_s: 2}}
  one-at-a-time: {{route: backup/gate-model, max_in_flight: 1, queue: 0}}
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


@pytest.fixture(scope="module")
def baseline_tasks(server: SwitchboardProcess) -> float:
    httpx.post(server.url + "/v1/chat/completions", headers=AUTH, json={"model": "backup/ok", "messages": MESSAGES})
    return metric(scrape(server), "switchboard_event_loop_tasks")


def chat(server: SwitchboardProcess, model: str, stream: bool) -> tuple[httpx.Response, list[str]]:
    """POST a chat request; for a stream, also the `data:` payloads received."""
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/v1/chat/completions", headers=AUTH,
                                                           json=body) as resp:
        resp.read()
        data = [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]
    return resp, data


def assert_nothing_left(server: SwitchboardProcess, fake: FaultyOpenAI, baseline_tasks: float) -> None:
    deadline = time.monotonic() + 10
    while True:
        text = scrape(server)
        idle = (all(v == 0 for v in samples(text, "switchboard_in_flight"))
                and all(v == 0 for v in samples(text, "switchboard_queue_depth"))
                and fake.open_handlers == 0 and fake.active_streams == 0
                and metric(text, "switchboard_event_loop_tasks") <= baseline_tasks)
        if idle or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert idle, f"left behind: handlers={fake.open_handlers} streams={fake.active_streams}\n{text}"


# fault -> (non-stream status, attempts), (stream status, attempts, error frame expected)
# flaky retries twice: 3 attempts for a retryable failure; a stream that already sent a chunk cannot be retried.
EXPECTED = {
    "error-500": ((500, 3), (500, 3, False)),
    "error-502": ((502, 3), (502, 3, False)),
    "error-429": ((429, 3), (429, 3, False)),
    "slow-800": ((504, 3), (504, 3, False)),
    "reset": ((502, 3), (502, 3, False)),
    "reset-after": ((502, 3), (200, 1, True)),
    "malformed": ((502, 3), (502, 3, False)),
    "truncated": ((200, 1), (200, 1, True)),  # only a stream can be truncated
    "stall": ((200, 1), (200, 1, True)),  # only a stream can stall after its first chunk
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_fault_without_fallback(server: SwitchboardProcess, fake: FaultyOpenAI, baseline_tasks: float,
                                fault: str, stream: bool) -> None:
    before = fake.count(fault)
    resp, data = chat(server, fault, stream)
    (status, attempts), (s_status, s_attempts, error_frame) = EXPECTED[fault]
    want_status, want_attempts = (s_status, s_attempts) if stream else (status, attempts)
    assert resp.status_code == want_status, resp.text
    assert resp.headers["x-switchboard-attempts"] == str(want_attempts)
    assert resp.headers["x-switchboard-provider"] == "flaky"
    assert fake.count(fault) - before == want_attempts
    if want_status >= 400:
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "sk-flaky" not in resp.text
    elif stream:
        last = json.loads(data[-1])
        assert ("error" in last) == error_frame and "[DONE]" not in data
    assert_nothing_left(server, fake, baseline_tasks)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_fault_with_fallback(server: SwitchboardProcess, fake: FaultyOpenAI, baseline_tasks: float,
                             fault: str, stream: bool) -> None:
    resp, data = chat(server, f"{fault}-fb", stream)
    (status, attempts), (s_status, s_attempts, error_frame) = EXPECTED[fault]
    fell_back = (s_status if stream else status) >= 400
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchboard-fallback"] == ("true" if fell_back else "false")
    assert resp.headers["x-switchboard-provider"] == ("backup" if fell_back else "flaky")
    assert resp.headers["x-switchboard-attempts"] == str((s_attempts if stream else attempts) + fell_back)
    if fell_back:
        content = (resp.json()["choices"][0]["message"]["content"] if not stream else
                   "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                           for d in data if d != "[DONE]" and json.loads(d)["choices"]))
        assert content == "Hello from ok"
        assert not stream or data[-1] == "[DONE]"
    elif stream:  # the first chunk already reached the client: no fallback any more, an error frame instead
        assert ("error" in json.loads(data[-1])) == error_frame
    assert_nothing_left(server, fake, baseline_tasks)


def test_sdk_sees_fallback_headers_and_error_classes(server: SwitchboardProcess) -> None:
    with openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="error-500-fb", messages=MESSAGES)
        assert raw.parse().choices[0].message.content == "Hello from ok"
        assert raw.headers["x-switchboard-fallback"] == "true"
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="error-429", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="error-502", messages=MESSAGES, stream=True)
        assert err.value.status_code == 502


def test_retry_succeeds_after_transient_failures(server: SwitchboardProcess, fake: FaultyOpenAI) -> None:
    resp, _ = chat(server, "recovers", False)
    assert resp.status_code == 200
    assert resp.headers["x-switchboard-attempts"] == "3" and resp.headers["x-switchboard-fallback"] == "false"


def test_long_retry_after_is_passed_to_the_client_not_waited(server: SwitchboardProcess, fake: FaultyOpenAI) -> None:
    before = fake.count("ratelimited-30")
    resp, _ = chat(server, "ratelimited", False)
    assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
    assert resp.headers["x-switchboard-attempts"] == "1" and fake.count("ratelimited-30") - before == 1
    resp, _ = chat(server, "ratelimited-fb", True)
    assert resp.status_code == 200 and resp.headers["x-switchboard-attempts"] == "2"


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_deadline_bounds_the_request(server: SwitchboardProcess, fake: FaultyOpenAI, baseline_tasks: float,
                                     stream: bool) -> None:
    resp, _ = chat(server, "deadline", stream)
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "deadline_exceeded" and resp.json()["error"]["type"] == "timeout_error"
    assert resp.headers["x-switchboard-attempts"] == "1"
    # a 2.5-5 s backoff does not fit in the 2 s deadline: the upstream's 500 comes back after one attempt
    resp, _ = chat(server, "no-room-for-backoff", stream)
    assert resp.status_code == 500 and resp.headers["x-switchboard-attempts"] == "1"
    assert_nothing_left(server, fake, baseline_tasks)


def test_queue_full_is_503_at_once_and_slots_held_by_streams(server: SwitchboardProcess, fake: FaultyOpenAI,
                                                             baseline_tasks: float) -> None:
    """narrow: max_in_flight 1, queue 1. A stream holds the slot until it ends."""
    with httpx.Client(timeout=30) as holder, holder.stream(
            "POST", server.url + "/v1/chat/completions", headers=AUTH,
            json={"model": "narrow/gate-q1", "messages": MESSAGES, "stream": True}) as held:
        assert held.status_code == 200
        lines = held.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the first chunk arrived: slot held
        with httpx.Client(timeout=30) as queued_client:
            queued: list[httpx.Response] = []
            waiter = threading.Thread(target=lambda: queued.append(queued_client.post(
                server.url + "/v1/chat/completions", headers=AUTH,
                json={"model": "narrow/ok", "messages": MESSAGES})))
            waiter.start()
            _wait_for(server, 1, "switchboard_queue_depth", scope="provider", name="narrow")
            burst = [httpx.post(server.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                                json={"model": "narrow/ok", "messages": MESSAGES, "stream": s}) for s in (False, True)]
            for resp in burst:
                assert resp.status_code == 503
                assert resp.headers["retry-after"] == "1"
                assert resp.json()["error"]["type"] == "service_unavailable_error"
                assert resp.json()["error"]["code"] == "queue_full"
            assert not queued  # still waiting for the stream's slot
            fake.open_gate("q1")
            rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            waiter.join(30)
            assert queued[0].status_code == 200
    text = scrape(server)
    assert metric(text, "switchboard_queue_rejections_total", scope="provider", name="narrow") == 2
    assert_nothing_left(server, fake, baseline_tasks)


def test_model_limit_and_client_disconnect_releases_slot(server: SwitchboardProcess, fake: FaultyOpenAI,
                                                         baseline_tasks: float) -> None:
    """one-at-a-time: max_in_flight 1, queue 0 on the model; a client that leaves mid-stream frees it."""
    body = {"model": "one-at-a-time", "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/v1/chat/completions",
                                                           headers=AUTH, json=body) as held:
        assert held.status_code == 200
        lines = held.iter_lines()  # kept referenced: a collected iterator would close the response early
        next(line for line in lines if line.startswith("data: "))
        second = httpx.post(server.url + "/v1/chat/completions", headers=AUTH, json=body, timeout=30)
        assert second.status_code == 503 and second.json()["error"]["code"] == "queue_full"
    # the client left without reading the rest: the gateway must close upstream and free the slot
    _wait_for(server, 0, "switchboard_in_flight", scope="model", name="one-at-a-time")
    fake.open_gate("model")
    assert_nothing_left(server, fake, baseline_tasks)
    resp, data = chat(server, "one-at-a-time", True)  # gate is open now: completes
    assert resp.status_code == 200 and data[-1] == "[DONE]"


def _wait_for(server: SwitchboardProcess, value: float, name: str, /, **labels: str) -> None:
    deadline = time.monotonic() + 10
    while metric(scrape(server), name, **labels) != value:
        assert time.monotonic() < deadline, f"{name}{labels} never reached {value}:\n{scrape(server)}"
        time.sleep(0.02)
