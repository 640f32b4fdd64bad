"""Writes usage rows off the request path: an in-memory queue flushed in batches.

`add` never blocks or awaits (it is called from a gateway observer); it takes a row as the tuple of
its column values (`UsageValues`), which goes to the database driver unconverted. A background task
writes a batch every `interval_s` or as soon as `batch_size` rows wait. The queue is bounded: past
`max_queue` rows are dropped and counted (`dropped`), so a slow or dead database costs memory
no more than that. `flush()` writes what is queued now (shutdown, and the admin API before a query
so it reads its own writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from .base import Store, UsageValues

__all__ = ["UsageWriter"]

log = logging.getLogger("switchboard.usage")


class UsageWriter:
    def __init__(self, store: Store, interval_s: float = 0.5, batch_size: int = 2000, max_queue: int = 50000) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.dropped = 0
        self.written = 0
        self._queue: deque[UsageValues] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()  # one writer at a time keeps batches in order

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, row: UsageValues) -> None:
        queue = self._queue
        waiting = len(queue)
        if waiting >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("usage log queue full (%d rows): %d rows dropped so far", self.max_queue, self.dropped)
            return
        queue.append(row)
        if waiting + 1 >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-usage-writer")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing the usage log failed")

    async def flush(self) -> None:
        """Write the rows queued now (not those that arrive while it writes: chasing them one at a time
        would cost a transaction and a thread hand-off per request; the next flush takes them)."""
        async with self._lock:
            waiting = len(self._queue)
            while waiting > 0 and self._queue:
                batch = self._take_batch(waiting)
                waiting -= len(batch)
                try:
                    await self.store.insert_usage(batch)
                except Exception:
                    self.dropped += len(batch)
                    raise
                self.written += len(batch)

    def _take_batch(self, most: int) -> list[UsageValues]:
        queue = self._queue
        size = min(most, self.batch_size)
        if len(queue) <= size:
            batch = list(queue)
            queue.clear()
            return batch
        return [queue.popleft() for _ in range(size)]

    async def aclose(self) -> None:
        # Stopped by a flag, not cancelled: a cancel in the middle of a write would lose that batch.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        while self._queue:  # what arrived during the last writes too
            await self.flush()
