"""Long paced streams through the real server, whose middle reads are written from the upstream
connection's callback (`RoutedStream.pipe`): every frame reaches the client as it came and in order
(the official SDK, and a client that stops reading while frames pile up), and what the relay counts
of them (content for the usage estimate, finish reasons) is still counted."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from switchboard.headends.relay import CHARS_PER_TOKEN
from tests.fakes.threaded import ThreadedServer
from tests.integration.fixtures import running, running_gateway
from tests.server import SwitchboardProcess

KEY = "sk-pipe-master-0123456789abcdef"


class PacedUpstream(ThreadedServer):
    """OpenAI chat streams of `deltas` content chunks (`delta_bytes` long each, `gap` seconds apart,
    each written on its own), then a finish chunk, usage when `usage` is set (default true), [DONE]."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.finished: dict[str, float] = {}  # the last message's content -> when its stream's last byte was written

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        deltas, size, gap = int(body["deltas"]), int(body.get("delta_bytes", 4)), float(body.get("gap", 0.01))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def frame(choices: list[dict[str, Any]], usage: Any = None) -> None:
            chunk = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1, "model": "paced",
                     "choices": choices, "usage": usage}
            await resp.write(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")

        await frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for i in range(deltas):
            await asyncio.sleep(gap)
            await frame([{"index": 0, "delta": {"content": f"<{i}>".ljust(size, "x")}, "finish_reason": None}])
        await frame([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if body.get("usage", True):
            await frame([], {"prompt_tokens": 7, "completion_tokens": deltas, "total_tokens": 7 + deltas})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self.finished[body["messages"][-1]["content"]] = time.monotonic()
        return resp


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    with running(PacedUpstream()) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(paced: PacedUpstream) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {KEY}}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:{paced.port}/v1", keys: [{{value: sk-up}}], retries: {{max: 0}}}}
models:
  paced: {{route: up/paced}}
"""
    with running_gateway(config) as server:
        yield server


def contents(i: int, size: int) -> str:
    return f"<{i}>".ljust(size, "x")


def access_line(gateway: SwitchboardProcess, marker: str) -> dict[str, Any]:
    """The access log's line of the request whose last message was `marker` (by its x-request-id)."""
    for _ in range(100):
        for line in gateway.logs().splitlines():
            if marker in line and line.startswith("{"):
                return dict(json.loads(line))
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {marker}")


def test_a_long_paced_stream_arrives_whole_and_in_order(gateway: SwitchboardProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0)
    with client:
        stream = client.chat.completions.create(
            model="paced", messages=[{"role": "user", "content": "go"}], stream=True,
            stream_options={"include_usage": True}, extra_body={"deltas": 60, "gap": 0.01})
        chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == [contents(i, 4) for i in range(60)]
    assert all(c.id == "chatcmpl-paced" for c in chunks)  # the upstream's own frames
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 60


async def test_many_paced_streams_at_once(gateway: SwitchboardProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0) as client:
        async def one(n: int) -> list[str]:
            stream = await client.chat.completions.create(
                model="paced", messages=[{"role": "user", "content": str(n)}], stream=True,
                extra_body={"deltas": 30 + n, "gap": 0.005})
            return [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]

        results = await asyncio.gather(*(one(n) for n in range(24)))
    assert results == [[contents(i, 4) for i in range(30 + n)] for n in range(24)]


def test_content_of_written_reads_counts_toward_the_usage_estimate(gateway: SwitchboardProcess) -> None:
    # No usage from the upstream: the gateway charges an estimate from the content it relayed, most of
    # which it wrote from the connection's callback. A read it wrote without counting would show here.
    marker = "estimate-me"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0)
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="paced", messages=[{"role": "user", "content": marker}], stream=True,
            extra_body={"deltas": 40, "delta_bytes": 10, "gap": 0.01, "usage": False})
        request_id = raw.headers["x-request-id"]
        texts = [c.choices[0].delta.content for c in raw.parse() if c.choices and c.choices[0].delta.content]
    assert len(texts) == 40
    line = access_line(gateway, request_id)
    assert line["completion_tokens"] == -(-sum(len(t) for t in texts) // CHARS_PER_TOKEN)


def test_a_client_that_stops_reading_still_gets_every_frame(gateway: SwitchboardProcess,
                                                           paced: PacedUpstream) -> None:
    # 192 frames of 96 KiB (18 MiB), more than the socket buffers hold: the client reads nothing for a
    # second, so the gateway's writes to it pause, and then its reads of the upstream, whose writes
    # stall in turn (written at once, the frames take 0.4 s); then it reads them all. A frame written
    # from the callback while writes are paused would be lost; one buffered instead would let the
    # upstream finish while the client is not reading.
    body = json.dumps({"model": "paced", "messages": [{"role": "user", "content": "slow"}], "stream": True,
                       "deltas": 192, "delta_bytes": 96 * 1024, "gap": 0.002}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(1.0)
        reading_from = time.monotonic()
        assert "slow" not in paced.finished, "the upstream finished while the client read nothing"
        sock.settimeout(10)
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "the gateway closed the connection before the end"
            received += data
    head, _, chunked = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    payload = b""
    while chunked:
        size, _, rest = chunked.partition(b"\r\n")
        n = int(size, 16)
        payload += rest[:n]
        chunked = rest[n + 2:]
    events = [e[len("data: "):] for e in payload.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    texts = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1] if json.loads(e)["choices"]]
    assert [t for t in texts if t] == [contents(i, 96 * 1024) for i in range(192)]
    assert paced.finished["slow"] > reading_from
