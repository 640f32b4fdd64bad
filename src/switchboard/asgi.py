"""The minimal ASGI layer: request reading, responses, and streaming with disconnect handling.

Written directly against ASGI (no framework) because this is the hot path of every request.
A streamed body is any async iterator of bytes; when the client disconnects the iterator is
cancelled and closed, which closes the upstream request behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .access.auth import Principal
from .body_memory import BodyMemory
from .errors import GatewayError, bad_request
from .facades import Facade
from .sse import PING

__all__ = ["JSONResponse", "Receive", "Request", "Response", "Scope", "Send", "StreamResponse", "send_response"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

KEEPALIVE_INTERVAL_S = 15.0
# A stream's guard (the disconnect watcher and keep-alive pinger) starts this long after its head:
# most answers finish sooner and never pay for its two tasks and timed wait. Our own server cancels
# a request's task the moment its client goes away, guard or not; behind other ASGI servers the
# watch for `http.disconnect` starts this much later.
GUARD_AFTER_S = 1.0


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body too large: limit is {limit} bytes.", "invalid_request_error",
                        code="request_too_large", retryable=False)


class Request:
    __slots__ = ("_body", "_held", "body_memory", "endpoint", "facade", "headers", "keep_json", "max_body", "method",
                 "path", "principal", "query", "receive", "request_id", "scope", "state")

    def __init__(self, scope: Scope, receive: Receive, path: str, request_id: str, max_body: int,
                 body_memory: BodyMemory | None = None) -> None:
        self.scope = scope
        self.receive = receive
        self.path = path
        self.method: str = scope["method"]
        self.query: bytes = scope.get("query_string", b"")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        self.headers = headers
        self.request_id = request_id
        self.max_body = max_body
        self.body_memory = body_memory
        self.principal: Principal | None = None  # set by authentication, before the body is read
        self.facade: Facade | None = None  # the facade the request came through, if any
        self.endpoint = ""  # the API route (set for facade requests, whose bodies the facade shapes)
        self._body: bytes | bytearray | None = None
        self._held = 0  # bytes of body_memory this request holds
        self.state: dict[str, Any] = {}
        self.keep_json = False  # keep an untouched copy of the parsed body in state["json"] (observability.log_bodies)

    async def body(self) -> bytes | bytearray:
        """The whole body (at most `max_body` bytes), kept for later calls."""
        if self._body is None:
            self._body = await self._read()
        return self._body

    async def _read(self) -> bytes | bytearray:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _too_large(self.max_body)
        memory = self.body_memory
        key = self.principal.key_id if self.principal is not None else None
        held = 0
        try:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError("client disconnected while sending the body")
            body: bytes | bytearray = message.get("body", b"")
            if memory is not None:
                memory.take(key, len(body))
                held = len(body)
            if message.get("more_body", False):  # the rest is still on its way: one growing buffer
                buffer = bytearray(body)
                while True:
                    message = await self.receive()
                    if message["type"] == "http.disconnect":
                        raise asyncio.CancelledError("client disconnected while sending the body")
                    chunk = message.get("body", b"")
                    if len(buffer) + len(chunk) > self.max_body:
                        raise _too_large(self.max_body)
                    if memory is not None:
                        memory.take(key, len(chunk))
                        held += len(chunk)
                    buffer += chunk
                    if not message.get("more_body", False):
                        break
                body = buffer
            elif len(body) > self.max_body:
                raise _too_large(self.max_body)
        except BaseException:
            if memory is not None:
                memory.give(key, held)
            raise
        self._held = held
        return body

    async def json_object(self) -> dict[str, Any]:
        raw = await self.body()
        try:
            if not raw or raw.isspace():
                raise bad_request("The request body is empty; a JSON object is required.")
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise bad_request(f"The request body is not valid JSON: {exc}") from None
            if self.keep_json:
                self.state["json"] = orjson.loads(raw)  # a copy: the headend may change `data` as it goes
        finally:
            self.release_body()
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.")
        if self.facade is not None:
            self.facade.shape(data, self.endpoint)
        return data

    def release_body(self) -> None:
        """The raw body is no longer needed (parsed, or the request is over): drop it, give its memory back."""
        self._body = None
        if self._held:
            assert self.body_memory is not None
            self.body_memory.give(self.principal.key_id if self.principal is not None else None, self._held)
            self._held = 0

    def query_params(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query.decode("latin-1")))


@dataclass(slots=True)
class Response:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def JSONResponse(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers or {})


class LastChunk(bytes):
    """A stream body's last bytes, marked so: sent together with the end of the response (one write
    instead of two); the body is not asked for more after it."""

    __slots__ = ()


@dataclass(slots=True)
class StreamResponse:
    body: AsyncIterable[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"
    # Called with the exception that ended the stream (None on a clean end); cancellation included.
    on_close: Callable[[BaseException | None], None] | None = None


_CONTENT_TYPES = {"application/json": b"application/json", "text/event-stream": b"text/event-stream"}


def _raw_headers(content_type: str, headers: dict[str, str], request_id: str) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-type", _CONTENT_TYPES.get(content_type) or content_type.encode("latin-1")),
           (b"x-request-id", request_id.encode("latin-1"))]
    for name, value in headers.items():
        raw.append((name.encode("latin-1"), value.encode("latin-1")))
    return raw


async def send_response(send: Send, response: Response, request_id: str) -> None:
    raw = _raw_headers(response.content_type, response.headers, request_id)
    raw.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": raw})
    await send({"type": "http.response.body", "body": response.body})


async def send_stream(send: Send, receive: Receive, response: StreamResponse, request_id: str) -> None:
    """Stream the body; a client disconnect cancels the producer. Keep-alive pings fill silences."""
    raw = _raw_headers(response.content_type, response.headers, request_id)
    if response.content_type == "text/event-stream":
        raw.append((b"cache-control", b"no-cache"))
        raw.append((b"x-accel-buffering", b"no"))  # nginx must not buffer the stream
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    producer = asyncio.current_task()
    # Our own server's `send` is a method of its RequestCycle, which writes a body frame at once with
    # `write_more`: a call per frame instead of a message and a coroutine. Under another ASGI server
    # (the transport matrix runs uvicorn and granian) every frame goes through `send`.
    write_more: Callable[[bytes], bool] | None = getattr(getattr(send, "__self__", None), "write_more", None)
    use_writer = getattr(response.body, "use_writer", None)
    if use_writer is not None and write_more is not None:
        def write_frame(frame: bytes) -> bool:
            nonlocal last_sent
            if write_more(frame):
                last_sent = loop.time()
                return True
            return False

        use_writer(write_frame)  # (a relay body writes its frames itself as they arrive)
    disconnected = False

    async def guard() -> None:
        # Watches for the client going away, and sends a comment when the stream has been quiet.
        nonlocal disconnected, last_sent
        receiving = asyncio.ensure_future(receive())
        try:
            while True:
                done, _ = await asyncio.wait({receiving}, timeout=KEEPALIVE_INTERVAL_S)
                if done:
                    if receiving.result()["type"] == "http.disconnect":
                        disconnected = True
                        if producer is not None:
                            producer.cancel()
                        return
                    receiving = asyncio.ensure_future(receive())
                elif loop.time() - last_sent >= KEEPALIVE_INTERVAL_S and response.content_type == "text/event-stream":
                    last_sent = loop.time()
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
        finally:
            receiving.cancel()

    guard_task: asyncio.Future[None] | None = None

    def start_guard() -> None:
        nonlocal guard_task
        guard_task = asyncio.ensure_future(guard())

    guard_start: asyncio.TimerHandle | None = None
    error: BaseException | None = None
    try:
        # Inside the try: if the client is already gone, the body (and the upstream behind it) is still closed.
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        guard_start = loop.call_later(GUARD_AFTER_S, start_guard)
        last: bytes = b""
        async for chunk in response.body:
            if type(chunk) is LastChunk:
                last = chunk
                break
            last_sent = loop.time()
            if write_more is None or not write_more(chunk):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        # Account for the request (usage, token limits, logs) before the client can see the end of
        # the response, so its next request already finds this one counted.
        on_close, response.on_close = response.on_close, None
        if on_close is not None:
            on_close(None)
        await send({"type": "http.response.body", "body": last, "more_body": False})
    except asyncio.CancelledError as exc:
        error = exc
        if not disconnected:
            raise
        # The client left: swallow our own cancellation so the server sees a handled request.
        if (task := asyncio.current_task()) is not None:
            task.uncancel()
    except BaseException as exc:  # recorded for on_close, then re-raised
        error = exc
        raise
    finally:
        if guard_start is not None:
            guard_start.cancel()
        if guard_task is not None:
            guard_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard_task
        aclose = getattr(response.body, "aclose", None)
        if aclose is not None:
            try:  # (not contextlib.suppress: three Python calls on every stream)
                await aclose()
            except Exception:  # the response is over either way; its on_close still runs
                pass
        if response.on_close is not None:
            response.on_close(error)
