"""Concurrency limits with a bounded wait queue: per provider, per model, and keyed (e.g. per agent).

A `Limiter` lets `max_in_flight` holders run; up to `queue` more wait in FIFO order; beyond that
`acquire` fails at once with 503 `queue_full` and a `retry-after`, so a burst never grows memory
without bound nor hangs. A slot is a `Lease`: release it exactly once (it is idempotent, and an
async context manager), also on errors and cancellation. A waiter cancelled while queued leaves
the queue; one cancelled just after being granted a slot passes it on.

`Limits` (owned by the Gateway) holds every limiter so metrics can read in-flight and queue depth.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

from ..config import Config
from ..errors import GatewayError

__all__ = ["KeyedLimiter", "Lease", "Limiter", "Limits", "queue_full"]

QUEUE_FULL_RETRY_AFTER_S = 1
DEFAULT_QUEUE = 1024  # as providers' `queue` default


def queue_full(scope: str, name: str) -> GatewayError:
    return GatewayError(
        503, f"Too many concurrent requests for {scope} `{name}`; the wait queue is full. Retry shortly.",
        "service_unavailable_error", code="queue_full",
        headers={"retry-after": str(QUEUE_FULL_RETRY_AFTER_S)}, retryable=True)


class Lease:
    """One held slot of a limiter. `release()` is idempotent."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: Limiter | None) -> None:
        self._limiter = limiter

    @property
    def held(self) -> bool:
        return self._limiter is not None

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()


class Limiter:
    """At most `max_in_flight` concurrent holders, at most `queue` waiters."""

    __slots__ = ("_waiters", "in_flight", "max_in_flight", "name", "on_idle", "queue", "rejected", "scope")

    def __init__(self, scope: str, name: str, max_in_flight: int, queue: int) -> None:
        self.scope = scope
        self.name = name
        self.max_in_flight = max_in_flight
        self.queue = queue
        self.in_flight = 0
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.on_idle: Callable[[Limiter], None] | None = None  # set by KeyedLimiter to forget idle keys

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> Lease | None:
        """A slot if one is free right now (no waiter is ahead), else None: the caller then `acquire`s.

        Lets the common case skip a coroutine and the timer that bounds a wait.
        """
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return Lease(self)
        return None

    async def acquire(self) -> Lease:
        """A slot now, or after waiting in the queue; 503 `queue_full` at once if the queue is full.

        Bound the wait with the caller's own timeout (e.g. `asyncio.timeout`): cancellation is safe.
        """
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return Lease(self)
        if len(self._waiters) >= self.queue:
            self.rejected += 1
            raise queue_full(self.scope, self.name)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._release()  # granted while we were being cancelled: hand the slot on
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
                self._maybe_idle()
            raise
        return Lease(self)  # the releaser transferred its slot to us: in_flight is unchanged

    def _release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.in_flight -= 1
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.in_flight == 0 and not self._waiters and self.on_idle is not None:
            self.on_idle(self)


class KeyedLimiter:
    """One `Limiter` per key (agent name, client key...), created on first use, dropped when idle."""

    __slots__ = ("_limiters", "max_in_flight", "queue", "scope")

    def __init__(self, scope: str, max_in_flight: int, queue: int) -> None:
        self.scope = scope
        self.max_in_flight = max_in_flight
        self.queue = queue
        self._limiters: dict[str, Limiter] = {}

    def limiter(self, key: str, max_in_flight: int | None = None, queue: int | None = None) -> Limiter:
        """The limiter of `key`; `max_in_flight`/`queue` override the defaults for a new key (e.g. per agent)."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = Limiter(self.scope, key, max_in_flight or self.max_in_flight,
                              self.queue if queue is None else queue)
            limiter.on_idle = self._forget
            self._limiters[key] = limiter
        return limiter

    async def acquire(self, key: str, max_in_flight: int | None = None, queue: int | None = None) -> Lease:
        return await self.limiter(key, max_in_flight, queue).acquire()

    def _forget(self, limiter: Limiter) -> None:
        if self._limiters.get(limiter.name) is limiter:
            del self._limiters[limiter.name]

    def __iter__(self) -> Iterator[Limiter]:
        return iter(list(self._limiters.values()))


class Limits:
    """Every limiter of the gateway: per provider and per model from the config, plus keyed ones."""

    def __init__(self, config: Config) -> None:
        self.providers = {name: Limiter("provider", name, p.max_in_flight, p.queue)
                          for name, p in config.providers.items()}
        self.models = {name: Limiter("model", name, m.max_in_flight, m.queue if m.queue is not None else DEFAULT_QUEUE)
                       for name, m in config.models.items() if m.max_in_flight is not None}
        self.keyed: dict[str, KeyedLimiter] = {}

    def keyed_limiter(self, scope: str, max_in_flight: int, queue: int) -> KeyedLimiter:
        """The keyed limiter for `scope` (e.g. "agent"), created once; its limiters show in /metrics."""
        existing = self.keyed.get(scope)
        if existing is None:
            existing = self.keyed[scope] = KeyedLimiter(scope, max_in_flight, queue)
        return existing

    def __iter__(self) -> Iterator[Limiter]:
        yield from self.providers.values()
        yield from self.models.values()
        for keyed in self.keyed.values():
            yield from keyed
