"""`asgi.send_stream`'s guard: the keep-alive pings and the disconnect watch start only once a stream
has run for `GUARD_AFTER_S`, so a short stream pays for neither task; a long one gets both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard import asgi
from switchboard.asgi import LastChunk, StreamResponse, send_stream
from switchboard.sse import PING


class Client:
    """The ASGI side of one connection: what was sent, and a `receive` that reports a disconnect when told."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def test_a_short_stream_starts_no_task_beside_its_own() -> None:
    client = Client()
    tasks_seen: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        tasks_seen.append(len(asyncio.all_tasks()))
        yield b"data: 1\n\n"
        tasks_seen.append(len(asyncio.all_tasks()))
        yield LastChunk(b"data: [DONE]\n\n")

    before = len(asyncio.all_tasks())
    closed: list[BaseException | None] = []
    await send_stream(client.send, client.receive, StreamResponse(body(), on_close=closed.append), "r1")
    assert tasks_seen == [before, before]
    assert client.bodies() == [b"data: 1\n\n", b"data: [DONE]\n\n"] and closed == [None]
    assert client.sent[-1]["more_body"] is False


async def test_a_quiet_stream_gets_keep_alive_pings_once_its_guard_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "GUARD_AFTER_S", 0.02)
    monkeypatch.setattr(asgi, "KEEPALIVE_INTERVAL_S", 0.05)
    client = Client()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        await asyncio.sleep(0.3)  # a model thinking
        yield LastChunk(b"data: [DONE]\n\n")

    await send_stream(client.send, client.receive, StreamResponse(body()), "r1")
    bodies = client.bodies()
    assert bodies[0] == b"data: 1\n\n" and bodies[-1] == b"data: [DONE]\n\n"
    assert 2 <= bodies.count(PING) <= 6 and set(bodies[1:-1]) == {PING}


async def test_a_disconnect_seen_by_the_guard_cancels_the_stream_and_closes_its_body(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "GUARD_AFTER_S", 0.01)
    client = Client()
    closed_body: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            await asyncio.sleep(30)  # an upstream that never answers
            yield LastChunk(b"data: [DONE]\n\n")
        finally:
            closed_body.append(True)

    ends: list[BaseException | None] = []
    asyncio.get_running_loop().call_later(0.1, client.gone.set)
    await asyncio.wait_for(send_stream(client.send, client.receive, StreamResponse(body(), on_close=ends.append),
                                       "r1"), 5)
    assert closed_body == [True]
    assert len(ends) == 1 and isinstance(ends[0], asyncio.CancelledError)
    assert client.bodies() == [b"data: 1\n\n"]  # no end: the client is gone
