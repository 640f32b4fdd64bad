"""An upstream HTTP response that plays back body pieces as given: for unit tests of the chunk
streams (SSE, AWS event stream) without a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator


class ScriptedResponse:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.released = self.closed = False
        self.headers: dict[str, str] = {}

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    def header(self, name: bytes) -> str | None:
        return self.headers.get(name.decode("latin-1"))

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True
