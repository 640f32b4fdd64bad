"""The upstream HTTP/1.1 client against raw socket servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from switchboard.providers.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HTTP1Client,
    UpstreamConnectionClosed,
    UpstreamConnectionError,
    UpstreamResponseTooLarge,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


@pytest.fixture
async def client() -> AsyncIterator[HTTP1Client]:
    c = HTTP1Client(connect_timeout=2)
    yield c
    await c.aclose()


async def test_keep_alive_reuses_one_connection(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            assert b"Host: 127.0.0.1:" in head and b"Content-Length: " in head
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Request-Id: r1\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    server, url, connections = await serve(handler)
    async with server:
        for i in range(5):
            resp = await client.request("POST", url + "/echo", {"A": "b"}, b"hello %d" % i, read_timeout=2)
            assert resp.status == 200 and resp.headers["x-request-id"] == "r1"
            assert await resp.read() == b"hello %d" % i
        assert len(connections) == 1


async def test_chunked_stream_lines_and_pooling_after_terminator(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
            for piece in (b"data: one\n", b"\ndata: t", b"wo\n\ndata: [DONE]\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    server, url, connections = await serve(handler)
    async with server:
        for _ in range(2):
            resp = await client.request("POST", url, {}, b"{}", read_timeout=2)
            body = b"".join([chunk async for chunk in resp.iter_chunks()])
            assert body == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
            resp.release()
            await asyncio.sleep(0.05)
        assert len(connections) == 1


async def test_a_body_left_before_its_end_leaves_nothing_for_the_loop_to_finalize(client: HTTP1Client) -> None:
    """An SSE reader stops at the stream's terminator, before the HTTP message ends, and drops its
    chunk iterator. Were that an async generator, the loop's finalizer hook would schedule its
    `aclose()` through `call_soon_threadsafe` (a self-pipe write and a wake-up per stream)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(b"4\r\nmore\r\n0\r\n\r\n")
        await writer.drain()

    finalized: list[object] = []
    hooks = sys.get_asyncgen_hooks()

    def finalizer(agen: Any) -> None:
        finalized.append(agen)
        if hooks.finalizer is not None:
            hooks.finalizer(agen)

    server, url, _ = await serve(handler)
    async with server:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
        try:
            resp = await client.request("POST", url, {}, b"{}", read_timeout=2)
            async for piece in resp.iter_chunks():
                assert piece == b"first"
                break
            resp.close()
            gc.collect()
        finally:
            sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)
    assert finalized == []


