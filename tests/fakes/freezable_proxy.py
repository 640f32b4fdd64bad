"""A TCP proxy on 127.0.0.1 in front of a real server (Redis) that can be frozen: it then accepts and
reads, but never answers, like a Redis that hangs (not one that is down). Only this proxy's path
freezes: the real server, which other tests use, never does.

A connection that saw a byte while frozen stays silent for good (its conversation lost a message),
so replies never arrive late; connections made after `thaw()` work again.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self


class _Conversation:
    __slots__ = ("lost",)

    def __init__(self, lost: bool) -> None:
        self.lost = lost


class FreezableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.frozen = False
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        ready = threading.Event()

        async def serve() -> None:
            self._stopped = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await self._stopped.wait()
                for task in list(self._handlers):
                    task.cancel()
                await asyncio.gather(*self._handlers, return_exceptions=True)

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        return self

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        conversation = _Conversation(lost=self.frozen)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            if not conversation.lost:
                upstream = await asyncio.open_connection(*self.target)
                back = asyncio.ensure_future(self._pump(upstream[0], writer, conversation))
                try:
                    await self._pump(reader, upstream[1], conversation)
                finally:
                    back.cancel()
                    await asyncio.gather(back, return_exceptions=True)
            else:
                await self._pump(reader, None, conversation)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None,
                    conversation: _Conversation) -> None:
        while data := await src.read(65536):
            if self.frozen or conversation.lost or dst is None:
                conversation.lost = True  # swallowed: this connection never answers again
                continue
            dst.write(data)
            await dst.drain()
