"""`BodyChunks.pipe`: a sink offered each read of a response body while its reader waits, against
raw socket servers. What the sink refuses, and what arrives while the reader is busy, reaches the
reader as without a sink, in order; a failing sink loses nothing; a read timeout counts from the
last read the sink took."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from switchboard.providers.http1 import BodyChunks, HTTP1Client, Response, UpstreamConnectionError
from tests.unit.test_http1 import Handler, read_request, serve

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def paced_handler(pieces: list[bytes], gap: float, then_silence: float = 0.0):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD)
        for piece in pieces:
            await asyncio.sleep(gap)
            writer.write(chunk(piece))
            await writer.drain()
        await asyncio.sleep(then_silence)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return handler


async def read_all(body: BodyChunks, seen: list[bytes] | None = None) -> list[bytes]:
    """The pieces the reader sees (appended to `seen` as they come), read as SSEChunkStream reads
    them (`ready()`, else await `more()`)."""
    seen = [] if seen is None else seen
    while True:
        piece = body.ready()
        if piece is not None:
            seen.append(piece)
            continue
        more = body.more()
        if more is None:
            return seen
        try:
            await more
        except BaseException:
            body.disarm()
            raise



@contextlib.asynccontextmanager
async def piped_response(handler: Handler, sink: Callable[[bytes], bool],
                         read_timeout: float = 5.0) -> AsyncIterator[tuple[Response, BodyChunks]]:
    """A request to a raw server running `handler`, and its response's body with `sink` piped."""
    server, url, _ = await serve(handler)
    client = HTTP1Client(connect_timeout=2)
    try:
        async with server:
            resp = await client.request("POST", url + "/s", {}, b"{}", read_timeout=read_timeout)
            body = resp.iter_chunks()
            body.pipe(sink)
            yield resp, body
    finally:
        await client.aclose()


def taking(into: list[bytes]) -> Callable[[bytes], bool]:
    """A sink that takes every read, into `into`."""
    def sink(data: bytes) -> bool:
        into.append(data)
        return True
    return sink

async def test_sink_takes_reads_while_the_reader_waits_and_the_order_holds() -> None:
    pieces = [b"piece %d;" % i + (b" keep" if i % 3 == 0 else b"") for i in range(12)]
    # (the end comes apart from the last piece: a piece that arrives with the body's end wakes the reader)
    log: list[bytes] = []  # every piece, as the sink or the reader got it, in that order

    def sink(data: bytes) -> bool:
        if b"keep" in data:
            return False  # refused: the reader gets it
        log.append(b"sink: " + data)
        return True

    class Reader(list[bytes]):
        def append(self, piece: bytes) -> None:
            log.append(b"reader: " + piece)

    async with piped_response(paced_handler(pieces, gap=0.02, then_silence=0.05), sink) as (resp, body):
        await read_all(body, Reader())
        resp.release()
    assert log == [(b"reader: " if b"keep" in p else b"sink: ") + p for p in pieces]


async def test_bytes_before_a_broken_frame_reach_the_reader_before_the_error() -> None:
    # One read: a good chunk, then chunked framing that is not hex. The sink held back the wake for
    # the good chunk when the parser fails on the rest: the reader must still get it, then the error.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunk(b"good;") + b"zz\r\nbroken\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)

    seen: list[bytes] = []
    async with piped_response(handler, lambda data: False) as (resp, body):
        with pytest.raises(UpstreamConnectionError):
            await read_all(body, seen)
        resp.close()
    assert seen == [b"good;"]


async def test_reads_that_arrive_while_the_reader_is_busy_are_not_offered() -> None:
    pieces = [b"a;", b"b;", b"c;", b"d;"]
    offered: list[bytes] = []
    async with piped_response(paced_handler(pieces, gap=0.02), taking(offered)) as (resp, body):
        await asyncio.sleep(0.3)  # busy (not waiting in `more()`) while every piece arrives
        seen = await read_all(body)
        resp.release()
    assert offered == [] and b"".join(seen) == b"a;b;c;d;"


async def test_a_failing_sink_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    pieces = [b"one;", b"two;", b"three;", b"four;"]
    taken: list[bytes] = []

    def sink(data: bytes) -> bool:
        if data == b"two;":
            raise RuntimeError("a bug in the sink")
        taken.append(data)
        return True

    async with piped_response(paced_handler(pieces, gap=0.03), sink) as (resp, body):
        with caplog.at_level(logging.ERROR, logger="switchboard.providers.http1"):
            seen = await read_all(body)
        resp.release()
    # The sink is dropped at its failure: the piece it failed on and all later ones reach the reader.
    assert taken == [b"one;"] and seen == [b"two;", b"three;", b"four;"]
    assert "a response body sink failed" in caplog.text


async def test_read_timeout_counts_from_the_last_read_the_sink_took() -> None:
    # Pieces every 0.1 s for ~1.2 s, all taken, then 2 s of silence: a reader with a 0.5 s read
    # timeout must not time out while the sink takes them, and must time out in the silence.
    pieces = [b"p%d;" % i for i in range(12)]
    taken: list[bytes] = []
    handler = paced_handler(pieces, gap=0.1, then_silence=2.0)
    async with piped_response(handler, taking(taken), read_timeout=0.5) as (resp, body):
        with pytest.raises(TimeoutError):
            await read_all(body)
        resp.close()
    assert taken == pieces


async def test_a_released_connection_forgets_its_sink() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(HEAD)
            for part in (chunk(b"x"), b"0\r\n\r\n"):  # the piece, then the end, each in a read of its own
                await asyncio.sleep(0.05)
                writer.write(part)
                await writer.drain()

    server, url, connections = await serve(handler)
    client = HTTP1Client(connect_timeout=2)
    taken: list[bytes] = []
    async with server:
        resp = await client.request("POST", url + "/s", {}, b"{}", read_timeout=5)
        body = resp.iter_chunks()
        body.pipe(taking(taken))
        assert await read_all(body) == [] and taken == [b"x"]
        resp.release()
        assert resp._conn.sink is None  # not kept (with what it holds) while the connection idles in the pool
        resp = await client.request("POST", url + "/s", {}, b"{}", read_timeout=5)  # the same connection
        assert await read_all(resp.iter_chunks()) == [b"x"] and taken == [b"x"]
        resp.release()
    await client.aclose()
    assert len(connections) == 1


def test_serving_raises_the_open_files_soft_limit_to_the_hard_one() -> None:
    # (in a child process: the test process keeps its own limits)
    code = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
from switchboard.server.runner import raise_open_files_limit
raise_open_files_limit()
print(resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard) if hard != resource.RLIM_INFINITY else
      resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 256)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