async def test_body_until_close(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("GET", url, {}, read_timeout=2)
        assert await resp.read() == b"all of it"


async def test_connection_closed_while_idle_is_not_reused(client: HTTP1Client) -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # then close the kept-alive connection, as servers do after their idle timeout

    server, url, connections = await serve(handler)
    async with server:
        assert await (await client.request("POST", url, {}, b"1", read_timeout=2)).read() == b"ok"
        await asyncio.sleep(0.05)
        assert await (await client.request("POST", url, {}, b"2", read_timeout=2)).read() == b"ok"
        assert served == 2 and len(connections) == 2


async def test_read_timeout_and_deadline(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(5)

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("POST", url, {}, b"x", read_timeout=0.2)
        with pytest.raises(TimeoutError):
            await resp.read()
        resp = await client.request("POST", url, {}, b"x", read_timeout=5, total_timeout=0.3)
        with pytest.raises(TimeoutError):
            await resp.read()


async def test_reset_mid_body_and_refused_connection(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("POST", url, {}, b"x", read_timeout=2)
        with pytest.raises(UpstreamConnectionError):
            await resp.read()
    with pytest.raises(UpstreamConnectionError):
        await client.request("POST", "http://127.0.0.1:1/x", {}, b"x", read_timeout=1)


async def test_garbage_is_a_connection_error(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server, url, _ = await serve(handler)
    async with server:
        with pytest.raises(UpstreamConnectionError):
            await client.request("POST", url, {}, b"x", read_timeout=2)


async def test_large_body_flow_control(client: HTTP1Client) -> None:
    size = 5 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("POST", url, {}, b"x", read_timeout=5)
        total = 0
        async for chunk in resp.iter_chunks():
            total += len(chunk)
        assert total == size


async def test_response_headers_by_name_and_all_together(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Request-Id: r7 \t\r\nVary: Accept\r\nvary:  Origin\t\r\n"
                     b"Content-Length: 2\r\n\r\nok")
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("GET", url, {}, read_timeout=2)
        assert resp.header(b"x-request-id") == "r7" and resp.header(b"vary") == "Accept"
        assert resp.header(b"missing") is None
        assert resp.headers["vary"] == "Accept, Origin" and resp.headers["content-length"] == "2"
        assert await resp.read() == b"ok"


# -- bounded response heads (issue 10, defect 2)

async def write_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send `data` (in pieces) and return once the client has closed the connection."""
    try:
        for at in range(0, len(data), 16384):
            writer.write(data[at:at + 16384])
            await writer.drain()
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


def head_of(headers: int, value: bytes = b"v") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, value) for i in range(headers))


@pytest.mark.parametrize("head", [
    # many headers over several reads (the attack: an upstream that keeps sending headers)
    head_of(20_000, b"v" * 90) + b"Content-Length: 2\r\n\r\nok",
    # a few hundred small ones, all in one read
    head_of(MAX_HEADERS + 1) + b"Content-Length: 2\r\n\r\nok",
    # one endless header line: httptools holds it back until its end, no callback sees it grow
    b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * (4 * MAX_HEAD_BYTES) + b"\r\nContent-Length: 2\r\n\r\nok",
    # an endless series of interim responses before the real one
    b"HTTP/1.1 100 Continue\r\n\r\n" * 20_000 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
], ids=["many-headers", "too-many-lines", "endless-line", "endless-interim"])
async def test_response_head_over_the_limits_fails(client: HTTP1Client, head: bytes) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await write_until_closed(reader, writer, head)
        closed.set()

    server, url, _ = await serve(handler)
    async with server:
        with pytest.raises(UpstreamResponseTooLarge) as err:
            await client.request("POST", url, {}, b"x", read_timeout=2)
        assert err.value.code == "upstream_headers_too_large"
        await asyncio.wait_for(closed.wait(), 2)


async def test_a_head_just_under_the_limits_is_fine(client: HTTP1Client) -> None:
    value = b"v" * ((MAX_HEAD_BYTES - 200) // (MAX_HEADERS - 1) - 10)
    head = head_of(MAX_HEADERS - 1, value) + b"Content-Length: 2\r\n\r\nok"
    assert len(head) < MAX_HEAD_BYTES

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("POST", url, {}, b"x", read_timeout=2)
        assert len(resp.raw_headers) == MAX_HEADERS and await resp.read() == b"ok"


async def test_trailers_are_not_response_headers(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                     + b"".join(b"x-trailer-%d: t\r\n" % i for i in range(50)) + b"\r\n")
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("GET", url, {}, read_timeout=2)
        assert await resp.read() == b"ok"
        assert resp.raw_headers == [(b"transfer-encoding", b"chunked")]


# -- bounded response bodies (issue 10, defect 2)

LIMIT = 64 * 1024


@pytest.fixture
async def small_client() -> AsyncIterator[HTTP1Client]:
    c = HTTP1Client(connect_timeout=2, max_response_bytes=LIMIT)
    yield c
    await c.aclose()


def chunked(total: int) -> bytes:
    piece = b"%x\r\n%s\r\n" % (4096, b"c" * 4096)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + piece * (total // 4096)


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n" + b"b" * 100,  # refused before the body
    chunked(4 * LIMIT),
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"u" * (4 * LIMIT),  # until close
], ids=["content-length", "chunked", "until-close"])
async def test_body_over_max_response_bytes_fails_and_closes(small_client: HTTP1Client, response: bytes) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await write_until_closed(reader, writer, response)  # no end of the body: the client must close
        closed.set()

    server, url, _ = await serve(handler)
    async with server:
        resp = await small_client.request("POST", url, {}, b"x", read_timeout=2)
        with pytest.raises(UpstreamResponseTooLarge) as err:
            await resp.read()
        assert err.value.code == "upstream_response_too_large" and str(LIMIT) in str(err.value)
        await asyncio.wait_for(closed.wait(), 2)


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_body_of_exactly_max_response_bytes_is_read(small_client: HTTP1Client, framing: str) -> None:
    body = b"e" * LIMIT

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if framing == "content-length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (LIMIT, body))
        elif framing == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (LIMIT, body))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            writer.close()
            return
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await small_client.request("POST", url, {}, b"x", read_timeout=2)
        assert await resp.read() == body


# -- no request is ever sent twice by the client (issue 10, defect 7)

async def test_reused_connection_closed_before_answering_is_not_resent(client: HTTP1Client) -> None:
    bodies: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            bodies.append(body)
            if body.startswith(b"drop"):
                return  # read, perhaps processed, and the connection closed without an answer
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server, url, connections = await serve(handler)
    async with server:
        assert await (await client.request("POST", url, {}, b"first", read_timeout=2)).read() == b"ok"
        with pytest.raises(UpstreamConnectionClosed):
            await client.request("POST", url, {}, b"drop-second", read_timeout=2)
        assert bodies == [b"first", b"drop-second"] and len(connections) == 1
        # on a fresh connection, the same is a plain connection error
        with pytest.raises(UpstreamConnectionError) as err:
            await client.request("POST", url, {}, b"drop-third", read_timeout=2)
        assert not isinstance(err.value, UpstreamConnectionClosed)
        assert await (await client.request("POST", url, {}, b"fourth", read_timeout=2)).read() == b"ok"
        assert bodies == [b"first", b"drop-second", b"drop-third", b"fourth"] and len(connections) == 3


# -- idle pooled connections (issue 10, defect 8)

@pytest.mark.parametrize("stray", [
    b"HTTP/1.1 408 Request Timeout\r\n",  # the start of a head
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",  # a body that goes on
], ids=["partial-head", "partial-body"])
@pytest.mark.parametrize("when", ["while-idle", "with-the-answer"])
async def test_unsolicited_bytes_spoil_a_pooled_connection(client: HTTP1Client, stray: bytes, when: str) -> None:
    sent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(connections) > 1:  # the client's next connection: a plain answer
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
            await writer.drain()
            return
        await read_request(reader)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        writer.write(answer + stray if when == "with-the-answer" else answer)
        await writer.drain()
        if when == "while-idle":
            await asyncio.sleep(0.02)
            writer.write(stray)
            await writer.drain()
        sent.set()
        await read_request(reader)  # a request that should never come on this connection
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong")
        await writer.drain()

    server, url, connections = await serve(handler)
    async with server:
        assert await (await client.request("POST", url, {}, b"1", read_timeout=2)).read() == b"ok"
        await sent.wait()
        await asyncio.sleep(0.05)  # let the stray bytes reach the client
        assert await (await client.request("POST", url, {}, b"2", read_timeout=2)).read() == b"second"
        assert len(connections) == 2


async def test_idle_connections_are_reaped_on_a_timer() -> None:
    from switchboard.config import ProviderConfig
    from switchboard.providers.base import HttpUpstream

    eofs: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if len(connections) == 3:
            gate.set()
        await gate.wait()  # answer when all three requests are in: three connections in use at once
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        assert await reader.read() == b""  # no further request: only the client closing
        eofs.append(1)

    gate = asyncio.Event()
    upstream = HttpUpstream(ProviderConfig(name="p", type="openai", base_url="http://x", pool_idle_s=0.2,
                                           pool_max_idle=2))
    await upstream.start()
    server, url, connections = await serve(handler)
    try:
        async with server:
            async def one() -> bytes:
                return await (await upstream.client.request("POST", url, {}, b"x", read_timeout=2)).read()

            assert list(await asyncio.gather(one(), one(), one())) == [b"ok"] * 3
            for _ in range(100):  # one closed at once (two idle at most), the others when idle for 0.2 s
                if len(eofs) == 3:
                    break
                await asyncio.sleep(0.02)
            assert len(eofs) == 3
            assert upstream.client._watchdog.ticking is None  # nothing idle, nothing waiting: no timer left
    finally:
        await upstream.aclose()
