"""In-process shared state (the default): correct for one process, not shared between instances.

Each method runs without awaiting, so on one event loop it is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .base import Bucket, refill

__all__ = ["MemoryState"]


class MemoryState:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill, monotonic)
        self._values: dict[str, tuple[float, float | None]] = {}  # key -> (value, expiry or None)
        self._clock = time.monotonic

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def take(self, buckets: Sequence[Bucket]) -> tuple[bool, list[float]]:
        now = self._clock()
        levels = []
        for b in buckets:
            tokens, last = self._buckets.get(b.key, (b.capacity, now))
            levels.append(refill(tokens, last, now, b))
        allowed = all(level >= b.need for level, b in zip(levels, buckets, strict=True))
        if allowed:
            levels = [level - b.cost for level, b in zip(levels, buckets, strict=True)]
        for level, b in zip(levels, buckets, strict=True):
            self._buckets[b.key] = (level, now)
        self._sweep_buckets(now, buckets)
        return allowed, levels

    def _sweep_buckets(self, now: float, recent: Sequence[Bucket]) -> None:
        # Bound memory: a full bucket is the same as an absent one, so forget those that are idle.
        if len(self._buckets) > 10000:
            keep = {b.key for b in recent}
            self._buckets = {k: v for k, v in self._buckets.items() if k in keep or now - v[1] < 120}

    def _live(self, key: str) -> float | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expiry = item
        if expiry is not None and expiry <= self._clock():
            del self._values[key]
            return None
        return value

    async def get_float(self, key: str) -> float | None:
        return self._live(key)

    async def add_float(self, key: str, amount: float, ttl_s: float | None) -> float:
        current = self._live(key)
        value = (current or 0.0) + amount
        expiry = self._values[key][1] if current is not None else (self._clock() + ttl_s if ttl_s else None)
        self._values[key] = (value, expiry)
        return value

    async def init_float(self, key: str, value: float, ttl_s: float | None) -> bool:
        if self._live(key) is not None:
            return False
        self._values[key] = (value, self._clock() + ttl_s if ttl_s else None)
        return True

    async def mark(self, key: str, ttl_s: float) -> None:
        self._values[key] = (1.0, self._clock() + ttl_s)

    async def marked(self, key: str) -> float:
        if self._live(key) is None:
            return 0.0
        expiry = self._values[key][1]
        return max(0.0, (expiry or 0.0) - self._clock())
