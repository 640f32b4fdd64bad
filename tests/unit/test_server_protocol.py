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
