"""Upstream wire faults through the real server (issue 10, defects 2, 7, 8, 9), against a byte-level fake.

Each test checks what the client of the gateway sees (status, error code, attempt count, the
error frame of a stream) and what reached the upstream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.raw_upstream import RawUpstream
from tests.server import SwitchboardProcess

MASTER = "sk-test-master"
AUTH = {"Authorization": f"Bearer {MASTER}"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    upstream = RawUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(raw: RawUpstream) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}}}
providers:
  once:
    type: openai
    base_url: {raw.base_url}
    retries: {{max: 0}}
    cooldown: {{failures: 0}}
  twice:
    type: openai
    base_url: {raw.base_url}
    retries: {{max: 1, backoff_initial_ms: 1, backoff_max_ms: 5}}
    cooldown: {{failures: 0}}
  small:
    type: openai
    base_url: {raw.base_url}
    timeout_s: 5
    retries: {{max: 2, backoff_initial_ms: 1, backoff_max_ms: 5}}
    cooldown: {{failures: 0}}
    max_response_bytes: {LIMIT}
    max_event_bytes: {LIMIT}
"""
    proc = SwitchboardProcess(config).start()
    yield proc
    proc.stop()


def chat(server: SwitchboardProcess, model: str, content: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=15)


def stream_events(resp: httpx.Response) -> list[dict[str, object] | str]:
    data = [line[len("data: "):] for line in resp.text.splitlines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


@pytest.mark.parametrize("provider, retried", [("once", False), ("twice", True)])
def test_a_request_is_sent_again_only_by_the_router_policy(server: SwitchboardProcess, raw: RawUpstream,
                                                           provider: str, retried: bool) -> None:
    """Defect 7: the upstream reads the request on a kept-alive connection, then closes it. With
    `retries.max: 0` it must reach the upstream once (no hidden resend); with 1, twice, visibly."""
    assert chat(server, f"{provider}/close-second", f"warm-{provider}").status_code == 200  # pools a connection
    resp = chat(server, f"{provider}/close-second", f"billed-{provider}")
    if retried:
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-switchboard-attempts"] == "2"
        assert raw.count(f"billed-{provider}") == 2
    else:
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"]["code"] == "upstream_connection_closed"
        assert resp.headers["x-switchboard-attempts"] == "1"
        assert raw.count(f"billed-{provider}") == 1


def test_endless_response_headers_fail_with_a_clear_502(server: SwitchboardProcess, raw: RawUpstream) -> None:
    """Defect 2: an upstream that keeps sending headers grew the process to 4.6 GB."""
    resp = chat(server, "once/endless-headers", "h")
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["code"] == "upstream_headers_too_large" and "65536" in error["message"]


def test_a_body_over_max_response_bytes_fails_at_once(server: SwitchboardProcess, raw: RawUpstream) -> None:
    """Defect 2: Content-Length 10^12 is refused before any body byte is awaited, and not retried."""
    before = raw.count("big")
    resp = chat(server, "small/huge-body", "big")
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "upstream_response_too_large"
    assert resp.headers["x-switchboard-attempts"] == "1" and raw.count("big") - before == 1


def test_an_event_over_max_event_bytes_ends_the_stream_with_an_error_frame(server: SwitchboardProcess) -> None:
    """Defect 9: past the limit, the stream fails mid-way as other mid-stream failures do."""
    resp = chat(server, f"small/big-event-{2 * LIMIT}", "e", stream=True)
    assert resp.status_code == 200
    events = stream_events(resp)
    assert "[DONE]" not in events and len(events) == 2
    first, last = events
    assert isinstance(first, dict) and first["choices"][0]["delta"]["content"] == "Hello"  # type: ignore[index]
    assert isinstance(last, dict) and last["error"]["code"] == "upstream_event_too_large"  # type: ignore[index]


def test_an_event_under_max_event_bytes_streams_whole(server: SwitchboardProcess) -> None:
    resp = chat(server, f"small/big-event-{LIMIT // 2}", "e", stream=True)
    assert resp.status_code == 200 and stream_events(resp)[-1] == "[DONE]"


def test_stray_bytes_on_an_idle_upstream_connection_are_not_the_next_answer(server: SwitchboardProcess,
                                                                            raw: RawUpstream) -> None:
    """Defect 8: the next request on a connection that received unsolicited bytes got a 502."""
    assert chat(server, "once/stray-1", "s1").status_code == 200
    time.sleep(0.1)  # the stray bytes arrive while the connection is idle in the pool
    resp = chat(server, "once/stray-2", "s2")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Hello from stray-2"
