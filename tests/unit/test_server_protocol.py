"""server/protocol.py with ASGI apps that misbehave: what the client sees when the app raises before
or after starting its response, returns without one, or sends a header that would split it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.server.protocol import HttpProtocol, ServerState

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


async def exchange(app: App, request: bytes = REQUEST) -> bytes:
    """Everything the server sends back on one connection until it closes it (or goes quiet)."""
    state = ServerState(app)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        chunks = []
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 2):
                chunks.append(chunk)
        except TimeoutError:
            pass
        writer.close()
        for conn in list(state.connections):  # kept alive or lingering: not past this test's loop
            conn.transport.close()
        await asyncio.sleep(0)
        return b"".join(chunks)


async def start(send: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers or []})


async def test_an_app_that_raises_before_answering_gets_a_500_in_openai_format() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    raw = await exchange(app)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
    assert json.loads(body)["error"]["code"] == "internal_error"


async def test_an_app_that_raises_mid_body_has_its_connection_cut() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    raw = await exchange(app)
    assert raw.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in raw
    assert b"partial" in raw and not raw.endswith(b"0\r\n\r\n")  # no last chunk: not a complete response


async def test_an_app_that_returns_without_answering_gets_a_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    assert (await exchange(app)).startswith(b"HTTP/1.1 500 ")


async def test_a_header_value_with_crlf_is_refused_not_sent() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send, [(b"x-evil", b"a\r\nset-cookie: stolen")])
        await send({"type": "http.response.body", "body": b"never"})

    raw = await exchange(app)
    assert raw.startswith(b"HTTP/1.1 500 ") and b"set-cookie" not in raw and b"never" not in raw


async def test_request_body_and_scope_reach_the_app() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.update(path=scope["path"], query=scope["query_string"], body=message["body"],
                    more=message["more_body"], headers=dict(scope["headers"]))
        await start(send, [(b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"ok"})

    raw = await exchange(app, b"POST /a%20b?x=1 HTTP/1.1\r\nHost: t\r\nX-Mixed-Case: V\r\n"
                              b"Content-Length: 5\r\n\r\nhello")
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nok")
    assert seen["path"] == "/a b" and seen["query"] == b"x=1" and seen["body"] == b"hello" and not seen["more"]
    assert seen["headers"][b"x-mixed-case"] == b"V"


async def echo_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive())["more_body"]:
        pass
    body = json.dumps({k.decode(): v.decode() for k, v in scope["headers"]}).encode()
    await start(send, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})


async def test_a_chunked_body_trailer_is_not_a_request_header() -> None:
    raw = await exchange(echo_headers, b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"2\r\nhi\r\n0\r\nAuthorization: Bearer sneaky\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert "authorization" not in json.loads(raw.partition(b"\r\n\r\n")[2])


async def test_one_endless_header_gets_431_instead_of_growing() -> None:
    state = ServerState(echo_headers)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ")
        try:
            for _ in range(200):  # up to 12.8 MB, never ending the header
                writer.write(b"a" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        for conn in list(state.connections):
            conn.transport.close()
        await asyncio.sleep(0)
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_too_many_headers_get_431() -> None:
    many = b"".join(b"h%d: v\r\n" % i for i in range(200))
    raw = await exchange(echo_headers, b"GET /x HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")


async def test_an_answer_before_a_held_back_body_ends_the_connection() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # answers without reading
        await start(send, [(b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"no"})

    raw = await exchange(app, b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and b"connection: close" in raw and b"100 Continue" not in raw


async def test_a_client_that_leaves_cancels_the_work_of_its_unanswered_request() -> None:
    cancelled = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)  # a slow upstream, for a non-stream request
        except asyncio.CancelledError:
            cancelled.set()
            raise

    state = ServerState(app)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(REQUEST)
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 5)
        await asyncio.sleep(0)


async def test_http_1_0_keep_alive_is_said_in_the_answer() -> None:
    raw = await exchange(echo_headers, b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and b"connection: keep-alive" in raw


async def test_an_app_that_raises_after_start_but_before_any_body_still_gets_a_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send)
        raise ValueError("boom")

    assert (await exchange(app)).startswith(b"HTTP/1.1 500 ")


async def test_whitespace_after_a_header_value_is_not_part_of_it() -> None:
    raw = await exchange(echo_headers, b"GET /x HTTP/1.1\r\nHost: t\r\nAuthorization:  Bearer k \t \r\n\r\n")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["authorization"] == "Bearer k"  # RFC 9110 5.5
