"""A small pooled HTTP/1.1 client for upstream calls, built on asyncio protocols and httptools.

Why not aiohttp or httpx: on the gateway's hot path a general-purpose client cost ~240 µs of CPU
per request (measured with py-spy under bench/), more than everything else the gateway does. What
the gateway needs is narrow: POST/GET a JSON body to a few fixed hosts over keep-alive connections,
read a JSON answer or an event stream, with timeouts. This module does exactly that:

- one `HTTP1Client` per provider; a LIFO pool of idle keep-alive connections per origin, at most
  `max_idle_per_origin` of them; TLS with the default verified context;
- the request goes out in one write; the response is parsed by httptools (chunked and
  content-length bodies, body-until-close);
- bounded memory: a response head is at most `MAX_HEAD_BYTES` and `MAX_HEADERS` lines (as the
  server's limit on requests), a body read whole at most `max_response_bytes` (a Content-Length
  over it fails before any body byte is read); a stream is bounded by flow control instead;
- `read_timeout` bounds every wait for bytes (a stream's silence), `deadline` the whole exchange;
- a connection is returned to the pool only after its response was read completely and the
  server allows keep-alive. An idle one is discarded as soon as the server closes it or sends
  anything (a stray byte would be parsed as the next request's answer), and closed once idle for
  `keepalive_s`; the timeout watchdog's tick does that reaping, no timer per connection;
- nothing is ever sent twice: a reused connection that closes before any response byte raises
  `UpstreamConnectionClosed` (the server may or may not have processed the request). Retrying
  is the router's decision, under its `retries` policy;
- failures raise `TimeoutError` or `UpstreamConnectionError` (an OSError) and its subclasses;
  mapping them to gateway errors is the adapter's business.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

from ..trace_context import UPSTREAM_TRACE_HEADERS

log = logging.getLogger(__name__)

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "BodyChunks", "HTTP1Client", "Response", "UpstreamConnectionClosed",
           "UpstreamConnectionError", "UpstreamResponseTooLarge"]

MAX_HEAD_BYTES = 64 * 1024  # status line + headers of one response (interim 1xx ones included)
MAX_HEADERS = 256  # header lines of one response (OpenAI's carry ~25; proxies on the way add some)
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024  # see ProviderConfig.max_response_bytes
_HIGH_WATER = 1 << 20  # pause reading a stream the consumer has not caught up with


class UpstreamConnectionError(OSError):
    """The connection failed or broke, or the server sent something that is not HTTP/1.1."""


class UpstreamConnectionClosed(UpstreamConnectionError):
    """A reused keep-alive connection closed before any byte of the response: the server may have
    closed it while idle as the request crossed, or processed the request and died. Not retried here."""


class UpstreamResponseTooLarge(UpstreamConnectionError):
    """The response's head or body went past a limit; the connection was closed. `code` names which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class _Unsolicited(Exception):
    """Raised from a parser callback: the server started a second response to one request."""


class _Discard(list[tuple[bytes, bytes]]):
    """Where the parser's header callback puts a chunked body's trailers: nowhere (they are never
    response headers, and an endless series of them must not grow memory). Swapped in once the head
    is complete, so the callback itself needs no check per header."""

    def append(self, item: tuple[bytes, bytes]) -> None:
        pass


