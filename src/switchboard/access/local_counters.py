"""Exact counters in this process: the default, with no `shared_state.url`.

Buckets refill continuously at `limit / 60` per second up to `limit`; a request takes one token
from each requests bucket and needs one in each tokens bucket; an answer's tokens are taken
afterwards (a bucket may go into debt, which the next requests wait out). A budget counts the
key's spend in its period, starting from the usage log's sum for the period (read once per period
and key, and again after two idle minutes, when the log has every row; the only await on this
path). Everything else runs without awaiting, so on one event loop each admission and each charge
is atomic. The counts are per process: with `--workers N`, or several instances, use Redis (`leases`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from ..store import Store
from .counters import BUDGET, Counter, CounterEngine, Plan

__all__ = ["LocalCounters"]


class LocalBucket(Counter):
    __slots__ = ("level", "ts")

    def __init__(self, kind: str, scope: str, name: str, limit: float, state_key: str, now: float) -> None:
        super().__init__(kind, scope, name, limit, state_key)
        self.level = self.limit
        self.ts = now

    def room(self, now: float) -> float:
        level = self.level + (now - self.ts) * self.rate
        if level > self.limit:
            level = self.limit
        self.level, self.ts = level, now
        return level

    def remaining(self, now: float) -> float:
        return self.room(now)

    def refused(self, now: float) -> float:
        level = self.room(now)
        return 0.0 if level >= self.need else (self.need - level) / self.rate

    def take(self, now: float) -> None:
        self.level -= 1.0

    def charge(self, amount: float, now: float) -> bool:
        self.room(now)
        self.level -= amount
        return False


class LocalBudget(Counter):
    __slots__ = ("charged", "seed", "seeding")

    def __init__(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> None:
        super().__init__(kind, scope, name, limit, state_key)
        self.seed: float | None = None  # the period's spend in the usage log, once read
        self.charged = 0.0  # charged here since
        self.seeding: asyncio.Task[None] | None = None

    def room(self, now: float) -> float:
        return float("-inf") if self.seed is None else self.limit - self.seed - self.charged

    def remaining(self, now: float) -> float:
        return self.room(now)

    def refused(self, now: float) -> float:
        return 1.0 if self.seed is not None and self.room(now) < self.need else 0.0

    def charge(self, amount: float, now: float) -> bool:
        self.charged += amount
        return False


class LocalCounters(CounterEngine):
    def __init__(self, models: Mapping[str, tuple[int | None, int | None]], store: Store,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        super().__init__(models, clock, wall)
        self.store = store

    def new_counter(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> Counter:
        if kind == BUDGET:
            return LocalBudget(kind, scope, name, limit, state_key)
        return LocalBucket(kind, scope, name, limit, state_key, self.clock())

    async def admit(self, plan: Plan) -> dict[str, str]:
        """The slow path: the budget's spend is not read yet (concurrent first requests share one read)."""
        budget = plan.budget
        if isinstance(budget, LocalBudget) and budget.seed is None:
            if budget.seeding is None:
                budget.seeding = asyncio.get_running_loop().create_task(self._seed(budget))
            await asyncio.shield(budget.seeding)
        headers = self.admit_now(plan)
        assert headers is not None
        return headers

    async def _seed(self, budget: LocalBudget) -> None:
        try:
            budget.seed = await self.store.spend(budget.key_id, budget.period_start)
        finally:
            budget.seeding = None
