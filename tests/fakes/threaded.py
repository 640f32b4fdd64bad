"""Run an aiohttp fake upstream in its own thread on a free 127.0.0.1 port (sync and async tests alike)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Self

from aiohttp import web


class ThreadedServer:
    """Base of the fake upstreams: subclasses call `super().__init__()`, then add routes to `self.app`."""

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.requests: list[dict[str, Any]] = []  # {path, headers, body} of every request, for assertions
        self.active_streams = 0
        self.cancelled_streams = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._runner = web.AppRunner(self.app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, sock).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
