"""Cooldowns shared across instances: a breaker that opens on one instance rests that deployment on all.

Only with `shared_state.url` (Redis). The breakers themselves stay local (routing/health.py keeps
the hot path free of network calls); this module bridges them to the shared state:
- when a breaker opens here, the deployment is marked in shared state for the provider's cooldown;
  when a probe closes it, the mark is cleared;
- every `poll_s` the marks of all configured deployments are read; a deployment marked elsewhere is
  opened here for the time left on its mark, so other instances stop sending it traffic within a
  poll interval and probe it again when the shared cooldown ends.
While the shared state is unreachable (`SharedStateUnavailable`: the guarded state logged it once)
the breakers simply stay local; other failures are logged as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..config import Config
from ..shared_state import SharedState, SharedStateUnavailable
from .health import CLOSED, OPEN, Breaker, Health

__all__ = ["SharedCooldowns"]

log = logging.getLogger("switchboard")


def _key(deployment: str) -> str:
    return f"cooldown:{deployment}"


class SharedCooldowns:
    def __init__(self, health: Health, state: SharedState, config: Config, poll_s: float = 1.0) -> None:
        self.health = health
        self.state = state
        self.poll_s = poll_s
        # Every deployment that can have a breaker: a key id, or the provider itself when it has no keys.
        self.deployments: list[tuple[str, str]] = [
            (key.id, name) for name, p in config.providers.items() if p.cooldown.failures > 0 for key in p.keys
        ] + [(name, name) for name, p in config.providers.items() if p.cooldown.failures > 0 and not p.keys]
        self._applying = False
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        self.health.listeners.append(self._changed)

    async def start(self) -> None:
        if self.deployments:
            self._task = asyncio.create_task(self._poll(), name="switchboard-shared-cooldowns")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _changed(self, breaker: Breaker, state: str) -> None:
        if self._applying or state not in (OPEN, CLOSED):
            return
        ttl = breaker.cooldown_s if state == OPEN else 0.001  # a mark that expires at once clears it
        task = asyncio.get_running_loop().create_task(self._write(breaker.deployment, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, deployment: str, ttl_s: float) -> None:
        try:
            await self.state.mark(_key(deployment), ttl_s)
        except SharedStateUnavailable:
            pass  # local breakers still work
        except Exception as exc:  # shared state down: local breakers still work
            log.warning("sharing the cooldown of %s failed: %s", deployment, type(exc).__name__)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except SharedStateUnavailable:
                pass
            except Exception as exc:
                log.warning("reading shared cooldowns failed: %s", type(exc).__name__)

    async def sync(self) -> None:
        """Open here what another instance put to rest (once per poll)."""
        for deployment, provider in self.deployments:
            left = await self.state.marked(_key(deployment))
            if left > 0 and self.health.state(deployment) == CLOSED:
                self._applying = True
                try:
                    self.health.open_for(deployment, provider, left)
                finally:
                    self._applying = False
