"""Deadlines of upstream attempts on one event loop, kept by one timer: `Deadlines.guard(when)`.

What `asyncio.timeout_at(when)` does for a block of code (the task running it is cancelled at `when`,
and the block raises `TimeoutError` instead of `CancelledError`), at a fraction of its cost when
many blocks are open at once: a stream's attempt (opening it, up to its first chunks) used to pay
for an `asyncio.Timeout` and a loop timer of its own (~3.7 us per stream on the benchmark VM, a
timer handle made, scheduled and cancelled each time), although its deadline almost never passes.

Here a guard is an entry in a heap, ordered by deadline; one loop timer is armed for the earliest
entry still open. A guard that closes is only marked closed (its entry leaves the heap when its
deadline comes, or when closed entries are over half of the heap: the heap is then rebuilt), so the
common case, a guard closed long before its deadline, never touches the loop's timers. Deadlines
of one model's attempts come in increasing order, so the timer is re-armed only when it fires.

Cancellation follows `asyncio.Timeout`'s rules (Python 3.11): the guard converts the
`CancelledError` into `TimeoutError` only when the cancellation was its own (`Task.uncancel()`
brings the task's count of pending cancellations back to what it was when the guard was entered);
a cancellation from elsewhere (the client went away) passes through as it came.
"""

from __future__ import annotations

import asyncio
import heapq
from itertools import count
from types import TracebackType

__all__ = ["DeadlineGuard", "Deadlines"]

_REBUILD_AT = 64  # closed entries are swept out once there are more than this and more than the open ones


class DeadlineGuard:
    """`with guard:` bounds a block by the guard's deadline (see the module docstring)."""

    __slots__ = ("_cancelling", "_deadlines", "_entered", "_expired", "_open", "_task", "when")

    def __init__(self, deadlines: Deadlines, when: float) -> None:
        self._deadlines = deadlines
        self.when = when
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._open = False
        self._entered = False
        self._expired = False

    def expired(self) -> bool:
        """Whether the deadline passed while the block ran (its task was cancelled for it)."""
        return self._expired

    def __enter__(self) -> DeadlineGuard:
        if self._entered:
            raise RuntimeError("a deadline guard is entered once")  # as asyncio.Timeout
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline guard must be used inside a task")
        self._task = task
        self._entered = True
        self._cancelling = task.cancelling()
        self._open = True
        self._deadlines.add(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._open = False
        if not self._expired:  # (an expired one has left the heap already)
            self._deadlines.closed()
        task, self._task = self._task, None  # (a closed entry may wait in the heap: not the task with it)
        # As asyncio.Timeout: the guard's own cancellation request is withdrawn whatever the block
        # ended with; a CancelledError becomes TimeoutError when no other request is pending.
        if self._expired and task is not None and task.uncancel() <= self._cancelling \
                and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _expire(self) -> None:
        if self._open and self._task is not None:
            self._expired = True
            self._task.cancel()


class Deadlines:
    """The open guards of one event loop and the one timer that ends them."""

    __slots__ = ("_closed", "_heap", "_order", "_timer", "_timer_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # (deadline, order of arrival, guard): compared as tuples, in C (equal deadlines by arrival)
        self._heap: list[tuple[float, int, DeadlineGuard]] = []
        self._order = count()
        self._closed = 0  # entries in the heap whose guard has closed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def guard(self, when: float) -> DeadlineGuard:
        """A guard for a block that must end by `when` (the loop's clock, as `loop.time()`)."""
        return DeadlineGuard(self, when)

    def __len__(self) -> int:
        """Entries held (open and closed ones): what the sweeping keeps bounded."""
        return len(self._heap)

    def add(self, guard: DeadlineGuard) -> None:
        when = guard.when
        heapq.heappush(self._heap, (when, next(self._order), guard))
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def closed(self) -> None:
        self._closed += 1
        heap = self._heap
        if self._closed > _REBUILD_AT and self._closed * 2 > len(heap):
            self._heap = heap = [entry for entry in heap if entry[2]._open]
            heapq.heapify(heap)
            self._closed = 0
            if not heap and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        # Due: whatever is at or before the deadline this timer was armed for. (uvloop rounds a
        # timer's delay to whole milliseconds and its clock too, so the timer may run while
        # loop.time() still reads just under it: re-armed for that same time, it would spin.)
        heap, now = self._heap, max(self.loop.time(), self._timer_at)
        self._timer = None
        while heap and heap[0][0] <= now:
            guard = heapq.heappop(heap)[2]
            if guard._open:
                guard._expire()
            else:
                self._closed -= 1
        while heap and not heap[0][2]._open:  # closed ones on top need no timer
            heapq.heappop(heap)
            self._closed -= 1
        if heap:
            self._arm(heap[0][0])
