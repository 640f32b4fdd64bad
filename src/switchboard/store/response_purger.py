"""Deletes expired stored responses in the background: one asyncio task per gateway process.

Owns only the schedule: a purge right after `start()`, then one every `every_s` seconds. A failed purge
(database down, a timeout) is logged and retried at the next tick; it never ends the task or the process.
Several instances sharing one database may all purge: each row is deleted once, whoever gets it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .base import Store

__all__ = ["ResponsePurger"]

log = logging.getLogger("switchboard.store")


class ResponsePurger:
    def __init__(self, store: Store, every_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.store = store
        self.every_s = every_s
        self.clock = clock
        self.purged = 0  # rows deleted since start
        self.failures = 0  # purges that raised
        self.runs = 0  # purges attempted
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-response-purger")

    async def _run(self) -> None:
        while True:
            await self.purge_once()
            await asyncio.sleep(self.every_s)

    async def purge_once(self) -> int:
        """One purge now; the rows deleted (0 when it failed, which is logged and counted)."""
        self.runs += 1
        try:
            deleted = await self.store.purge_responses(self.clock())
        except Exception as exc:
            self.failures += 1
            # The type only: a driver's message may carry the connection URL.
            log.warning("purging expired stored responses failed (%s); retrying in %gs",
                        type(exc).__name__, self.every_s)
            return 0
        self.purged += deleted
        if deleted:
            log.info("purged %d expired stored responses", deleted)
        return deleted

    async def aclose(self) -> None:
        """Stop the task. A purge in flight is cancelled; the batches it already deleted stay deleted."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # aclose itself was cancelled, not only the task
