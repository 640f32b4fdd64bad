"""The shared-state interface: counters for rate limits, budgets and cooldowns.

Token buckets are taken all-or-nothing (a request rejected by one limit consumes none of the
others); every operation is atomic in each backend, so there are no read-modify-write races.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Bucket", "SharedState", "SharedStateUnavailable", "refill"]


@dataclass(slots=True, frozen=True)
class Bucket:
    """One token bucket: `capacity` tokens, refilled continuously at `rate` tokens per second.

    A take succeeds when the bucket holds at least `need` tokens, and then removes `cost` (which may
    leave it negative: tokens counted after a response are a debt the next requests wait out).
    """

    key: str
    capacity: float
    rate: float
    cost: float = 1.0
    need: float = 1.0


class SharedStateUnavailable(Exception):
    """A shared-state call failed, missed its deadline, or was skipped while the store is unreachable."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # until the next attempt to reach the store


def refill(tokens: float, last: float, now: float, bucket: Bucket) -> float:
    return min(bucket.capacity, tokens + max(0.0, now - last) * bucket.rate)


class SharedState(Protocol):
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def ping(self) -> None: ...

    async def take(self, buckets: Sequence[Bucket]) -> tuple[bool, list[float]]:
        """Take from every bucket if each has `need`, else from none; returns the levels after."""
        ...

    async def get_float(self, key: str) -> float | None: ...
    async def add_float(self, key: str, amount: float, ttl_s: float | None) -> float: ...

    async def init_float(self, key: str, value: float, ttl_s: float | None) -> bool:
        """Set `key` only if absent (seeding a counter); True when it was set."""
        ...

    async def mark(self, key: str, ttl_s: float) -> None:
        """Set a flag that disappears after `ttl_s` (e.g. a deployment cooling down)."""
        ...

    async def marked(self, key: str) -> float:
        """Seconds left on a flag, 0 when absent."""
        ...
