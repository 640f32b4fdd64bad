"""The counters a request passes through, the plan that lists them, and the one pass that admits it.

A request with a virtual key, or to a model with `models.X.rpm/tpm`, passes through up to five
counters: the key's requests-per-minute and tokens-per-minute buckets, the model's two (all callers
together), and the key's budget for its current period. A `Plan` lists them for one (key, model); it
is built once and cached, and rebuilt only when the key's limits change or its budget period ends.
`CounterEngine.admit_now` checks every counter of the plan and takes the request from all of them
or from none, in one synchronous pass, and returns the `x-ratelimit-*` headers; the tokens and cost
of the answer are charged afterwards (`charge`), so a tpm limit or a budget gates what follows.

Where the counts live is the engine's business: in this process (`local_counters`, exact), or in
leases of the shared state (`leases`, with a bounded error). A counter's `room(now)` is what it
can admit now (a bucket's tokens, a lease's units, a budget's money left); a request needs
`room >= need` in each (`need` is one request or one token; for a budget the smallest float above
zero, so any money left admits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from ..errors import GatewayError
from ..store import VirtualKey
from .budgets import budget_exhausted, period_bounds
from .rate_limits import rate_limited, ratelimit_headers

__all__ = ["BUDGET", "REQUESTS", "TOKENS", "Counter", "CounterEngine", "Plan"]

REQUESTS, TOKENS, BUDGET = "requests", "tokens", "budget"
_ANY_MONEY = math.ulp(0.0)  # `room < need` is then `room <= 0`
_MAX_PLANS = 10000
_MAX_COUNTERS = 20000
_IDLE_S = 120.0


class Counter:
    """One counter: a bucket (`rate` > 0, `limit` per minute) or a budget (`limit` in USD per period)."""

    __slots__ = ("key_id", "kind", "limit", "limit_text", "name", "need", "period", "period_end", "period_start",
                 "rate", "scope", "state_key")

    def __init__(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> None:
        self.kind = kind
        self.scope = scope  # "key" or "model"
        self.name = name  # the key id or the model name
        self.state_key = state_key  # its name in the shared state
        self.need = _ANY_MONEY if kind == BUDGET else 1.0
        self.key_id = name if scope == "key" else ""
        self.period = ""  # budgets: daily | weekly | monthly | total
        self.period_start = 0.0  # budgets: wall-clock start of the period counted
        self.period_end: float | None = None  # budgets: and its end (None: never)
        self.limit = self.rate = 0.0
        self.limit_text = ""
        self.set_limit(limit)

    def set_limit(self, limit: float) -> None:
        self.limit = float(limit)
        self.rate = 0.0 if self.kind == BUDGET else self.limit / 60.0
        self.limit_text = str(int(limit)) if self.kind != BUDGET else f"{limit:g}"

    # What an engine's counters implement:
    def room(self, now: float) -> float:
        """What the counter can admit now (a bucket's tokens, a lease's units, a budget's money left)."""
        raise NotImplementedError

    def remaining(self, now: float) -> float:
        """Units left for the x-ratelimit-remaining-* headers (buckets)."""
        raise NotImplementedError

    def refused(self, now: float) -> float:
        """Seconds until this counter may admit a request again; 0 when it is not refusing."""
        raise NotImplementedError

    def take(self, now: float) -> None:
        """Take one request (requests buckets, at admission)."""
        raise NotImplementedError

    def charge(self, amount: float, now: float) -> bool:
        """Count an answer's tokens or cost; True when that leaves something to settle with the shared state."""
        raise NotImplementedError


class Plan:
    """The counters of one (key, model), and how to charge an answer to them."""

    __slots__ = ("budget", "counters", "groups", "key", "last_used", "model", "period_end", "requests", "tokens",
                 "version")

    def __init__(self, key: VirtualKey | None, model: str, counters: list[Counter], period_end: float | None) -> None:
        self.key = key
        self.model = model
        self.version = _version(key)
        self.counters = tuple(counters)
        self.requests = tuple(c for c in counters if c.kind == REQUESTS)  # take one request at admission
        self.tokens = tuple(c for c in counters if c.kind == TOKENS)  # charged the answer's tokens
        self.budget = next((c for c in counters if c.kind == BUDGET), None)  # charged the answer's cost
        self.period_end = period_end  # the budget's period ends (wall clock): the plan is rebuilt then
        self.groups = tuple((kind, group) for kind, group in ((REQUESTS, self.requests), (TOKENS, self.tokens))
                            if group)
        self.last_used = 0.0  # monotonic: idle plans and their counters are forgotten when there are many


def _version(key: VirtualKey | None) -> tuple[object, ...]:
    return () if key is None else (key.rpm, key.tpm, key.budget_usd, key.budget_period)


class CounterEngine:
    """Plans and the admission pass; subclasses keep the counts (`new_counter`, `relimit`, `take`,
    `charge`, and the slow path `admit` for what `admit_now` cannot decide without waiting)."""

    def __init__(self, models: Mapping[str, tuple[int | None, int | None]],
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.models = {name: limits for name, limits in models.items() if limits[0] or limits[1]}
        self.clock = clock
        self.wall = wall
        self._plans: dict[tuple[str | None, str], Plan] = {}
        self._counters: dict[str, Counter] = {}

    def plan(self, key: VirtualKey | None, model: str) -> Plan | None:
        """The plan of this key and model (None when neither has a limit); cached."""
        plan = self._plans.get((key.id if key is not None else None, model))
        if plan is not None and plan.key is key and (plan.period_end is None or self.wall() < plan.period_end):
            return plan
        if plan is not None and plan.version == _version(key) and (
                plan.period_end is None or self.wall() < plan.period_end):
            plan.key = key  # the key cache fetched it again, unchanged
            return plan
        return self._build(key, model)

    def _build(self, key: VirtualKey | None, model: str) -> Plan | None:
        counters: list[Counter] = []
        period_end = None
        if key is not None:
            if key.budget_usd is not None:
                start, period_end = period_bounds(key.budget_period, self.wall())
                budget = self._counter(BUDGET, "key", key.id, key.budget_usd,
                                       f"budget:{key.id}:{key.budget_period}:{int(start)}")
                budget.period, budget.period_start, budget.period_end = key.budget_period, start, period_end
                counters.append(budget)
            if key.rpm:
                counters.append(self._counter(REQUESTS, "key", key.id, key.rpm, f"rl:key:{key.id}:requests"))
            if key.tpm:
                counters.append(self._counter(TOKENS, "key", key.id, key.tpm, f"rl:key:{key.id}:tokens"))
        rpm, tpm = self.models.get(model, (None, None))
        # Model names are user-visible strings; the key id is ours. Both are safe in a Redis key.
        if rpm:
            counters.append(self._counter(REQUESTS, "model", model, rpm, f"rl:model:{model}:requests"))
        if tpm:
            counters.append(self._counter(TOKENS, "model", model, tpm, f"rl:model:{model}:tokens"))
        if not counters:
            return None
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        plan = self._plans[(key.id if key is not None else None, model)] = Plan(key, model, counters, period_end)
        return plan

    def _counter(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> Counter:
        counter = self._counters.get(state_key)
        if counter is None:
            if len(self._counters) >= _MAX_COUNTERS:
                self._sweep()
            counter = self._counters[state_key] = self.new_counter(kind, scope, name, limit, state_key)
        elif counter.limit != limit:
            self.relimit(counter, limit)
        return counter

    def _sweep(self) -> None:
        """Forget the plans idle for a while, and the counters no other plan uses unless they hold something."""
        now = self.clock()
        self._plans = {k: p for k, p in self._plans.items() if now - p.last_used < _IDLE_S}
        live = {c.state_key for p in self._plans.values() for c in p.counters}
        self._counters = {k: c for k, c in self._counters.items() if k in live or self.holds(c)}

    def admit_now(self, plan: Plan) -> dict[str, str] | None:
        """Admit the request into every counter of `plan` or into none: its x-ratelimit headers, a 429,
        or None when the engine must wait for something first (then `await admit(plan)`)."""
        now = self.clock()
        plan.last_used = now
        for counter in plan.counters:
            if counter.room(now) < counter.need:
                self.refuse(plan, now)  # raises when refusing now
                return None
        for counter in plan.requests:
            counter.take(now)
        return ratelimit_headers(plan.groups, now) if plan.groups else {}

    def refuse(self, plan: Plan, now: float) -> None:
        """Raise the 429 of the counters of `plan` that refuse now (the budget first); return when none does."""
        budget = plan.budget
        if budget is not None and budget.refused(now) > 0:
            assert plan.key is not None
            raise budget_exhausted(plan.key, self.wall())
        waits = [(wait, c) for c in plan.counters if c.kind != BUDGET and (wait := c.refused(now)) > 0]
        if waits:
            raise self.rate_limited(plan, waits, now)

    def rate_limited(self, plan: Plan, waits: list[tuple[float, Counter]], now: float) -> GatewayError:
        return rate_limited(waits, ratelimit_headers(plan.groups, now))

    # -- what an engine implements

    def new_counter(self, kind: str, scope: str, name: str, limit: float, state_key: str) -> Counter:
        raise NotImplementedError

    def relimit(self, counter: Counter, limit: float) -> None:
        """The key's limit changed (admin API, CLI): count against the new one from now on."""
        counter.set_limit(limit)

    def holds(self, counter: Counter) -> bool:
        """Whether forgetting the counter would lose something (a debt to settle, money reserved)."""
        return False

    async def admit(self, plan: Plan) -> dict[str, str]:
        raise NotImplementedError

    def charge(self, plan: Plan, tokens: int, cost: float) -> None:
        """An admitted request's answer used `tokens` and cost `cost` USD."""
        if tokens > 0 and plan.tokens:
            now = self.clock()
            for counter in plan.tokens:
                if counter.charge(tokens, now):
                    self.to_settle(counter)
        budget = plan.budget
        if budget is not None and cost > 0 and budget.charge(cost, 0.0):
            self.to_settle(budget)

    def to_settle(self, counter: Counter) -> None:
        """`counter` has usage to settle with the shared state."""

    def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
