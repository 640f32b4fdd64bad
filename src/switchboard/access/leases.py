"""Counters leased from the shared state (Redis): limits across instances without a round trip per request.

Each instance holds, per counter, a lease: units taken from the shared counter in advance (requests
or tokens from a bucket, money reserved against a budget). A request that finds room in the leases
of all its counters is admitted in process, with no round trip; one that does not renews those
leases, all of them in one `lease` call (one Lua script, one round trip), which first settles what
this instance used beyond its leases. Requests that need a lease under renewal wait for that
renewal instead of starting their own. The tokens and cost of answers are taken from the leases at
once (in process) and what exceeds them, a debt, is settled off the request path by a flusher: at
once when it is idle, then at most every `FLUSH_INTERVAL_S`, every counter's debt in one call.

Lease size. A lease covers about `HORIZON_S` of this instance's recent use of the counter (1 unit
to start with: a key used now and then is counted exactly, request by request), never more than
`1/LEASE_FRACTION` of the limit (at least one unit), plus, for requests, one for each request
waiting for the renewal (each takes its unit as soon as the renewal answers). One renewal per
counter at a time: the others wait for it (a request that waited for 64 renewals in a row without
getting a unit, which takes extreme contention for a small lease, is refused with a 429).

The bound, per counter, with N instances (tested in tests/access/test_leases.py and
test_two_instances.py):
- requests (rpm): in any window, the requests admitted exceed what one exact token bucket would
  admit by at most the units leased and not yet used at the window's start, at most
  N x (max(1, rpm // 100) - 1): under 1 % of the limit per instance, none below rpm 200;
- tokens (tpm): as without leases, a request is admitted while there is a token left and its
  tokens are counted after it; leases add at most N x max(1, tpm // 100) tokens, and another
  instance sees this one's debt within `FLUSH_INTERVAL_S` (at once when idle);
- budgets: reservations never exceed the money left, so the spend goes over the budget by at most
  what each instance had in flight when its reservation ran out: one request's cost per instance
  for requests made one after another. A reservation not used is returned at shutdown; one held
  by an instance that died is lost for the period (at most 1 % of the budget).
Headers (`x-ratelimit-remaining-*`) are the shared level as of the last exchange plus the lease.

Failures: a renewal that cannot reach the shared state raises `SharedStateUnavailable`, which
access control turns into `shared_state.on_failure` (admit unchecked, or 503); units already leased
stay usable. A settlement that fails is kept and sent again (a token debt at most one minute's
worth of the limit, so an outage does not block a key for long after it), so usage may be counted
twice when an answer is lost, never not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from ..shared_state import Grant, LeaseRequest, SharedState, SharedStateUnavailable
from ..store import Store
from .counters import BUDGET, REQUESTS, Counter, CounterEngine, Plan

__all__ = ["FLUSH_INTERVAL_S", "HORIZON_S", "LEASE_FRACTION", "LeasedCounter", "LeasedCounters"]

log = logging.getLogger("switchboard.access")

HORIZON_S = 0.25  # a lease covers about this much of the instance's recent use
LEASE_FRACTION = 100  # and at most this fraction of the limit
FLUSH_INTERVAL_S = 0.05  # settlements: at most one call per interval (the first after a pause at once)
BUDGET_RECHECK_S = 1.0  # an exhausted budget is asked again after this (another instance may return money)
_MAX_ROUNDS = 64  # renewals a request waits for before it is refused (only under extreme contention)


class LeasedCounter(Counter):
    __slots__ = ("cap", "credit", "granted_at", "refused_until", "remote", "remote_at", "renewing", "used",
                 "waiters")

    def __init__(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> None:
        self.cap = 1.0
        super().__init__(kind, scope, name, limit, state_key)
        self.credit = 0.0  # leased and not used yet; below zero: used beyond the lease, a debt to settle
        self.used = 0.0  # units used since the last grant (for the next lease's size)
        self.granted_at: float | None = None
        self.remote = self.limit  # the shared level after the last exchange (for the headers)
        self.remote_at = 0.0
        self.refused_until = 0.0  # the shared counter refused a lease: no use asking before this
        self.renewing: asyncio.Task[None] | None = None
        self.waiters = 0  # requests waiting for `renewing`

    def set_limit(self, limit: float) -> None:
        super().set_limit(limit)
        self.cap = self.limit / LEASE_FRACTION if self.kind == BUDGET else max(1.0, self.limit // LEASE_FRACTION)

    def room(self, now: float) -> float:
        return self.credit

    def remaining(self, now: float) -> float:
        level = self.remote + (now - self.remote_at) * self.rate
        return min(self.limit, min(self.limit, level) + self.credit)

    def refused(self, now: float) -> float:
        if self.credit >= self.need:
            return 0.0
        wait = self.refused_until - now
        return wait if wait > 0 else 0.0

    def take(self, now: float) -> None:
        self.credit -= 1.0
        self.used += 1.0

    def charge(self, amount: float, now: float) -> bool:
        self.credit -= amount
        self.used += amount
        return self.credit < 0


class LeasedCounters(CounterEngine):
    def __init__(self, models: Mapping[str, tuple[int | None, int | None]], state: SharedState, store: Store,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        super().__init__(models, clock, wall)
        self.state = state
        self.store = store
        self.renewals = 0  # lease calls made for admissions
        self.settlements = 0  # lease calls made only to settle
        self._dirty: set[LeasedCounter] = set()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    # -- counters

    def new_counter(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> Counter:
        return LeasedCounter(kind, scope, name, limit, state_key)

    def relimit(self, counter: Counter, limit: float) -> None:
        assert isinstance(counter, LeasedCounter)
        counter.set_limit(limit)
        if counter.kind != BUDGET:
            counter.credit = min(counter.credit, 0.0)  # a lease is for one limit; money reserved stays reserved
        counter.refused_until, counter.used, counter.granted_at = 0.0, 0.0, None

    def holds(self, counter: Counter) -> bool:
        assert isinstance(counter, LeasedCounter)
        return counter.credit < 0 or counter.renewing is not None or (counter.kind == BUDGET and counter.credit > 0)

    def to_settle(self, counter: Counter) -> None:
        assert isinstance(counter, LeasedCounter)
        self._dirty.add(counter)
        self._wake.set()

    # -- admission

    async def admit(self, plan: Plan) -> dict[str, str]:
        """The slow path of `admit_now`: renew the leases that lack room (or wait for their renewal)."""
        for _ in range(_MAX_ROUNDS):
            headers = self.admit_now(plan)  # raises the 429 of a counter that refused
            if headers is not None:
                return headers
            lacking = [c for c in plan.counters if isinstance(c, LeasedCounter) and c.credit < c.need]
            pending = {c.renewing for c in lacking if c.renewing is not None}
            if pending:  # never two renewals of one counter at a time: the bound counts one lease per instance
                await self._wait(pending, lacking)
            else:
                await self._renew(lacking)
        # Only under extreme contention for a small lease: refuse (never admit unchecked).
        now = self.clock()
        starved = [(1.0, c) for c in plan.counters if c.kind != BUDGET and c.room(now) < c.need]
        if starved:
            raise self.rate_limited(plan, starved, now)
        raise SharedStateUnavailable("the budget lease of this request could not be renewed", 1.0)

    async def _wait(self, pending: set[asyncio.Task[None]], lacking: list[LeasedCounter]) -> None:
        for c in lacking:
            c.waiters += 1
        try:
            await asyncio.wait(pending)
        finally:
            for c in lacking:
                c.waiters -= 1
        for task in pending:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, SharedStateUnavailable):
                raise SharedStateUnavailable(str(exc), exc.retry_after_s)
            if exc is not None:
                raise SharedStateUnavailable(f"the shared state failed: {type(exc).__name__}", 1.0)

    async def _renew(self, counters: list[LeasedCounter]) -> None:
        # A task of its own: the exchange completes (and its grant is kept) even if this request goes away.
        task = asyncio.get_running_loop().create_task(self._renewal(counters))
        for c in counters:
            c.renewing = task
        await asyncio.shield(task)

    async def _renewal(self, counters: list[LeasedCounter]) -> None:
        now = self.clock()
        settles = [self._take_debt(c) for c in counters]
        requests = [self._request(c, settle, self._want(c, now)) for c, settle in zip(counters, settles, strict=True)]
        self.renewals += 1
        try:
            grants = await self._exchange(counters, requests)
        except BaseException:
            self._restore(counters, settles)
            raise
        else:
            for c, request, grant in zip(counters, requests, grants, strict=True):
                self._apply(c, request, grant, now)
        finally:
            for c in counters:
                if c.renewing is asyncio.current_task():
                    c.renewing = None

    def _want(self, c: LeasedCounter, now: float) -> float:
        if c.kind == BUDGET:
            least = max(c.cap / 100, 1e-9)  # any positive amount: the first request's cost is unknown
            want = least if c.granted_at is None else c.used * HORIZON_S / max(now - c.granted_at, 1e-6)
            return max(least, min(c.cap, want))
        want = 1.0 if c.granted_at is None else math.ceil(c.used * HORIZON_S / max(now - c.granted_at, 1e-6))
        want = min(c.cap, max(1.0, want))
        if c.kind == REQUESTS:  # the requests waiting for this renewal each take one as soon as it answers
            want += c.waiters
        return want

    def _request(self, c: LeasedCounter, settle: float, want: float, seed: float | None = None) -> LeaseRequest:
        if c.kind == BUDGET:
            ttl = None if c.period_end is None else c.period_end - self.wall() + 3600
            return LeaseRequest(c.state_key, True, c.limit, 0.0, settle, want, 0.0, ttl, seed)
        return LeaseRequest(c.state_key, False, c.limit, c.rate, settle, want, c.need)

    @staticmethod
    def _take_debt(c: LeasedCounter) -> float:
        """Move the counter's debt (use beyond its lease) out of it, to be settled by the call being made."""
        if c.credit >= 0:
            return 0.0
        debt = -c.credit
        c.credit = 0.0
        return debt

    @staticmethod
    def _restore(counters: Sequence[LeasedCounter], settles: Sequence[float]) -> None:
        """A call failed: what it was to settle is owed again (a bucket's at most a minute of its limit)."""
        for c, settle in zip(counters, settles, strict=True):
            if c.kind == BUDGET:
                c.credit -= settle
            elif settle > 0:
                c.credit = max(c.credit - settle, -c.limit)

    def _apply(self, c: LeasedCounter, request: LeaseRequest, grant: Grant, now: float) -> None:
        c.remote, c.remote_at = grant.level, now
        if request.want <= 0:
            return
        if grant.granted > 0:
            c.credit += grant.granted
            c.used, c.granted_at, c.refused_until = 0.0, now, 0.0
        elif c.kind == BUDGET:
            if grant.level <= 0:
                c.refused_until = now + BUDGET_RECHECK_S
        elif grant.level < c.need:
            c.refused_until = now + (c.need - grant.level) / c.rate

    async def _exchange(self, counters: Sequence[LeasedCounter], requests: list[LeaseRequest]) -> list[Grant]:
        """One `lease` call; a budget that does not exist yet in the shared state is seeded from the usage
        log and asked again (once per period and key: a second round trip and a store query)."""
        grants = await self.state.lease(requests)
        absent = [i for i, g in enumerate(grants) if g.absent]
        if not absent:
            return grants
        again: list[int] = []
        retry: list[LeaseRequest] = []
        for i, (c, r) in enumerate(zip(counters, requests, strict=True)):
            if grants[i].absent:
                again.append(i)
                retry.append(replace(r, seed=await self.store.spend(c.key_id, c.period_start)))
            elif r.want > 0:  # refused with the absent one (all or nothing); its settlement is done
                again.append(i)
                retry.append(replace(r, settle=0.0))
        for i, grant in zip(again, await self.state.lease(retry), strict=True):
            grants[i] = grant
        return grants

    # -- settlement

    def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="switchboard-limit-settlement")

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pause = await self.flush()
            await asyncio.sleep(pause)

    async def flush(self, returning: bool = False) -> float:
        """Settle every debt in one call (and with `returning`, give back the money reserved): the pause
        before the next flush."""
        if returning:
            counters = [c for c in self._counters.values() if isinstance(c, LeasedCounter)
                        and (c.credit < 0 or (c.kind == BUDGET and c.credit > 0))]
        else:
            counters = [c for c in self._dirty if c.credit < 0]
        self._dirty.clear()
        if not counters:
            return FLUSH_INTERVAL_S
        settles = []
        for c in counters:
            if returning and c.kind == BUDGET:
                settles.append(-c.credit)
                c.credit = 0.0
            else:
                settles.append(self._take_debt(c))
        requests = [self._request(c, settle, 0.0) for c, settle in zip(counters, settles, strict=True)]
        self.settlements += 1
        now = self.clock()
        try:
            grants = await self._exchange(counters, requests)
        except BaseException as exc:
            self._restore(counters, settles)
            self._dirty.update(counters)
            self._wake.set()
            if isinstance(exc, SharedStateUnavailable):
                return max(FLUSH_INTERVAL_S, exc.retry_after_s)
            if not isinstance(exc, Exception):
                raise
            log.warning("settling rate limit and budget usage failed: %s", type(exc).__name__)
            return 1.0
        for c, request, grant in zip(counters, requests, grants, strict=True):
            self._apply(c, request, grant, now)
        return FLUSH_INTERVAL_S

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        with contextlib.suppress(Exception):
            await self.flush(returning=True)
