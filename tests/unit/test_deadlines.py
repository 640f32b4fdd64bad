"""The attempts' deadline guards (routing/deadlines.py) against `asyncio.timeout_at`, whose behaviour
they replace: the same outcome for a block that ends in time, one that outlives its deadline, one
cancelled from elsewhere, and both at once; and the heap of closed guards stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvloop

from switchboard.routing.deadlines import _REBUILD_AT, Deadlines

# Both loops: the stock one, and uvloop's (what `switchboard serve` runs), whose timers and clock
# have millisecond resolution.
RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}

Bound = Callable[[float], contextlib.AbstractAsyncContextManager[Any]]


def _ours(deadlines: Deadlines) -> Bound:
    @contextlib.asynccontextmanager
    async def bound(when: float) -> AsyncIterator[Any]:
        with deadlines.guard(when) as guard:
            yield guard
    return bound


def _asyncio(when: float) -> contextlib.AbstractAsyncContextManager[Any]:
    return asyncio.timeout_at(when)


async def _outcome(bound: Bound, deadline_s: float, work_s: float, cancel_after_s: float | None,
                   swallow: bool = False) -> tuple[str, int]:
    """What the block's task ended with, and its count of pending cancellations after the block."""
    loop = asyncio.get_running_loop()
    left: list[int] = []

    async def run() -> str:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with bound(loop.time() + deadline_s):
                try:
                    await asyncio.sleep(work_s)
                except asyncio.CancelledError:
                    if not swallow:
                        raise
            result = "done"
        except TimeoutError:
            result = "timeout"
        left.append(task.cancelling())
        return result

    task = asyncio.create_task(run())
    if cancel_after_s is not None:
        loop.call_later(cancel_after_s, task.cancel)
    try:
        return await task, left[0]
    except asyncio.CancelledError:
        return "cancelled", left[0] if left else -1


CASES = [
    (0.5, 0.01, None, False),   # ends in time
    (0.02, 0.5, None, False),   # outlives its deadline
    (-1.0, 0.5, None, False),   # a deadline already passed
    (0.5, 0.5, 0.02, False),    # cancelled from elsewhere first
    (0.02, 0.5, 0.02, False),   # both: the outside cancellation wins
    (0.02, 0.5, None, True),    # the block swallows the cancellation and ends normally
]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(("deadline_s", "work_s", "cancel_after_s", "swallow"), CASES)
def test_same_outcome_as_asyncio_timeout(deadline_s: float, work_s: float, cancel_after_s: float | None,
                                         swallow: bool, runner: str) -> None:
    async def both() -> tuple[tuple[str, int], tuple[str, int]]:
        deadlines = Deadlines(asyncio.get_running_loop())
        ours = await _outcome(_ours(deadlines), deadline_s, work_s, cancel_after_s, swallow)
        reference = await _outcome(_asyncio, deadline_s, work_s, cancel_after_s, swallow)
        return ours, reference

    ours, reference = RUNNERS[runner](both())
    assert ours == reference


class _Counted(Deadlines):
    __slots__ = ("fired",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.fired = 0

    def _fire(self) -> None:
        self.fired += 1
        super()._fire()


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_expiry_fires_the_timer_once_per_deadline(runner: str) -> None:
    """Not again and again until the loop's clock reads the deadline (uvloop's may read just under it)."""
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        deadlines = _Counted(loop)
        when = loop.time() + 0.0123

        async def block(i: int) -> None:
            with deadlines.guard(when + i * 0.0031):
                await asyncio.sleep(1.0)

        tasks = [asyncio.create_task(block(i)) for i in range(5)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(isinstance(r, TimeoutError) for r in results), deadlines.fired

    timeouts, fired = RUNNERS[runner](main())
    assert timeouts == 5 and fired <= 5 + 1


def test_a_guard_is_entered_once() -> None:
    async def main() -> None:
        guard = Deadlines(asyncio.get_running_loop()).guard(asyncio.get_running_loop().time() + 60)
        with guard:
            pass
        with pytest.raises(RuntimeError), guard:
            pass

    asyncio.run(main())


def test_expired_is_reported_and_the_earliest_deadline_fires_first() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        order: list[str] = []

        async def block(name: str, deadline_s: float) -> None:
            with deadlines.guard(loop.time() + deadline_s) as guard:
                try:
                    await asyncio.sleep(1.0)
                except asyncio.CancelledError:
                    assert guard.expired()
                    # the earlier deadline fired on its own, not with the later one
                    order.append(f"{name} (late pending: {late.cancelling() == 0})")
                    raise

        late = asyncio.create_task(block("late", 0.3))
        await asyncio.sleep(0)
        early = asyncio.create_task(block("early", 0.02))  # an earlier deadline after the timer was armed
        for task in (late, early):
            with pytest.raises(TimeoutError):
                await task
        return order

    assert asyncio.run(main()) == ["early (late pending: True)", "late (late pending: False)"]


def test_guards_closed_in_time_do_not_pile_up() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        most = 0
        for _ in range(5000):
            with deadlines.guard(loop.time() + 600):
                await asyncio.sleep(0)
            most = max(most, len(deadlines))
        return most

    assert asyncio.run(main()) <= 2 * _REBUILD_AT + 2


def test_outside_a_task_is_an_error() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError), Deadlines(loop).guard(0.0):
            pass
    finally:
        loop.close()