_TRAILERS = _Discard()


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watchdog: _Watchdog) -> None:
        self.loop = loop
        self.watchdog = watchdog
        self.wait_until = 0.0  # when the current wait times out (loop time)
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.pooled = False  # idle in the pool: any byte that arrives now is unsolicited
        self.idle_since = 0.0
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.disarm()
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []  # where on_header appends
        self.headers = self.raw_headers  # the response's headers, once complete
        self.framed = False  # a Content-Length or Transfer-Encoding header was seen
        self.content_length: bytes | None = None
        self.head_read = 0  # bytes received before the (final) response's headers were complete
        self.headers_done = False
        self.complete = False
        self.error: BaseException | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.body_until_close = False
        self.keep_alive = False
        self.waiter: asyncio.Future[None] | None = None
        self.on_complete: Callable[[_Connection], None] | None = None
        self.sink: Callable[[bytes], bool] | None = None  # BodyChunks.pipe
        self.wait_s = 0.0  # the read timeout of the current wait

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        if self.pooled:
            self.close()  # unsolicited bytes (a 408, garbage): they would be read as the next answer
            return
        if not self.headers_done:
            self.head_read += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamConnectionError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # httptools wraps what a callback (ours) raises in its own error
            if isinstance(cause, UpstreamResponseTooLarge):
                self._fail(cause)
            elif isinstance(cause, _Unsolicited):
                self._fail(UpstreamConnectionError("the server sent a second response to one request"))
            else:
                self._fail(UpstreamConnectionError(f"invalid HTTP response: {exc}"))
            return
        # httptools holds an incomplete header line back until it ends: count what arrives, or one
        # endless header (or an endless series of interim responses) would grow without a callback.
        if not self.headers_done and (self.head_read > MAX_HEAD_BYTES or len(self.raw_headers) > MAX_HEADERS):
            self._fail(_head_too_large())
        elif self.sink is not None and self.chunks:
            self._offer(self.sink)

    def _offer(self, sink: Callable[[bytes], bool]) -> None:
        """The body bytes of this read to the sink, when the reader waits for them (so it had taken
        all before: these are all there is); the reader is woken only for what the sink refuses."""
        if self.waiter is None:
            return  # the reader is busy (perhaps waiting for its client to drain): it reads them itself
        data = self.take()
        try:
            taken = sink(data)
        except Exception:  # a bug in a sink must not lose the bytes: they go the usual way
            log.exception("a response body sink failed; the body is read without it")
            self.sink = None
            taken = False
        if taken:
            self.wait_until = self.loop.time() + self.wait_s  # the wait goes on: a read timeout counts from here
            return
        self.chunks.append(data)  # refused: the reader takes them, as without a sink
        self.buffered = len(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and self.body_until_close and not self.complete and exc is None:
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
            return
        if not self.complete:
            self._fail(UpstreamConnectionError(f"connection lost: {exc}" if exc else "server closed the connection"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the end of the answer, in the same read: the connection is spoiled
            raise _Unsolicited

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.raw_headers.append((name, value))
        if name == b"content-length":
            self.framed = True
            self.content_length = value
        elif name == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        if len(self.raw_headers) > MAX_HEADERS or (
                self.head_read > MAX_HEAD_BYTES and _head_size(self.raw_headers) > MAX_HEAD_BYTES):
            raise _head_too_large()  # (a whole head in one read; over several, data_received checks)
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if 100 <= self.status < 200:  # an interim response (100 Continue): wait for the real one
            self.headers_done = False
            self.raw_headers = []
            self.framed = False
            self.content_length = None
            return
        self.headers = self.raw_headers
        self.raw_headers = _TRAILERS
        # Asked now: llhttp forgets the message's keep-alive flag once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self.body_until_close = not self.framed and self.status not in (204, 304)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        if self.sink is None:
            self._wake()  # (with a sink, data_received offers the read to it first)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return
        self.complete = True
        self._wake()
        on_complete, self.on_complete = self.on_complete, None
        if on_complete is not None:
            if self.chunks or self.error is not None or not self.keep_alive:
                self.close()
            else:
                on_complete(self)

    # -- waiting
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.watchdog.waiting.discard(self)
            if not waiter.done():
                if self.error is not None:
                    waiter.set_exception(self.error)
                else:
                    waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            if self.chunks:  # bytes a sink held back the wake for: the reader takes them before the error
                self._wake()
            self.error = exc
        self._wake()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def wait(self, read_timeout: float, deadline: float | None) -> asyncio.Future[None]:
        """A future done when more of the response arrives (headers, body bytes or its end); failed
        with the connection's error or a TimeoutError. A plain function, not a coroutine: awaited on
        every upstream call, one coroutine level less for each. A caller interrupted while waiting
        (cancelled) calls `disarm()` so the watchdog forgets the wait."""
        if self.error is not None:
            raise self.error
        timeout = read_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - self.loop.time())
            if timeout <= 0:
                raise TimeoutError("upstream deadline exceeded")
        waiter = self.waiter = self.loop.create_future()
        self.wait_s = timeout
        self.wait_until = self.loop.time() + timeout
        watchdog = self.watchdog
        watchdog.waiting.add(self)
        if watchdog.ticking is None:
            watchdog.start(self.loop)
        return waiter

    def disarm(self) -> None:
        self.watchdog.waiting.discard(self)

    def expire(self) -> None:
        """The watchdog: the current wait ran out of time."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("upstream read timed out"))

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def usable(self, now: float, keepalive_s: float) -> bool:
        return not self.closed and self.error is None and self.transport is not None \
            and not self.transport.is_closing() and now - self.idle_since < keepalive_s

    def close(self) -> None:
        self.closed = True
        self.disarm()
        if self.transport is not None:
            self.transport.close()


def _head_size(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)  # with ": " and CRLF


def _head_too_large() -> UpstreamResponseTooLarge:
    return UpstreamResponseTooLarge(f"response headers exceed {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} lines",
                                    "upstream_headers_too_large")


class _Watchdog:
    """One client's timer work, done by one timer ticking every `TICK_S` while there is any: the read
    timeouts of every pending wait, instead of a timer armed and cancelled around each wait (in
    uvloop a timer costs more than the rest of the wait), and closing pooled connections idle too
    long. A wait times out at most one tick late."""

    TICK_S = 0.05

    def __init__(self) -> None:
        self.waiting: set[_Connection] = set()  # connections add and discard themselves (_Connection.wait)
        self.pools: list[_Origin] = []  # the client's origins (a handful), reaped on each tick
        self.ticking: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ticking = loop.call_later(self.TICK_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ticking = None
        now = loop.time()
        if self.waiting:
            expired = [conn for conn in self.waiting if conn.wait_until <= now]
            for conn in expired:
                self.waiting.discard(conn)
                conn.expire()
        idle = False
        for origin in self.pools:
            if origin.idle:
                origin.reap(now)
                idle = idle or bool(origin.idle)
        if self.waiting or idle:
            self.ticking = loop.call_later(self.TICK_S, self._tick, loop)

    def close(self) -> None:
        if self.ticking is not None:
            self.ticking.cancel()
            self.ticking = None
        self.waiting.clear()


class Response:
    """A response whose headers have arrived; read the body with `read()` or `iter_chunks()`."""

    __slots__ = ("_conn", "_deadline", "_headers", "_origin", "_raw_headers", "_read_timeout", "_released", "status")

    def __init__(self, origin: _Origin, conn: _Connection, read_timeout: float, deadline: float | None) -> None:
        self._origin = origin
        self._conn = conn
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._released = False
        self.status = conn.status
        self._raw_headers = conn.headers  # names lowercased by the parser callback
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """All headers, lowercase names; repeated ones joined with ", ". Built on first use."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self._raw_headers:
                key = name.decode("latin-1")
                text = value.rstrip(b" \t").decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            self._headers = headers
        return self._headers

    def header(self, name: bytes) -> str | None:
        """One header by its lowercase name (the first, if repeated): what the hot path asks for, without
        decoding all of them (an OpenAI answer carries twenty-odd)."""
        for key, value in self._raw_headers:
            if key == name:
                return value.rstrip(b" \t").decode("latin-1")
        return None

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as received, in order: (lowercase name, value) pairs. llhttp drops the whitespace
        before a value but keeps any after it, which is not part of the value (RFC 9110 5.5):
        `header()` and `headers` strip it."""
        return self._raw_headers

    async def read(self) -> bytes:
        """The whole body, at most the client's `max_response_bytes` (else UpstreamResponseTooLarge)."""
        conn = self._conn
        origin = self._origin
        limit = origin.max_response_bytes
        length = conn.content_length  # (parsed only when it may be over: as many digits as the limit)
        if length is not None and len(length) >= origin.limit_digits and int(length) > limit:
            self.close()
            raise _body_too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            if conn.chunks:
                data = conn.take()
                size += len(data)
                if size > limit:  # a chunked or until-close body: counted as it arrives
                    self.close()
                    raise _body_too_large(limit)
                parts.append(data)
            if conn.complete:
                break
            try:
                await conn.wait(self._read_timeout, self._deadline)
            except BaseException:
                conn.disarm()
                raise
        self.release()
        return b"".join(parts)

    def iter_chunks(self) -> BodyChunks:
        """The body's pieces as they arrive."""
        return BodyChunks(self._conn, self._read_timeout)

    def release(self) -> None:
        """Done with the response: keep the connection if it is clean, close it otherwise."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.sink = None
        if conn.error is not None or conn.closed or conn.body_until_close or conn.chunks:
            conn.close()
        elif conn.complete:
            if conn.keep_alive:
                self._origin.put(conn)
            else:
                conn.close()
        else:
            # The caller saw all it needed (an SSE stream's terminator) but the end of the HTTP
            # message (the last chunk marker) has not arrived yet: pool the connection when it does.
            conn.on_complete = self._origin.put

    def close(self) -> None:
        """Abandon the response (a client went away): the connection cannot be reused."""
        self._released = True
        self._conn.sink = None
        self._conn.close()


class BodyChunks:
    """A response body's pieces as they arrive: an async iterator, not an async generator, so a reader
    that stops at the stream's own end (an SSE terminator, before the HTTP message's end) can simply
    drop it. A dropped generator that has not finished is closed by the event loop's finalizer hook,
    which schedules `aclose()` through `call_soon_threadsafe`: an eventfd write, a wake-up and a task
    per streamed request."""

    __slots__ = ("_conn", "_read_timeout")

    def __init__(self, conn: _Connection, read_timeout: float) -> None:
        self._conn = conn
        self._read_timeout = read_timeout

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while not conn.chunks:
            if conn.complete:
                raise StopAsyncIteration
            try:
                await conn.wait(self._read_timeout, None)
            except BaseException:
                conn.disarm()
                raise
        return conn.take()

    # The same pieces without a coroutine per piece, for a reader that runs on every read of a stream
    # (SSEChunkStream): `ready()`, and when it has nothing, await `more()` and ask again.
    def ready(self) -> bytes | None:
        """What has arrived and not been taken yet; None when nothing has (or the body is over)."""
        conn = self._conn
        return conn.take() if conn.chunks else None

    def more(self) -> asyncio.Future[None] | None:
        """After `ready()` gave None: a future done when more arrives (or failed: the connection's
        error, a read timeout), or None at the body's end. A reader interrupted while awaiting it
        (cancelled, failed) calls `disarm()`."""
        conn = self._conn
        return None if conn.complete else conn.wait(self._read_timeout, None)

    def disarm(self) -> None:
        self._conn.disarm()

    def pipe(self, sink: Callable[[bytes], bool] | None) -> None:
        """Offer what each read brings while the reader waits in `more()` (having taken all before) to
        `sink` first, from the connection's callback: True, it took the bytes, which the reader never
        sees, and the reader's wait goes on; False, they are kept for `ready()` and the reader woken,
        as without a sink. The bytes are what `ready()` would have given (one read's, joined), so the
        order holds and nothing is offered twice. None stops it."""
        self._conn.sink = sink


def _body_too_large(limit: int) -> UpstreamResponseTooLarge:
    return UpstreamResponseTooLarge(f"response body exceeds {limit} bytes", "upstream_response_too_large")


class _Origin:
    """The pool of connections to one scheme://host:port."""

    def __init__(self, scheme: str, host: str, port: int, connect_timeout: float, keepalive_s: float,
                 max_idle: int, max_response_bytes: int, watchdog: _Watchdog) -> None:
        self.watchdog = watchdog
        self.max_response_bytes = max_response_bytes
        self.limit_digits = len(str(max_response_bytes))
        self.host = host
        self.port = port
        self.tls = ssl.create_default_context() if scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self.idle: collections.deque[_Connection] = collections.deque()
        default_port = 443 if scheme == "https" else 80
        self.host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            self.host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"

    def get(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        now = loop.time()
        while self.idle:
            conn = self.idle.pop()
            conn.pooled = False
            if conn.usable(now, self.keepalive_s):
                conn._reset()
                conn.reused = True
                return conn
            conn.close()
        return None

    def put(self, conn: _Connection) -> None:
        conn.pooled = True
        conn.idle_since = conn.loop.time()
        if len(self.idle) >= self.max_idle:
            self.idle.popleft().close()
        self.idle.append(conn)
        if self.watchdog.ticking is None:
            self.watchdog.start(conn.loop)

    def reap(self, now: float) -> None:
        """Close the connections idle for `keepalive_s` (the oldest are on the left), and the dead ones
        found there."""
        idle = self.idle
        limit = now - self.keepalive_s
        while idle and (idle[0].idle_since <= limit or idle[0].closed):
            idle.popleft().close()

    async def connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        conn = _Connection(loop, self.watchdog)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port, ssl=self.tls,
                                             server_hostname=self.host if self.tls else None)
        except TimeoutError:
            conn.close()
            raise TimeoutError(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class HTTP1Client:
    """Keep-alive HTTP/1.1 requests to a handful of origins."""

    def __init__(self, connect_timeout: float = 10.0, keepalive_s: float = 30.0, max_idle_per_origin: int = 256,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, user_agent: str = "switchboard",
                 propagate: bool = False) -> None:
        if max_idle_per_origin < 1 or max_response_bytes < 1:
            raise ValueError("max_idle_per_origin and max_response_bytes must be at least 1")
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle_per_origin
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent.encode()
        # Tracing configured: each request carries the `traceparent` of the attempt span it runs in.
        self.propagate = propagate
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        # Request heads are made of a few fixed parts: the request line with Host/User-Agent per
        # (method, URL), and the encoded extra headers per distinct header set (a provider key's).
        self._prefixes: dict[tuple[str, str], tuple[_Origin, bytes]] = {}
        self._header_blocks: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._watchdog = _Watchdog()
        self._closed = False

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        """The origin and request target of a URL (request() caches what it builds from them)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamConnectionError(f"unsupported URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(parts.scheme, parts.hostname, port, self.connect_timeout,
                                                  self.keepalive_s, self.max_idle, self.max_response_bytes,
                                                  self._watchdog)
            self._watchdog.pools.append(origin)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return origin, path.encode()

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      read_timeout: float, total_timeout: float | None = None) -> Response:
        """Send a request and return once the response headers arrived (any status)."""
        if self._closed:
            raise UpstreamConnectionError("client is closed")
        loop = asyncio.get_running_loop()
        found = self._prefixes.get((method, url))
        if found is None:
            origin, path = self._target(url)
            found = (origin, b"".join((method.encode(), b" ", path, b" HTTP/1.1\r\nHost: ", origin.host_header.encode(),
                                       b"\r\nUser-Agent: ", self.user_agent, b"\r\nAccept-Encoding: identity\r\n")))
            if len(self._prefixes) < 1024:  # URLs are a few fixed endpoints; never let this grow without bound
                self._prefixes[(method, url)] = found
        origin, prefix = found
        deadline = loop.time() + total_timeout if total_timeout is not None else None
        header_key = tuple(headers.items())
        block = self._header_blocks.get(header_key)
        if block is None:
            block = b"".join(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
                             for name, value in header_key)
            if len(self._header_blocks) < 1024:  # a few per provider key; never let it grow without bound
                self._header_blocks[header_key] = block
        if self.propagate:
            block += UPSTREAM_TRACE_HEADERS.get()
        if body or method in ("POST", "PUT", "PATCH"):
            payload = b"%b%bContent-Length: %d\r\n\r\n%b" % (prefix, block, len(body), body)
        else:
            payload = b"%b%b\r\n" % (prefix, block)
        conn = origin.get(loop)
        if conn is None:
            conn = await origin.connect(loop)
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while not conn.headers_done:
                await conn.wait(read_timeout, deadline)
        except UpstreamConnectionError as exc:
            conn.close()
            if conn.reused and not conn.head_read:  # not a byte of the response arrived
                raise UpstreamConnectionClosed(f"a reused connection closed before any response byte ({exc})") from exc
            raise
        except BaseException:
            conn.close()
            raise
        return Response(origin, conn, read_timeout, deadline)

    async def aclose(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
        self._watchdog.pools.clear()
        self._prefixes.clear()
        self._header_blocks.clear()
        self._watchdog.close()

