"""The memory request bodies may hold while they are read: bounded across all requests and per key.

A body is read only after its caller authenticated (app.py), so these bounds are about callers with
a valid key: however many connections send large bodies at once, the bytes buffered for them stay
under `server.max_body_memory_bytes` (503 `server_busy` beyond it) and one key's under
`server.max_body_memory_per_key_bytes` (429). The bytes are counted while the body arrives and given
back once it has been parsed. When a large amount was given back and nothing is being read, the C
allocator is asked to return its free pages to the OS (glibc's `malloc_trim`, at most once a
second), so the process shrinks again after a burst of large bodies instead of keeping its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

from .errors import GatewayError

__all__ = ["BodyMemory"]

_TRIM_AFTER_BYTES = 32 * 1024 * 1024
_TRIM_EVERY_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class BodyMemory:
    __slots__ = ("_by_key", "_freed", "_last_trim", "_trim", "in_use", "limit", "per_key")

    def __init__(self, limit: int, per_key: int) -> None:
        self.limit = limit
        self.per_key = per_key
        self.in_use = 0
        self._by_key: dict[str | None, int] = {}
        self._freed = 0
        self._last_trim = 0.0
        self._trim = _malloc_trim()

    def take(self, key: str | None, size: int) -> None:
        """Count `size` more bytes buffered for a body of `key`'s; raise if over a bound."""
        if self.in_use + size > self.limit:
            raise GatewayError(503, "The gateway is receiving too many large request bodies at once; retry shortly.",
                               "service_unavailable_error", code="server_busy", headers={"retry-after": "1"})
        held = self._by_key.get(key, 0)
        if held + size > self.per_key:
            raise GatewayError(429, "Too many large request bodies in flight for this API key; retry shortly.",
                               "rate_limit_exceeded", code="body_memory_exceeded", headers={"retry-after": "1"})
        self.in_use += size
        self._by_key[key] = held + size

    def give(self, key: str | None, size: int) -> None:
        """The body of `key`'s that held `size` bytes was parsed or abandoned."""
        if size <= 0:
            return
        self.in_use -= size
        held = self._by_key.get(key, 0) - size
        if held > 0:
            self._by_key[key] = held
        else:
            self._by_key.pop(key, None)
        self._freed += size
        if self._freed >= _TRIM_AFTER_BYTES and self.in_use == 0 and self._trim is not None:
            now = time.monotonic()
            if now - self._last_trim >= _TRIM_EVERY_S:
                self._last_trim = now
                self._freed = 0
                self._trim(0)
