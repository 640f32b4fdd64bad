"""Graceful shutdown: SIGTERM stops accepting connections, lets an in-flight stream finish within
`server.shutdown_grace_s`, and cuts it (without a fake clean end) when the grace runs out."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.faulty_upstream import FaultyOpenAI
from tests.server import SwitchboardProcess

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FaultyOpenAI]:
    upstream = FaultyOpenAI().start()
    yield upstream
    upstream.stop()


def start(fake: FaultyOpenAI, grace: float) -> SwitchboardProcess:
    return SwitchboardProcess(f"""
server: {{shutdown_grace_s: {grace}}}
providers:
  up: {{type: openai, base_url: "{fake.base_url}", retries: {{max: 0}}}}
""").start()


def _refuses_new_requests(server: SwitchboardProcess) -> bool:
    try:
        resp = httpx.get(server.url + "/ready", timeout=2)
    except httpx.TransportError:
        return True  # the listening socket is closed: new connections are refused
    return resp.status_code == 503


def test_sigterm_lets_in_flight_stream_finish(fake: FaultyOpenAI) -> None:
    server = start(fake, 20)
    try:
        assert httpx.get(server.url + "/ready").status_code == 200
        with httpx.Client(timeout=30) as client, client.stream(
                "POST", server.url + "/v1/chat/completions",
                json={"model": "up/gate-drain", "messages": MESSAGES, "stream": True}) as resp:
            lines = resp.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not _refuses_new_requests(server):
                assert time.monotonic() < deadline, "still accepting requests after SIGTERM"
                time.sleep(0.05)
            assert server.proc.poll() is None  # still draining the stream
            fake.open_gate("drain")
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is "killed by SIGTERM"
        assert server.proc.wait(10) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.logs()
    finally:
        server.stop()


def test_grace_exceeded_cuts_the_stream(fake: FaultyOpenAI) -> None:
    server = start(fake, 0.5)
    try:
        with httpx.Client(timeout=30) as client, client.stream(
                "POST", server.url + "/v1/chat/completions",
                json={"model": "up/stall", "messages": MESSAGES, "stream": True}) as resp:
            lines = resp.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):  # cut: no clean end, no [DONE]
                for _ in lines:
                    pass
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is "killed by SIGTERM"
        assert server.proc.wait(10) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.logs()
        assert "graceful shutdown exceeded" in server.logs()
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while fake.open_handlers:  # the upstream request was closed with the process
        assert time.monotonic() < deadline
        time.sleep(0.02)
