"""A circuit breaker around a remote shared state (Redis), so its outage costs little.

Every call has a deadline of `shared_state.timeout_ms`, kept by the backend itself (RedisState's
socket timeouts: a timer of our own per call would double what redis-py already pays for its
own). A call that fails or misses it opens the breaker: for
a while (1 s, doubling on each failed probe up to 30 s) calls fail at once with
`SharedStateUnavailable` instead of each paying the deadline; then one call goes through as a probe
(the others still fail at once), and its success closes the breaker. What a failure means for a
request is decided by access control (`shared_state.on_failure`: open admits it unchecked, closed
refuses it); this module logs each transition once (not each call) and exports the state:
`switchboard_shared_state_calls_total` (round trips attempted), `switchboard_shared_state_failures_total`,
`switchboard_shared_state_skipped_total`, `switchboard_shared_state_breaker_state` and
`switchboard_shared_state_on_failure`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .base import Grant, LeaseRequest, SharedState, SharedStateUnavailable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "GuardedState"]

log = logging.getLogger("switchboard.shared_state")

CLOSED, OPEN, HALF_OPEN = 0, 1, 2  # the gauge's values
FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0

T = TypeVar("T")

_CONSEQUENCE = {
    "open": "rate limits and budgets are not enforced until it answers (shared_state.on_failure: open)",
    "closed": "requests that need a rate limit or budget get 503 until it answers (shared_state.on_failure: closed)",
}


class GuardedState:
    """A `SharedState` that delegates to `inner` (which keeps the deadline `timeout_s`) behind a breaker."""

    def __init__(self, inner: SharedState, timeout_s: float, on_failure: str = "open",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.timeout_s = timeout_s
        self.on_failure = on_failure
        self.calls = 0  # calls passed on to the backend: each one round trip
        self.failures = 0
        self.skipped = 0
        self._clock = clock
        self._state = CLOSED
        self._probing = False
        self._pause_s = FIRST_PAUSE_S
        self._retry_at = 0.0
        self._down_since = 0.0

    @property
    def state(self) -> int:
        return self._state

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        probe = False
        if self._state != CLOSED:
            now = self._clock()
            if self._probing or now < self._retry_at:
                self.skipped += 1
                raise SharedStateUnavailable("the shared state is unreachable", max(0.0, self._retry_at - now))
            self._state, self._probing, probe = HALF_OPEN, True, True
        self.calls += 1
        try:
            result = await op()
        except asyncio.CancelledError:
            if probe:  # the caller went away: neither an answer nor a failure; the next call probes
                self._state, self._probing = OPEN, False
            raise
        except Exception as exc:
            self._failed(exc, probe)
            raise SharedStateUnavailable(f"the shared state failed: {type(exc).__name__}",
                                         max(0.0, self._retry_at - self._clock())) from exc
        if probe:
            self._recovered()
        return result

    def _failed(self, exc: Exception, probe: bool) -> None:
        self.failures += 1
        now = self._clock()
        if probe:
            self._probing = False
            self._pause_s = min(MAX_PAUSE_S, self._pause_s * 2)
        elif self._state != CLOSED:
            return  # a call started before the breaker opened: already counted against this outage
        else:
            self._pause_s = FIRST_PAUSE_S
            self._down_since = now
            timed_out = isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__
            what = f"no answer within {self.timeout_s * 1000:g} ms" if timed_out else type(exc).__name__
            log.warning("shared state unreachable (%s): %s; calls skip it, next try in %gs",
                        what, _CONSEQUENCE.get(self.on_failure, _CONSEQUENCE["open"]), self._pause_s)
        self._state = OPEN
        self._retry_at = now + self._pause_s

    def _recovered(self) -> None:
        down_s = self._clock() - self._down_since
        self._state, self._probing, self._pause_s = CLOSED, False, FIRST_PAUSE_S
        log.warning("shared state reachable again after %.1fs; rate limits and budgets are enforced again", down_s)

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector protocol (registered by access control)."""
        yield CounterMetricFamily("switchboard_shared_state_calls", "Shared-state calls made (each one round "
                                  "trip; calls skipped by the open breaker are not counted).", value=self.calls)
        yield CounterMetricFamily("switchboard_shared_state_failures", "Shared-state calls that failed or missed "
                                  "their deadline (shared_state.timeout_ms).", value=self.failures)
        yield CounterMetricFamily("switchboard_shared_state_skipped", "Shared-state calls not made because its "
                                  "breaker was open.", value=self.skipped)
        yield GaugeMetricFamily("switchboard_shared_state_breaker_state", "Shared-state breaker: 0 closed "
                                "(answering), 1 open (calls skip it), 2 half-open (a probe is under way).",
                                value=self._state)
        mode = GaugeMetricFamily("switchboard_shared_state_on_failure", "What a request needing a limit or budget "
                                 "gets while the shared state is unavailable: open (admitted unchecked) or closed "
                                 "(503).", labels=["mode"])
        mode.add_metric([self.on_failure], 1)
        yield mode

    # -- the SharedState interface, each call guarded

    async def ping(self) -> None:
        await self._call(self.inner.ping)

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        return await self._call(lambda: self.inner.lease(requests))

    async def mark(self, key: str, ttl_s: float) -> None:
        await self._call(lambda: self.inner.mark(key, ttl_s))

    async def marked(self, key: str) -> float:
        return await self._call(lambda: self.inner.marked(key))
