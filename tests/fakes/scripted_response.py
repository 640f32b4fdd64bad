"""An upstream HTTP response that plays back body pieces as given: for unit tests of the chunk
streams (SSE, AWS event stream) without a socket."""

from __future__ import annotations

import asyncio
import collections


class ScriptedBody:
    """The pieces as `http1.BodyChunks` gives them: an async iterator, or `ready()` and `more()`. All
    of them are there from the start, so `more()` only ever says the body is over."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = collections.deque(pieces)

    def __aiter__(self) -> ScriptedBody:
        return self

    async def __anext__(self) -> bytes:
        if not self._pieces:
            raise StopAsyncIteration
        return self._pieces.popleft()

    def ready(self) -> bytes | None:
        return self._pieces.popleft() if self._pieces else None

    def more(self) -> asyncio.Future[None] | None:
        return None

    def disarm(self) -> None:
        pass

    def pipe(self, sink: object) -> None:
        pass  # (nothing arrives while a reader waits: every piece is there from the start)


class ScriptedResponse:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.released = self.closed = False
        self.headers: dict[str, str] = {}

    def iter_chunks(self) -> ScriptedBody:
        return ScriptedBody(self.pieces)

    def header(self, name: bytes) -> str | None:
        return self.headers.get(name.decode("latin-1"))

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True
