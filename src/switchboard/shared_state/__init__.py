"""State shared by the instances of a deployment: leased rate-limit and budget counters, cooldown flags.

In process by default; in Redis with `shared_state.url: redis://...`, each call then under a
deadline (`shared_state.timeout_ms`) and behind a breaker (`guarded`).
"""

from __future__ import annotations

from ..config import ConfigError
from .base import Grant, LeaseRequest, SharedState, SharedStateUnavailable
from .guarded import GuardedState
from .memory import MemoryState

__all__ = [
    "Grant",
    "GuardedState",
    "LeaseRequest",
    "MemoryState",
    "SharedState",
    "SharedStateUnavailable",
    "build_shared_state",
]


def build_shared_state(url: str | None, prefix: str = "switchboard:", timeout_s: float = 0.25,
                       on_failure: str = "open") -> SharedState:
    if not url:
        return MemoryState()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_state import RedisState

        return GuardedState(RedisState(url, prefix, timeout_s), timeout_s, on_failure)
    raise ConfigError("`shared_state.url` must be a redis://, rediss:// or unix:// URL")
