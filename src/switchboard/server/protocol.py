"""HTTP/1.1 for one client connection, speaking ASGI 3 to the application.

`HttpProtocol` is an asyncio protocol: httptools (llhttp, the parser of Node.js) parses requests,
each request becomes a `RequestCycle` whose `receive`/`send` are the ASGI callables, and the app
runs as one task per request. What it does that general-purpose servers do not, because the
gateway's requests are small and many:

- a response's status line, headers and first body bytes leave in one `write` (one syscall, one
  TCP segment for a typical completion): `http.response.start` is held until the first body message;
- nothing per request that the gateway does not read (no access-log formatting, no proxy-header
  rewriting, no regex over response headers);
- the timeouts (idle keep-alive, a request too slow to arrive, a client that does not read what is
  sent to it) are enforced by a once-a-second sweep (`ServerState.sweep`) instead of timers armed
  and cancelled around every request.

Also handled: pipelined requests of any depth (answered in order; reading pauses while one waits,
and past MAX_PIPELINE requests queued what was read stays unparsed until answers go out), request
bodies in any framing llhttp accepts (Content-Length or chunked) with read back-pressure,
`Expect: 100-continue`, HEAD, HTTP/1.0 clients, write back-pressure (`send` waits for the transport
to drain, up to the send timeout), client disconnects (`receive` returns `http.disconnect`; later
`send`s are dropped), and malformed or oversized requests: the requests received whole before one
still get their answers, in order, then an OpenAI-format error for it, then the connection closes
(`_stop_parsing`). Bytes after a request that ends the connection (`Connection: close`, HTTP/1.0)
are not an error: that request is answered, then the connection closes. A connection is closed
after its last response in two steps (a lingering close, `_linger_close`), so that what the client
still sends cannot turn into a reset that destroys that response. Only request bytes count as
activity: the empty lines allowed between requests do not hold an idle connection open. A
`#fragment` in the request target (never sent by a conforming client) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import httptools
import orjson

__all__ = ["MAX_HEADER_BYTES", "HttpProtocol", "RequestCycle", "ServerState"]

log = logging.getLogger("switchboard.server")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; more is answered with 431
MAX_HEADERS = 128  # header lines per request; more is answered with 431
HEAD_TIMEOUT_S = 30.0  # a request line + headers (or a body) that takes longer gets a 408
MAX_PIPELINE = 32  # requests queued on one connection past which what was read waits unparsed
_PIECE = 8 * 1024  # a longer read is parsed in pieces of this size, so a full pipeline stops between two
_READ_SLACK = 256 * 1024  # the most one read from the socket can bring
_LINGER_S = 2.0  # after the last response, how long what the client still sends is read and dropped
BODY_HIGH_WATER = 256 * 1024  # buffered, unread request body above which reading pauses
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT = {"type": "http.disconnect"}

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 307: "Temporary Redirect",
    308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n".encode()


def _error_bytes(status: int, message: str, code: str, date: bytes) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return b"".join((_status_line(status), date, b"content-type: application/json\r\ncontent-length: ",
                     str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body))


class ServerState:
    """What the connections of one server process share: the app, the open connections, the
    current `date` header, the keep-alive and send timeouts, and whether the server is draining."""

    def __init__(self, app: ASGIApp, keepalive_timeout_s: float = 75.0, root_path: str = "",
                 send_timeout_s: float = 60.0) -> None:
        self.app = app
        self.keepalive_timeout_s = keepalive_timeout_s
        self.send_timeout_s = send_timeout_s
        self.root_path = root_path
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self.all_closed: asyncio.Event | None = None  # set by drain(); fires when the last connection closes
        self.date_header = b""
        self.refresh_date()

    def refresh_date(self) -> None:
        from email.utils import formatdate

        self.date_header = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"

    def sweep(self, now: float) -> None:
        """Once a second: the `date` header, closing keep-alive connections idle too long, a 408
        for a request whose head, or body, has trickled in for longer than HEAD_TIMEOUT_S, and
        cutting a connection whose client has read nothing of its response for `send_timeout_s`."""
        self.refresh_date()
        limit = now - self.keepalive_timeout_s
        slow = now - HEAD_TIMEOUT_S
        unread = now - self.send_timeout_s
        for conn in list(self.connections):
            # A client that stopped reading, checked first: an answer written whole leaves the connection
            # idle (or lingering) with that answer still in the write buffer, which a close would wait on.
            if conn.write_stalled_since is not None and conn.not_read_since(now, unread):
                conn.send_timed_out()
            elif conn.idle_since is not None:
                if conn.idle_since < limit:
                    conn.close()
            elif conn.linger_until is not None:
                if conn.linger_until < now:
                    conn.linger_expired(now)
            elif conn.stalled_since(slow):
                conn.timed_out()

    def drain(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        self.draining = True
        self.all_closed = asyncio.Event()
        if not self.connections:
            self.all_closed.set()
        for conn in list(self.connections):
            conn.keep_alive = False
            if not conn.cycles:  # idle, or still sending a request head: nothing to finish
                conn.close()


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("_closing", "_drain_waiter", "_expect_continue", "_final", "_head_read", "_header_bytes", "_headers",
                 "_in_head", "_parsing", "_read_paused", "_unparsed", "_url", "_write_backlog", "client", "cycles",
                 "idle_since", "keep_alive", "linger_until", "loop", "parser", "reading_since", "server", "state",
                 "transport", "write_paused", "write_stalled_since")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.cycles: deque[RequestCycle] = deque()  # the first one is answering; later ones are pipelined
        self._parsing: RequestCycle | None = None  # the request whose body is being read
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head_read = 0
        self._expect_continue = False
        self._in_head = False  # between a request's first byte and the end of its headers
        # No more requests are read on this connection (an error, or the last request ended it): what
        # the client still sends is dropped, the queued requests are answered, then `_final` (an error
        # response) if any, then the connection closes.
        self._closing = False
        self._final: bytes | None = None
        self._unparsed: bytes | None = None  # read while MAX_PIPELINE requests were queued: parsed later
        self.reading_since: float | None = None  # when the request being read (head or body) started
        self.keep_alive = True
        self.idle_since: float | None = None  # no request queued nor being read since then
        self.linger_until: float | None = None  # our side is closed; the sweep closes the rest then
        self.write_paused = False
        self.write_stalled_since: float | None = None  # the client last read what we wrote (while paused)
        self._write_backlog = 0  # the transport's write buffer at the last sweep, while paused
        self._read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None

    # --- connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.idle_since = self.loop.time()
        if self.state.draining:
            self.keep_alive = False
        sockname = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
        if isinstance(sockname, tuple):
            self.server = (str(sockname[0]), int(sockname[1]))
        if isinstance(peername, tuple):
            self.client = (str(peername[0]), int(peername[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        if state.all_closed is not None and not state.connections:
            state.all_closed.set()
        self.idle_since = None
        for cycle in self.cycles:
            cycle.disconnected = True
            cycle.wake()
            # Nobody is left to answer: stop the work (and the upstream request behind it). A stream
            # also learns of it through receive(); a non-stream request only this way.
            if cycle.task is not None and not cycle.response_complete:
                cycle.task.cancel()
        self.cycles.clear()
        self._parsing = None
        self._unparsed = self._final = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # no more requests on this connection: what the client still sends is dropped
        if self._unparsed is not None:  # the pipeline is full (reading is paused; this read was under way)
            self._unparsed += data
        elif len(data) <= _PIECE:
            self._parse(data)
        else:
            self._parse_in_pieces(data)

    def _parse_in_pieces(self, data: bytes) -> None:
        """Parse a long read piece by piece, stopping between two pieces once MAX_PIPELINE requests
        are queued: the rest waits, unparsed and with reading paused, until answers go out. (llhttp
        cannot stop within what it is given, so a piece holds the few requests queued past the bound.)"""
        view = memoryview(data)
        for at in range(0, len(data), _PIECE):
            if len(self.cycles) >= MAX_PIPELINE:
                self._unparsed = bytes(view[at:])
                self.pause_reading()
                return
            self._parse(view[at:at + _PIECE])
            if self._closing:
                return

    def _parse(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades (WebSocket, h2c) are not offered: the request is answered as plain HTTP/1.1, and
            # what follows it on this connection is not HTTP/1.1, so the connection ends with it.
            self._stop_parsing(None)
            return
        except httptools.HttpParserError as exc:
            # httptools wraps an exception raised in a callback (ours) in its own.
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._fail(431, f"Request line and headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} lines.",
                           "headers_too_large")
            elif self.cycles and not self.cycles[-1].keep_alive and self._parsing is None:
                # "Data after `Connection: close`" (or after an HTTP/1.0 request): the connection ends with
                # the last request, so what follows is not a request of its own and gets no answer.
                self._stop_parsing(None)
            else:
                self._fail(400, f"Invalid HTTP request: {exc}", "invalid_http_request")
            return
        if self._in_head:
            # httptools joins the pieces of one header itself and calls on_header only when it is whole:
            # count what arrives while a head stays incomplete, or one endless header would go unchecked.
            # (The read that started the head may also hold the end of the previous request: hence the
            # slack of one read.)
            self._head_read += len(data)
            if self._head_read > MAX_HEADER_BYTES + _READ_SLACK:
                self._fail(431, f"Request line and headers exceed {MAX_HEADER_BYTES} bytes.", "headers_too_large")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_stalled_since = self.loop.time()
        self._write_backlog = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_stalled_since = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.transport.is_closing():
            waiter = self._drain_waiter
            if waiter is None or waiter.done():  # the stream and its keep-alive pinger may both wait
                waiter = self._drain_waiter = self.loop.create_future()
            await waiter

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def stalled_since(self, since: float) -> bool:
        """Reading a request (its head from the start, its body from the last bytes) for longer than
        that, while we were not the ones pausing the reads."""
        return self.reading_since is not None and self.reading_since < since and not self._read_paused

    def timed_out(self) -> None:
        """A request too slow to arrive (the sweep): the requests before it are answered, then a 408."""
        self._fail(408, f"The request took longer than {HEAD_TIMEOUT_S:g} s to arrive.", "request_timeout")

    def not_read_since(self, now: float, since: float) -> bool:
        """The sweep, while writing is paused: has the client read nothing of what we sent since then?
        A shrinking write buffer is a client reading, however slowly (nginx's `send_timeout` counts
        the same way: the time between two successful writes)."""
        backlog = self.transport.get_write_buffer_size()
        if backlog < self._write_backlog:
            self.write_stalled_since = now
        self._write_backlog = backlog
        return self.write_stalled_since is not None and self.write_stalled_since < since

    def send_timed_out(self) -> None:
        """A client that stopped reading its response: cut the connection (what is buffered for it
        goes too), so the app sees a disconnect and the work behind the response stops."""
        log.info("closing a connection whose client read nothing for %g s", self.state.send_timeout_s)
        self.write_stalled_since = None
        self.transport.abort()

    def _fail(self, status: int, message: str, code: str) -> None:
        """The request being read is bad: answer it with this error, after the ones before it."""
        self._stop_parsing(_error_bytes(status, message, code, self.state.date_header))

    def _stop_parsing(self, final: bytes | None) -> None:
        """No more requests are read on this connection. The requests received whole still get their
        answers, in order; then `final` (the error response for the request that could not be read),
        if any; then the connection closes."""
        if self._closing:
            return
        self._closing = True
        self._in_head = False
        self.reading_since = None
        self._unparsed = None
        broken, self._parsing = self._parsing, None  # a request whose body broke off
        if broken is not None:
            if broken.response_complete:  # answered early already: the rest of its body needs no answer
                final = None
            elif broken.response_started and broken.head is None:
                self.transport.close()  # part of its answer is out: it can be neither finished nor replaced
                return
            else:  # `final` answers it instead: its app sees a disconnect, and what it sends is dropped
                broken.disconnected = True
                if self.cycles and self.cycles[-1] is broken:
                    self.cycles.pop()
                if broken.task is not None:
                    broken.task.cancel()
                broken.wake()
        if final is None and self.cycles and not self.cycles[-1].response_started:
            self.cycles[-1].keep_alive = False  # the last answer says `connection: close`
        if self._read_paused:  # read on, and drop, so that no unread bytes make the close a reset
            self._read_paused = False
            self.transport.resume_reading()
        if self.cycles:
            self._final = final  # written by response_done after the last answer
        else:
            self._finish(final)

    def _finish(self, final: bytes | None) -> None:
        """Close after the last answer, with `final` (an error response) first if there is one."""
        self._final = None
        if self.transport.is_closing():
            return
        if final is not None:
            self.transport.write(final)
        self._linger_close()

    def _linger_close(self) -> None:
        """Close after the last response, in two steps (RFC 9112 9.6): closing with unread bytes from
        the client, or with bytes still on their way, would make the kernel answer them with a reset,
        which can destroy that response before the client reads it. So end our side, drop what still
        comes, and close when the client does (on a `connection: close` answer it does at once), or
        at the sweep after _LINGER_S."""
        transport = self.transport
        if transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._closing = True
        self.idle_since = None
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        transport.write_eof()
        self.linger_until = self.loop.time() + _LINGER_S
        self._write_backlog = transport.get_write_buffer_size()

    def linger_expired(self, now: float) -> None:
        """The sweep, _LINGER_S after our side was closed: close, unless the client is still reading
        the last response (then wait on); if it reads none of it, cut."""
        backlog = self.transport.get_write_buffer_size()
        if backlog == 0:
            self.transport.close()
        elif backlog < self._write_backlog:
            self._write_backlog = backlog
            self.linger_until = now + _LINGER_S
        else:
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and len(self.cycles) <= 1 and self._unparsed is None:
            self._read_paused = False
            self.transport.resume_reading()

    # --- parser callbacks (httptools calls these by name)

    def on_message_begin(self) -> None:
        self._expect_continue = False
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._head_read = 0
        self._in_head = True
        self.reading_since = self.loop.time()
        self.idle_since = None  # a request's first byte: the empty lines allowed before one do not count

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: never a request header (RFC 9110 6.5.1)
        self._header_bytes += len(name) + len(value) + 4  # with ": " and CRLF
        if self._header_bytes > MAX_HEADER_BYTES or len(self._headers) >= MAX_HEADERS:
            raise _HeadersTooLarge
        name = name.lower()
        self._headers.append((name, value.rstrip()))  # llhttp drops the whitespace before a value, not after
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        http_version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        url = self._url
        if 35 in url:  # "#": a fragment is the client's own (RFC 9110 4.2.5) and has no place in the path
            url = url.partition(b"#")[0]
        if url[:1] != b"/":  # absolute-form or asterisk-form
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        else:
            raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        state = self.state
        scope = {
            "type": "http", "asgi": ASGI_VERSION, "http_version": http_version, "server": self.server,
            "client": self.client, "scheme": "http", "method": method, "root_path": state.root_path, "path": path,
            "raw_path": raw_path, "query_string": query, "headers": self._headers,
        }
        self._headers = []  # the scope owns that list now; an idle connection keeps none
        keep_alive = self.keep_alive and parser.should_keep_alive()
        cycle = RequestCycle(self, scope, keep_alive, http_version == "1.0")
        cycle.expect_continue = self._expect_continue
        self._parsing = cycle
        self.cycles.append(cycle)
        if len(self.cycles) == 1:
            cycle.start()
        else:
            self.pause_reading()  # pipelined: answer the earlier ones first

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is None or cycle.response_complete:
            return
        self.reading_since = self.loop.time()  # a body is slow only when it stalls
        cycle.body.append(body)
        cycle.body_size += len(body)
        if cycle.body_size > BODY_HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self.reading_since = None
        cycle = self._parsing
        if cycle is None:
            return
        cycle.more_body = False
        self._parsing = None
        cycle.wake()

    # --- request lifecycle

    def response_done(self, cycle: RequestCycle) -> None:
        """The response to the first pending request is complete: go on to the next, or idle."""
        cycles = self.cycles
        if cycles and cycles[0] is cycle:
            cycles.popleft()
        if not cycle.keep_alive or not self.keep_alive:
            self._linger_close()
            return
        # A response sent before its request's body was all read (an early error) leaves the rest of
        # that body to the parser, which drops it (on_body ignores complete cycles) and reads on.
        if cycles:
            cycles[0].start()
            if self._unparsed is not None and len(cycles) < MAX_PIPELINE:
                held, self._unparsed = self._unparsed, None
                self._parse_in_pieces(held)
        elif self._closing:
            self._finish(self._final)
            return
        else:
            self.idle_since = self.loop.time()
        self.resume_reading()


class _HeadersTooLarge(Exception):
    pass


class RequestCycle:
    """One request and its response: the ASGI `receive` and `send` of a single app call."""

    __slots__ = ("body", "body_delivered", "body_size", "chunked", "conn", "disconnected", "expect_continue",
                 "head", "http10", "is_head", "keep_alive", "more_body", "remaining", "response_complete",
                 "response_started", "scope", "task", "waiter")

    def __init__(self, conn: HttpProtocol, scope: dict[str, Any], keep_alive: bool, http10: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.http10 = http10
        self.is_head = scope["method"] == "HEAD"
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.body_delivered = False
        self.expect_continue = False
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.head: bytes | None = None  # status line + headers, held until the first body bytes
        self.chunked = False
        self.remaining: int | None = None  # declared content-length not yet sent
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = self.conn.loop.create_task(self.run())

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def run(self) -> None:
        try:
            await self.conn.state.app(self.scope, self.receive, self.send)
        except Exception as exc:
            log.error("exception in the ASGI application", exc_info=exc)
            self._end_unfinished()
        except BaseException:  # cancelled (shutdown past its grace), or the process is exiting
            self._end_unfinished()
            raise
        else:
            if not self.response_complete and not self.disconnected:
                log.error("the ASGI application returned %s", "before completing its response"
                          if self.response_started else "without starting a response")
                self._end_unfinished()
        finally:
            self.task = None

    def _end_unfinished(self) -> None:
        """The app is done and its response is not: a 500 if nothing was sent yet; otherwise the
        connection is cut, so the client cannot mistake what it got for a complete response."""
        if self.response_complete or self.disconnected:
            return
        if self.response_started and self.head is None:  # bytes of it went out already
            self.conn.transport.close()
            return
        self.keep_alive = False
        self.conn.transport.write(_error_bytes(500, "The server had an error while processing your request.",
                                               "internal_error", self.conn.state.date_header))
        self.response_complete = True
        self.conn.response_done(self)

    # --- ASGI receive

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected or self.response_complete:
                return _DISCONNECT
            if self.body_delivered:
                await self._wait()  # from now on only a disconnect (or the response's end) is news
                continue
            if self.body or not self.more_body:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body.clear()
                self.body_size = 0
                more = self.more_body
                self.body_delivered = not more
                self.conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            if self.expect_continue and not self.response_started:
                self.expect_continue = False
                self.conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.conn.resume_reading()
            await self._wait()

    async def _wait(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # two receivers (a body reader and a disconnect watcher) share one
            waiter = self.waiter = self.conn.loop.create_future()
        await waiter

    # --- ASGI send

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        if kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("ASGI: http.response.body sent before http.response.start")
            if self.response_complete:
                raise RuntimeError("ASGI: http.response.body sent after the response was complete")
            self._write_body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self._build_head(message["status"], message.get("headers", ()))
            self.response_started = True  # after the head was accepted: a refused one still gets a 500
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} on an HTTP connection")

    def write_more(self, body: bytes) -> bool:
        """`send({"type": "http.response.body", "body": body, "more_body": True})` done now, without a
        coroutine and a message: a stream's relay calls it for every frame (asgi.send_stream finds it on
        our own server's `send`). False, having written nothing, when the message must go through
        `send` instead: the transport is paused (send waits for it to drain), the client left (send
        drops it), or the response is not open for body bytes (send raises)."""
        if self.conn.write_paused or self.disconnected or not self.response_started or self.response_complete:
            return False
        self._write_body(body, True)
        return True

    def _build_head(self, status: int, headers: Any) -> None:
        parts = [_status_line(status), self.conn.state.date_header]
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                self.remaining = int(value)
                continue  # written once, below
            if lowered == b"transfer-encoding":
                continue  # the framing is ours to choose
            if lowered == b"connection":
                if b"close" in value.lower():
                    self.keep_alive = False
                continue
            parts += (lowered, b": ", value, b"\r\n")
        lines = 2 + (len(parts) - 2) // 4  # status line, date, the headers so far
        if self.remaining is not None:
            if status != 204:  # a 204 never carries one; a 304's is the representation's length
                parts += (b"content-length: ", str(self.remaining).encode(), b"\r\n")
                lines += 1
            if status in (204, 304):  # either way there is no body
                self.remaining = 0
        elif self.is_head or status in (204, 304) or 100 <= status < 200:
            self.remaining = 0
        elif self.http10:
            self.keep_alive = False  # HTTP/1.0 has no chunked framing: the body ends when the connection does
        else:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        if self.expect_continue and self.more_body:
            # Answered before asking for the body the client is holding back: what it sends next
            # might be that body or a new request, so the connection cannot go on.
            self.keep_alive = False
        if not self.keep_alive or not self.conn.keep_alive:
            parts.append(b"connection: close\r\n")
            lines += 1
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n")  # HTTP/1.0 closes unless told otherwise
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # A CR or LF inside a header name or value would forge headers or a second response. Checked
        # once over the whole block by counting line ends: `in` on each small bytes object costs
        # ~0.3 us (the buffer protocol), more than all the rest of this method.
        if head.count(b"\n") != lines + 1 or head.count(b"\r") != lines + 1:
            raise RuntimeError("ASGI: a response header name or value contains CR or LF")
        self.head = head

    def _write_body(self, body: bytes, more_body: bool) -> None:
        head, self.head = self.head, None
        if self.is_head:
            out = head or b""
        elif self.chunked:
            if body:
                out = b"%x\r\n%b\r\n" % (len(body), body)
                if not more_body:
                    out += b"0\r\n\r\n"
            else:
                out = b"" if more_body else b"0\r\n\r\n"
            if head is not None:
                out = head + out
        else:
            if self.remaining is not None:
                self.remaining -= len(body)
                if self.remaining < 0:
                    raise RuntimeError("ASGI: response body longer than its content-length")
            out = head + body if head is not None else body
        if out:
            self.conn.transport.write(out)
        if not more_body:
            if self.remaining and not self.is_head:
                self.conn.transport.close()
                raise RuntimeError("ASGI: response body shorter than its content-length")
            self.response_complete = True
            self.wake()
            self.conn.response_done(self)
