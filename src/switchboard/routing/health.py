"""Cooldowns: a circuit breaker per deployment (provider + key).

closed --(N consecutive failures)--> open --(cooldown elapsed)--> half-open
half-open: one probe request goes through; success closes, failure re-opens for another cooldown.

Only failures that say the deployment is unwell count (5xx, 429, timeouts, connection errors);
a 4xx answer proves it is reachable and counts as a success. The router asks `available()` to
prefer healthy deployments; when none is available it tries anyway (see the router).
Settings come from each provider's `cooldown: {failures, seconds}`; `failures: 0` disables it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..config import Config

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker", "Health"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True)
class Breaker:
    deployment: str
    provider: str
    failures_to_open: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if now >= self.opened_at + self.cooldown_s else OPEN


Listener = Callable[[Breaker, str], None]


class Health:
    """Every deployment's breaker; `listeners` hear each state change (for metrics and logs)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = {name: (p.cooldown.failures, p.cooldown.seconds) for name, p in config.providers.items()}
        self._breakers: dict[str, Breaker] = {}
        self._clock = clock
        self.listeners: list[Listener] = []

    def _breaker(self, deployment: str, provider: str) -> Breaker | None:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            failures, seconds = self._settings.get(provider, (0, 0.0))
            if failures <= 0:
                return None
            breaker = self._breakers[deployment] = Breaker(deployment, provider, failures, seconds)
        return breaker

    def state(self, deployment: str) -> str:
        breaker = self._breakers.get(deployment)
        return CLOSED if breaker is None else breaker.state(self._clock())

    def available(self, deployment: str, provider: str) -> bool:
        """Whether to send traffic there now: closed, or half-open with no probe in flight."""
        breaker = self._breakers.get(deployment)
        if breaker is None:
            return True
        state = breaker.state(self._clock())
        return state == CLOSED or (state == HALF_OPEN and not breaker.probing)

    def begin(self, deployment: str, provider: str) -> None:
        """An attempt starts: in half-open it is the probe, which holds back other traffic."""
        breaker = self._breaker(deployment, provider)
        if breaker is None or breaker.opened_at is None:  # closed: the common case, no clock needed
            return
        if breaker.state(self._clock()) == HALF_OPEN and not breaker.probing:
            breaker.probing = True
            self._notify(breaker, HALF_OPEN)

    def success(self, deployment: str, provider: str) -> None:
        breaker = self._breakers.get(deployment)
        if breaker is None or (breaker.failures == 0 and breaker.opened_at is None and not breaker.probing):
            return
        was_open = breaker.opened_at is not None
        breaker.failures = 0
        breaker.opened_at = None
        breaker.probing = False
        if was_open:
            self._notify(breaker, CLOSED)

    def failure(self, deployment: str, provider: str) -> None:
        breaker = self._breaker(deployment, provider)
        if breaker is None:
            return
        now = self._clock()
        breaker.failures += 1
        reopen = breaker.probing or breaker.state(now) == HALF_OPEN
        breaker.probing = False
        if reopen or (breaker.opened_at is None and breaker.failures >= breaker.failures_to_open):
            breaker.opened_at = now
            self._notify(breaker, OPEN)

    def open_for(self, deployment: str, provider: str, seconds: float) -> None:
        """Open the breaker now, half-opening after `seconds` (a cooldown decided by another instance)."""
        breaker = self._breaker(deployment, provider)
        if breaker is None:
            return
        breaker.opened_at = self._clock() - max(0.0, breaker.cooldown_s - seconds)
        breaker.probing = False
        self._notify(breaker, OPEN)

    def abandon(self, deployment: str, provider: str) -> None:
        """The attempt ended without a verdict (cancelled, local error): free the probe slot."""
        breaker = self._breakers.get(deployment)
        if breaker is not None:
            breaker.probing = False

    def snapshot(self, deployment: str) -> dict[str, object]:
        """The breaker's state for a status page: state, consecutive failures, cooldown and the time left of it."""
        breaker = self._breakers.get(deployment)
        if breaker is None:
            return {"state": CLOSED, "failures": 0, "cooldown_s": None, "cooldown_remaining_s": 0.0}
        now = self._clock()
        left = 0.0 if breaker.opened_at is None else max(0.0, breaker.opened_at + breaker.cooldown_s - now)
        return {"state": breaker.state(now), "failures": breaker.failures, "cooldown_s": breaker.cooldown_s,
                "cooldown_remaining_s": round(left, 3)}

    def _notify(self, breaker: Breaker, state: str) -> None:
        for listener in self.listeners:
            listener(breaker, state)

    def __iter__(self) -> Iterator[tuple[Breaker, str]]:
        now = self._clock()
        for breaker in list(self._breakers.values()):
            yield breaker, breaker.state(now)
