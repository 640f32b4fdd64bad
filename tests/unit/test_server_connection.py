"""One client connection at its edges, over raw sockets against the server on a free port: what is
answered when a request is followed by bytes that are not one (a bad request, data after
`Connection: close`, broken chunk framing), pipelining of any depth, the idle timeout against bare
CRLF, the send timeout for a client that never reads, and a `#fragment` in the request target."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from switchboard.config import parse_config
from switchboard.server.protocol import HEAD_TIMEOUT_S, MAX_PIPELINE, HttpProtocol, ServerState

_RESPONSE_HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n")


class Recorder:
    """An app that answers each request with its path (after reading its whole body) and records
    what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []  # method, path, body
        self.disconnects = 0  # receive() said http.disconnect, or the task was cancelled
        self.hold: asyncio.Event | None = None  # while set to an unset event, requests wait for it

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            try:
                message = await receive()
            except asyncio.CancelledError:
                self.disconnects += 1
                raise
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message["body"]
            if not message["more_body"]:
                break
        self.seen.append((scope["method"], scope["path"], body))
        if self.hold is not None:
            await self.hold.wait()
        answer = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def serving(app: Any, **state_options: Any) -> AsyncIterator[tuple[ServerState, int]]:
    state = ServerState(app, **state_options)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
    try:
        async with server:
            yield state, server.sockets[0].getsockname()[1]
    finally:
        for conn in list(state.connections):  # kept alive or lingering: not past this test's loop
            conn.transport.abort()
        await asyncio.sleep(0)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """All the server sends until it ends the connection (EOF or reset); a hang fails the test."""
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            chunks.append(chunk)
    except ConnectionError:
        pass
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in a byte stream of content-length framed responses."""
    out, at = [], 0
    while match := _RESPONSE_HEAD.match(raw, at):
        length = int(re.search(rb"(?im)^content-length: *(\d+)", match.group(2)).group(1))  # type: ignore[union-attr]
        at = match.end() + length
        out.append((int(match.group(1)), raw[match.end():at]))
    assert at == len(raw), f"trailing bytes after the responses: {raw[at:at + 80]!r}"
    return out


async def exchange(app: Any, data: bytes) -> list[tuple[int, bytes]]:
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        raw = await until_closed(reader)
        writer.close()
    return responses(raw)


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


# --- a parse error after a request has started (issue 10, defect 5; issue 11)


async def test_data_after_connection_close_gets_the_request_answered_then_the_close() -> None:
    app = Recorder()
    got = await exchange(app, get("/first", "Connection: close\r\n") + get("/second"))
    assert got == [(200, b"/first")]
    assert [path for _, path, _ in app.seen] == ["/first"]


async def test_data_after_an_http_1_0_request_gets_it_answered_then_the_close() -> None:
    app = Recorder()
    assert await exchange(app, get("/first", version="1.0") + get("/second")) == [(200, b"/first")]


async def test_a_bad_request_pipelined_after_a_good_one_gets_the_answer_then_a_400() -> None:
    app = Recorder()
    got = await exchange(app, get("/good") + b"NOT HTTP AT ALL\r\n\r\n")
    assert [status for status, _ in got] == [200, 400] and got[0][1] == b"/good"
    assert b'"invalid_http_request"' in got[1][1]


async def test_several_good_requests_then_a_bad_one_are_answered_in_order() -> None:
    app = Recorder()
    got = await exchange(app, get("/a") + get("/b") + get("/c") + b"GET /d HTTP/1.1\r\nBad Header\r\n\r\n")
    assert got == [(200, b"/a"), (200, b"/b"), (200, b"/c"), got[3]] and got[3][0] == 400


async def test_broken_chunk_framing_after_the_head_gets_a_400() -> None:
    app = Recorder()
    broken = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    got = await exchange(app, get("/before") + broken)
    assert [status for status, _ in got] == [200, 400] and got[0][1] == b"/before"
    assert [path for _, path, _ in app.seen] == ["/before"]  # the broken request never reached its end


async def test_broken_chunk_framing_while_the_app_reads_the_body_gives_it_a_disconnect_not_a_500() -> None:
    app = Recorder()
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.1)  # the app runs and has read "hello"
        writer.write(b"zz\r\n")
        raw = await until_closed(reader)
        writer.close()
    assert [status for status, _ in responses(raw)] == [400] and app.disconnects == 1 and not app.seen


async def test_headers_too_large_after_a_good_request_get_the_answer_then_a_431() -> None:
    app = Recorder()
    got = await exchange(app, get("/ok") + b"GET /big HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert [status for status, _ in got] == [200, 431]


async def test_bytes_that_arrive_before_the_close_do_not_turn_it_into_a_reset() -> None:
    # Closing a socket with bytes of the client unread makes the kernel send a reset instead of a
    # clean end, and a reset can make the client drop the answer it had not read yet (asyncio streams
    # raise it before their buffered data). Hence the lingering close.
    async def busy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        time.sleep(0.3)  # noqa: ASYNC251 (a busy loop, on purpose: the client's next bytes wait unread)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(get("/x"))
            time.sleep(0.1)
            sock.sendall(get("/y"))  # pipelined while the first is being answered
            time.sleep(0.4)  # answered and closed meanwhile
            data = b""
            while chunk := sock.recv(65536):  # a reset raises ConnectionResetError
                data += chunk
            return data

    async with serving(busy) as (_, port):
        raw = await asyncio.to_thread(client, port)
    assert responses(raw) == [(200, b"ok")]


async def test_a_body_that_stops_coming_gets_a_408_after_the_answers_before_it() -> None:
    app = Recorder()
    async with serving(app) as (state, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/first") + b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(0.1)  # the first is answered; the second's app waits for the rest of its body
        state.sweep(asyncio.get_running_loop().time() + HEAD_TIMEOUT_S + 1)
        raw = await until_closed(reader)
        writer.close()
    got = responses(raw)
    assert [status for status, _ in got] == [200, 408] and b'"request_timeout"' in got[1][1]
    assert app.disconnects == 1 and [path for _, path, _ in app.seen] == ["/first"]  # no 500 for the cut one


async def test_an_upgrade_request_is_answered_as_plain_http_then_the_connection_ends() -> None:
    app = Recorder()
    got = await exchange(app, get("/ws", "Connection: upgrade\r\nUpgrade: websocket\r\n") + b"\x81\x05hello")
    assert got == [(200, b"/ws")]


# --- pipelining of any depth: back-pressure, never a drop


async def test_pipelined_requests_past_the_bound_are_all_answered_in_order() -> None:
    for depth in (MAX_PIPELINE + 1, 1000):
        app = Recorder()
        got = await exchange(app, b"".join(get(f"/{i}", "Connection: close\r\n" if i == depth - 1 else "")
                                           for i in range(depth)))
        assert got == [(200, f"/{i}".encode()) for i in range(depth)], depth


async def test_a_deep_pipeline_stops_the_reading_instead_of_queueing_without_bound() -> None:
    app = Recorder()
    app.hold = asyncio.Event()
    depth = 3000  # ~90 KB in one write: far more than the server queues
    async with serving(app) as (state, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(get(f"/{i}") for i in range(depth - 1)) + get(f"/{depth - 1}", "Connection: close\r\n"))
        for _ in range(200):  # until the server has read what it will read while the first answer is held
            await asyncio.sleep(0.01)
            if app.seen:
                break
        await asyncio.sleep(0.1)
        (conn,) = state.connections
        queued = len(conn.cycles)
        app.hold.set()
        raw = await until_closed(reader)
        writer.close()
    assert 1 <= queued < 1000  # bounded: the rest waited unparsed (in our buffer or the socket's)
    assert responses(raw) == [(200, f"/{i}".encode()) for i in range(depth)]


# --- the idle timeout counts only request bytes (defect 6)


async def _closed_while_sending_crlf(prefix: bytes) -> bool:
    """Whether the server closes a connection that sends two bytes of CRLF every (simulated) second
    for twice its idle timeout, after `prefix`."""
    async with serving(Recorder(), keepalive_timeout_s=5.0) as (state, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if prefix:
            writer.write(prefix)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(2)  # the body: "/x"
        loop = asyncio.get_running_loop()
        try:
            for second in range(1, 11):
                writer.write(b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)  # let the server read them
                state.sweep(loop.time() + second)  # the once-a-second sweep, `second` seconds later
                if not state.connections:
                    return True
            return await asyncio.wait_for(reader.read(100), 2) == b""
        except ConnectionError:
            return True
        finally:
            writer.close()


async def test_bare_crlf_does_not_keep_a_fresh_connection_open() -> None:
    assert await _closed_while_sending_crlf(b"")


async def test_bare_crlf_does_not_keep_a_connection_open_after_a_request() -> None:
    assert await _closed_while_sending_crlf(get("/x"))


async def test_a_request_after_crlf_is_still_served() -> None:
    app = Recorder()
    assert await exchange(app, b"\r\n" + get("/x", "Connection: close\r\n")) == [(200, b"/x")]


# --- the send timeout (defect 11)


async def test_a_client_that_never_reads_its_stream_is_cut_and_the_app_sees_a_disconnect() -> None:
    cancelled = asyncio.Event()

    async def endless_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        try:
            for _ in range(100_000):  # bounded: 6.4 GB, far more than any socket buffers
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serving(endless_stream, send_timeout_s=0.5) as (state, port):
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up sooner
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, get("/stream"))
        for _ in range(100):  # the once-a-second sweep, faster; the client reads nothing
            await asyncio.sleep(0.1)
            state.sweep(loop.time())
            if cancelled.is_set():
                break
        sock.close()
    assert cancelled.is_set()


async def test_a_client_that_never_reads_a_whole_answer_is_cut_after_it_went_idle() -> None:
    written = asyncio.Event()

    async def big_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        body = b"x" * 32 * 1024 * 1024  # one send: all of it lands in the write buffer at once
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        written.set()

    async with serving(big_answer, send_timeout_s=0.5) as (state, port):
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, get("/big"))
        await asyncio.wait_for(written.wait(), 5)  # the response is complete: the connection is idle
        for _ in range(50):  # the sweep, faster; the client reads nothing
            await asyncio.sleep(0.1)
            state.sweep(loop.time())
            if not state.connections:
                break
        remaining = len(state.connections)
        sock.close()
    assert remaining == 0  # cut, and its 32 MB buffer freed; not left to a close that waits to flush


def test_send_timeout_is_a_server_option_with_a_default() -> None:
    assert parse_config("server: {send_timeout_s: 5}\n").server.send_timeout_s == 5.0
    assert parse_config("server: {}\n").server.send_timeout_s == 60.0


# --- the request target


async def test_a_fragment_in_the_target_is_not_part_of_the_path_or_query() -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        seen.append((scope["path"], scope["raw_path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/v1/models#frag") + get("/a%20b?x=1#frag?y=2")
                     + get("http://h/abs?q#f", "Connection: close\r\n"))
        await until_closed(reader)
        writer.close()
    assert seen == [("/v1/models", b"/v1/models", b""), ("/a b", b"/a%20b", b"x=1"), ("/abs", b"/abs", b"q")]
