"""State shared by the instances of a deployment: rate-limit buckets, budget counters, cooldown flags.

In process by default; in Redis with `shared_state.url: redis://...`.
"""

from __future__ import annotations

from ..config import ConfigError
from .base import Bucket, SharedState
from .memory import MemoryState

__all__ = ["Bucket", "MemoryState", "SharedState", "build_shared_state"]


def build_shared_state(url: str | None, prefix: str = "switchboard:") -> SharedState:
    if not url:
        return MemoryState()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_state import RedisState

        return RedisState(url, prefix)
    raise ConfigError("`shared_state.url` must be a redis://, rediss:// or unix:// URL")
