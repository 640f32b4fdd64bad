"""The worker threads beside the event loop stay out of its way (issue 14's p99 stalls): the SQLite
store's thread and the metrics renderer run at a lower scheduling priority, the usage writer does
not chase rows that arrive while it writes, and a batch is written as small statements with the
GIL given up between them."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from switchboard.background_threads import LOWER_PRIORITY, background_thread
from switchboard.store import UsageValues
from switchboard.store.sqlite import SqliteStore
from switchboard.store.usage_writer import UsageWriter

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")


def _own_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux_only
def test_a_background_thread_runs_at_a_lower_priority_and_the_caller_keeps_its_own() -> None:
    before = _own_priority()
    with ThreadPoolExecutor(1, initializer=background_thread) as pool:
        assert pool.submit(_own_priority).result() == LOWER_PRIORITY
    assert _own_priority() == before


@linux_only
async def test_the_sqlite_store_thread_is_a_background_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        assert await store._run(lambda c: _own_priority()) == LOWER_PRIORITY
    finally:
        await store.close()


def _values(i: int) -> UsageValues:
    return (1000.0 + i, f"req_{i}", None, "/v1/chat/completions", "m", "p", None, 200, 0, 1, 1, None, 1.0, None,
            0, 0, 0, 0, None)


async def test_a_batch_is_written_as_small_statements_in_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    statements: list[str] = []
    try:
        await store._run(lambda c: c.set_trace_callback(statements.append))
        await store.insert_usage([_values(i) for i in range(60)])
        await store._run(lambda c: c.set_trace_callback(None))
        inserts = [s for s in statements if s.startswith("INSERT INTO sb_usage (")]
        assert len(inserts) == 3  # 25 + 25 + 10 rows
        assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
        count = await store._run(lambda c: c.execute("SELECT COUNT(*) FROM sb_usage").fetchone()[0])
        assert count == 60
    finally:
        await store.close()


class _ArrivingStore:
    """Records each batch; while a batch is written, another request finishes and queues its row."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.writer: UsageWriter | None = None

    async def insert_usage(self, rows: Sequence[UsageValues]) -> None:
        self.batches.append(len(rows))
        await asyncio.sleep(0)
        assert self.writer is not None
        self.writer.add(_values(100 + len(self.batches)))


async def test_a_flush_writes_what_was_queued_and_leaves_newcomers_for_the_next() -> None:
    store = _ArrivingStore()
    writer = UsageWriter(store, interval_s=60)  # type: ignore[arg-type]
    store.writer = writer
    for i in range(5):
        writer.add(_values(i))
    await asyncio.wait_for(writer.flush(), 5)  # the writer that chased arrivals never finished here
    assert store.batches == [5] and writer.queued == 1  # not a one-row transaction per arrival
    await writer.flush()
    assert store.batches == [5, 1] and writer.queued == 1


async def test_closing_still_writes_every_row() -> None:
    written: list[int] = []

    class Store:
        async def insert_usage(self, rows: Sequence[UsageValues]) -> None:
            written.extend(r[7] for r in rows)
            if len(written) < 4:
                writer.add(_values(len(written)))

    writer = UsageWriter(Store(), interval_s=60)  # type: ignore[arg-type]
    writer.start()
    writer.add(_values(0))
    await writer.aclose()
    assert len(written) == 4 and writer.queued == 0
