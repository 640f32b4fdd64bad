"""The background purger of expired stored responses, against the real backends and a failing store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from switchboard.store import Store, StoredResponse, build_store
from switchboard.store.response_purger import ResponsePurger


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "sqlite:///sb.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = build_store(url, tmp_path)
    await s.open()
    yield s
    await s.close()


def _expired(rid: str, now: float) -> StoredResponse:
    return StoredResponse(id=rid, key_id="key_a", created_at=now - 100, expires_at=now - 1,
                          previous_response_id=None, model="m", items=[], input_count=0, response={"id": rid})


async def _until(check: Callable[[], bool]) -> None:
    """Wait, bounded, for an effect of the purger's own task."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 (polling the purger's counters)
            await asyncio.sleep(0.005)


async def test_purges_at_start_and_then_every_interval(store: Store) -> None:
    now = time.time()
    await store.put_response(_expired("resp_1", now))
    purger = ResponsePurger(store, every_s=0.01)
    purger.start()
    try:
        await _until(lambda: purger.purged == 1)
        await store.put_response(_expired("resp_2", now))
        await _until(lambda: purger.purged == 2)  # a later tick, not only the first purge
        assert purger.failures == 0
    finally:
        await purger.aclose()
    assert await store.purge_responses(time.time()) == 0


class _FlakyStore:
    """Fails its first purges the way a driver does (a message that may name the database), then delegates."""

    def __init__(self, inner: Store, failures: int) -> None:
        self.inner = inner
        self.left = failures

    async def purge_responses(self, now: float) -> int:
        if self.left > 0:
            self.left -= 1
            raise ConnectionRefusedError("connect to postgresql://sb:s3cret@db:5432 failed")
        return await self.inner.purge_responses(now)


async def test_a_failing_purge_is_logged_and_retried_never_raised(store: Store,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    await store.put_response(_expired("resp_1", time.time()))
    purger = ResponsePurger(_FlakyStore(store, failures=2), every_s=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="switchboard.store"):
        purger.start()
        try:
            await _until(lambda: purger.purged == 1)
            assert purger.failures == 2 and purger.runs >= 3
        finally:
            await purger.aclose()
    failures = [r for r in caplog.records if "purging expired stored responses failed" in r.getMessage()]
    assert len(failures) == 2 and "ConnectionRefusedError" in failures[0].getMessage()
    assert "s3cret" not in caplog.text


class _HangingStore:
    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def purge_responses(self, now: float) -> int:
        self.entered.set()
        await asyncio.Event().wait()  # a database that never answers
        return 0


async def test_aclose_ends_a_purge_that_hangs() -> None:
    hanging = _HangingStore()
    purger = ResponsePurger(hanging, every_s=3600)  # type: ignore[arg-type]
    await purger.aclose()  # before start: nothing to stop
    purger.start()
    await asyncio.wait_for(hanging.entered.wait(), 5)
    await asyncio.wait_for(purger.aclose(), 5)
    await purger.aclose()  # twice is harmless


async def test_purges_with_the_given_clock() -> None:
    seen: list[float] = []

    class _Recording:
        async def purge_responses(self, now: float) -> int:
            seen.append(now)
            return 0

    purger = ResponsePurger(_Recording(), every_s=3600, clock=lambda: 1234.5)  # type: ignore[arg-type]
    purger.start()
    try:
        await _until(lambda: bool(seen))
    finally:
        await purger.aclose()
    assert seen == [1234.5]


@pytest.mark.parametrize("every_s", [0, -1])
def test_a_non_positive_interval_is_refused(every_s: float) -> None:
    with pytest.raises(ValueError, match="every_s"):
        ResponsePurger(object(), every_s=every_s)  # type: ignore[arg-type]


async def test_aclose_propagates_its_own_cancellation() -> None:
    """Cancelling the coroutine that closes the purger is not swallowed along with the task's cancellation."""
    entered, cancelled, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class _Stubborn:
        async def purge_responses(self, now: float) -> int:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                await release.wait()  # takes its time to wind down
                raise
            return 0

    purger = ResponsePurger(_Stubborn(), every_s=3600)  # type: ignore[arg-type]
    purger.start()
    await asyncio.wait_for(entered.wait(), 5)
    closing = asyncio.create_task(purger.aclose())
    await asyncio.wait_for(cancelled.wait(), 5)  # aclose has cancelled the task and waits for it
    closing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, 5)
