"""In-process shared state: correct for one process, not shared between instances.

Each method runs without awaiting, so on one event loop it is atomic. Access control does not use
it for limits (its in-process counters, `access.local_counters`, are exact and cheaper); it is the
reference implementation of `lease`, which tests use to run several leasing "instances" against
one state, on a clock they control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .base import Grant, LeaseRequest

__all__ = ["MemoryState"]


class MemoryState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._values: dict[str, tuple[float, float | None]] = {}  # key -> (value, expiry or None)
        self._clock = clock

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        now = self._clock()
        levels: list[float | None] = []
        allowed = True
        for r in requests:
            if r.budget:
                spent = self._live(r.key)
                if spent is None:
                    spent = r.seed
                level = None if spent is None else r.limit - spent - r.settle
                if r.want > 0 and (level is None or level <= 0):
                    allowed = False
            else:
                tokens, last = self._buckets.get(r.key, (r.limit, now))
                level = min(r.limit, tokens + max(0.0, now - last) * r.rate) - r.settle
                if r.want > 0 and level < r.need:
                    allowed = False
            levels.append(level)
        grants = []
        for r, level in zip(requests, levels, strict=True):
            if level is None:
                grants.append(Grant(0.0, 0.0, absent=True))
                continue
            granted = 0.0
            if allowed and r.want > 0:
                granted = min(r.want, level) if r.budget else float(min(r.want, max(0, int(level))))
            level -= granted
            if r.budget:
                expiry = self._values[r.key][1] if r.key in self._values else (
                    now + r.ttl_s if r.ttl_s else None)
                self._values[r.key] = (r.limit - level, expiry)
            else:
                self._buckets[r.key] = (level, now)
            grants.append(Grant(granted, level))
        self._sweep_buckets(now, requests)
        return grants

    def _sweep_buckets(self, now: float, recent: Sequence[LeaseRequest]) -> None:
        # Bound memory: a full bucket is the same as an absent one, so forget those that are idle.
        if len(self._buckets) > 10000:
            keep = {r.key for r in recent}
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

    async def mark(self, key: str, ttl_s: float) -> None:
        self._values[key] = (1.0, self._clock() + ttl_s)

    async def marked(self, key: str) -> float:
        if self._live(key) is None:
            return 0.0
        expiry = self._values[key][1]
        return max(0.0, (expiry or 0.0) - self._clock())
