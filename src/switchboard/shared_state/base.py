"""The shared-state interface: leased counters for rate limits and budgets, and cooldown flags.

Rate limits and budgets go through one batched, atomic operation, `lease`: for each counter it first
settles what was used beyond earlier grants, then grants up to `want` more units (to every counter
of the call that wants some, or to none). Instances keep the granted units locally and admit
requests from them (`access.leases`), so a request costs a round trip only when a lease runs out.
Two kinds of counter:
- a token bucket (`budget=False`): `limit` tokens, refilled continuously at `rate` per second;
  settling takes tokens (it may leave the bucket in debt, which later requests wait out), a grant
  needs the level to be at least `need` and takes at most the whole tokens available;
- a spend counter (`budget=True`): the amount spent and reserved against `limit`; settling adds
  to it (a negative amount returns an unused reservation), a grant needs the spend below the limit
  and reserves at most what is left. A counter that does not exist yet starts from `seed`; with no
  seed the call reports it `absent` and changes nothing for it (the caller reads the seed, e.g.
  from the usage log, and asks again).
Every operation is atomic in each backend, so there are no read-modify-write races.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Grant", "LeaseRequest", "SharedState", "SharedStateUnavailable"]


@dataclass(slots=True, frozen=True)
class LeaseRequest:
    key: str
    budget: bool  # False: a token bucket; True: a spend counter
    limit: float  # the bucket's capacity, or the budget
    rate: float = 0.0  # buckets: tokens refilled per second
    settle: float = 0.0  # used beyond earlier grants: taken from the bucket / added to the spend first
    want: float = 0.0  # the most to grant; 0 only settles
    need: float = 1.0  # buckets: the least level that lets a grant happen
    ttl_s: float | None = None  # spend counters: lifetime of one created now (None: no expiry)
    seed: float | None = None  # spend counters: the spend to start from when absent


@dataclass(slots=True, frozen=True)
class Grant:
    granted: float  # units granted (0: none; buckets grant whole units)
    level: float  # after the call: tokens left in the bucket, or the limit minus spend and reservations
    absent: bool = False  # a spend counter that does not exist and had no seed: nothing was done to it


class SharedStateUnavailable(Exception):
    """A shared-state call failed, missed its deadline, or was skipped while the store is unreachable."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # until the next attempt to reach the store


class SharedState(Protocol):
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def ping(self) -> None: ...

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        """Settle, then grant, every counter of `requests` in one atomic step (see the module docstring)."""
        ...

    async def mark(self, key: str, ttl_s: float) -> None:
        """Set a flag that disappears after `ttl_s` (e.g. a deployment cooling down)."""
        ...

    async def marked(self, key: str) -> float:
        """Seconds left on a flag, 0 when absent."""
        ...
