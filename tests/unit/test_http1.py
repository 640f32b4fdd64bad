"""The upstream HTTP/1.1 client against raw socket servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from switchboard.providers.http1 import HTTP1Client, UpstreamConnectionError

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


async def test_body_until_close(client: HTTP1Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("GET", url, {}, read_timeout=2)
        assert await resp.read() == b"all of it"


async def test_stale_pooled_connection_is_retried_once(client: HTTP1Client) -> None:
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
        writer.write(b"HTTP/1.1 200 OK\r\nX-Request-Id: r7\r\nVary: Accept\r\nvary: Origin\r\n"
                     b"Content-Length: 2\r\n\r\nok")
        await writer.drain()

    server, url, _ = await serve(handler)
    async with server:
        resp = await client.request("GET", url, {}, read_timeout=2)
        assert resp.header(b"x-request-id") == "r7" and resp.header(b"vary") == "Accept"
        assert resp.header(b"missing") is None
        assert resp.headers["vary"] == "Accept, Origin" and resp.headers["content-length"] == "2"
        assert await resp.read() == b"ok"
