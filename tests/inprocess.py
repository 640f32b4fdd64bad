"""Drive the Switchboard ASGI app in-process: lifespan startup once, then requests as ASGI calls.

For tests that send thousands of requests (the fuzz tests): no socket between the test and the
gateway, so each case costs what the gateway does, not a TCP round trip. The app still reaches its
upstreams over real sockets (the fake upstreams). `InProcessApp` owns its event loop; requests are
made from synchronous code (as hypothesis tests are) and each is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from switchboard.app import SwitchboardApp, create_app
from switchboard.config import parse_config


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    frames: list[bytes] = field(default_factory=list)  # the body as the app sent it, one item per send


class _ErrorRecords(logging.Handler):
    """Collects the gateway's error log records (an unhandled exception is logged at ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class InProcessApp:
    def __init__(self, config_text: str, environ: dict[str, str] | None = None) -> None:
        self.app: SwitchboardApp = create_app(parse_config(config_text, environ=environ or {}))
        self.loop = asyncio.new_event_loop()
        self.errors = _ErrorRecords()
        self._lifespan_in: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan_out: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan_task: asyncio.Task[None] | None = None

    def start(self) -> InProcessApp:
        logging.getLogger("switchboard").addHandler(self.errors)
        self.loop.run_until_complete(self._lifespan("lifespan.startup"))
        return self

    def stop(self) -> None:
        try:
            self.loop.run_until_complete(self._lifespan("lifespan.shutdown"))
            if self._lifespan_task is not None:
                self.loop.run_until_complete(self._lifespan_task)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            logging.getLogger("switchboard").removeHandler(self.errors)

    async def _lifespan(self, message_type: str) -> None:
        if self._lifespan_task is None:
            self._lifespan_in, self._lifespan_out = asyncio.Queue(), asyncio.Queue()
            self._lifespan_task = asyncio.ensure_future(
                self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._lifespan_in.get,
                         self._lifespan_out.put))
        assert self._lifespan_in is not None and self._lifespan_out is not None
        await self._lifespan_in.put({"type": message_type})
        reply = await asyncio.wait_for(self._lifespan_out.get(), 10)
        if not reply["type"].endswith(".complete"):
            raise RuntimeError(f"lifespan {message_type} failed: {reply}")

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> Answer:
        """One request; raises TimeoutError if the app has not finished answering within `timeout`."""
        return self.loop.run_until_complete(asyncio.wait_for(self._request(method, path, body, headers or {}),
                                                             timeout))

    async def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": raw_headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8080)}
        finished = asyncio.Event()
        sent_body = False
        answer = Answer(0, {}, b"")

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()  # the client stays until the answer is complete, then leaves
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    answer.frames.append(chunk)
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        finally:
            finished.set()
        if answer.status == 0:
            raise AssertionError("the app returned without starting a response")
        answer.body = b"".join(answer.frames)
        return answer
