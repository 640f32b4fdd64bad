"""The usage log's write path on both store backends: batches larger than one INSERT statement, the
rows the access observer queues, and a writer that loses nothing at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from switchboard.access.control import AccessControl
from switchboard.config import parse_config
from switchboard.gateway import RequestRecord
from switchboard.hub import Usage
from switchboard.store import Store, UsageQuery, UsageRow, UsageValues, build_store
from switchboard.store.base import usage_to_row
from switchboard.store.usage_writer import UsageWriter


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "sqlite:///usage.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = build_store(url, tmp_path)
    await s.open()
    yield s
    await s.close()


def _row(i: int) -> UsageRow:
    return UsageRow(
        ts=2000.0 + i / 8, request_id=f"req_{i}", key_id="k" if i % 2 else None, endpoint="/chat/completions",
        model="m", provider="p", upstream_model=None if i % 3 else "u", status=200 if i % 5 else 429,
        stream=bool(i % 2), prompt_tokens=i, completion_tokens=1, cost_usd=0.5 if i % 4 else 0.0,
        latency_ms=None if i % 7 else 1.25, ttft_ms=None, trace_id=f"{i:032x}" if i % 2 else None)


async def test_a_big_batch_keeps_every_row_and_value(store: Store) -> None:
    rows = [_row(i) for i in range(613)]  # two full multi-row statements and a remainder
    await store.insert_usage([usage_to_row(r) for r in rows])
    await store.insert_usage([])
    got, totals = await store.query_usage(UsageQuery(limit=1000))
    assert totals.requests == 613 and totals.prompt_tokens == sum(range(613))
    assert sorted(got, key=lambda r: r.ts) == rows


async def test_writer_flushes_everything_in_order(store: Store) -> None:
    writer = UsageWriter(store, interval_s=60, batch_size=300)
    writer.start()
    for i in range(700):
        writer.add(usage_to_row(_row(i)))
    await writer.aclose()
    got, totals = await store.query_usage(UsageQuery(limit=1000))
    assert totals.requests == 700 and writer.written == 700 and writer.dropped == 0
    assert [r.request_id for r in got][:2] == ["req_699", "req_698"]


OBSERVED_CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", keys: [sk-up]}
models:
  priced: {route: up/u1}
prices:
  priced: {input: 2, output: 4}
"""


def _finished(request_id: str, *, stream: bool, usage: Usage | None, status: int = 200) -> RequestRecord:
    record = RequestRecord(request_id=request_id, endpoint="/chat/completions", key_id="cfg:app", model="priced",
                           provider="up", upstream_model="u1", status=status, stream=stream, usage=usage)
    record.started_wall = 1234.5678
    record.latency_s = 0.25
    if stream:
        record.first_token_s = 0.0125
    return record


async def test_observed_requests_become_exact_usage_rows(store: Store, tmp_path: Path) -> None:
    """The observer queues plain column tuples; read back they are the rows the request described."""
    access = AccessControl(parse_config(OBSERVED_CONFIG, base_dir=tmp_path), store=store)
    access.observe(_finished("req_plain", stream=False, usage=Usage(100, 50, 150)))
    access.observe(_finished("req_stream", stream=True, usage=Usage(10, 5, 15)))
    access.observe(_finished("req_failed", stream=False, usage=None, status=502))
    access.observe(RequestRecord(request_id="req_list", endpoint="/models"))  # no model: not a usage row
    await access.usage.flush()
    got, _ = await store.query_usage(UsageQuery(limit=10))
    base = {"ts": 1234.5678, "key_id": "cfg:app", "endpoint": "/chat/completions", "model": "priced",
            "provider": "up", "upstream_model": "u1", "latency_ms": 250.0}
    assert sorted(got, key=lambda r: r.request_id) == [
        UsageRow(**base, request_id="req_failed", status=502, stream=False, prompt_tokens=0, completion_tokens=0,
                 cost_usd=0.0, ttft_ms=None),
        UsageRow(**base, request_id="req_plain", status=200, stream=False, prompt_tokens=100, completion_tokens=50,
                 cost_usd=(100 * 2 + 50 * 4) / 1e6, ttft_ms=None),
        UsageRow(**base, request_id="req_stream", status=200, stream=True, prompt_tokens=10, completion_tokens=5,
                 cost_usd=(10 * 2 + 5 * 4) / 1e6, ttft_ms=12.5),
    ]


class _SlowStore:
    """Holds every write until released; records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[UsageValues]] = []
        self.release = asyncio.Event()
        self.writing = asyncio.Event()

    async def insert_usage(self, rows: Sequence[UsageValues]) -> None:
        self.writing.set()
        await self.release.wait()
        self.batches.append(list(rows))


async def test_rows_queued_during_a_write_are_written_at_shutdown() -> None:
    slow = _SlowStore()
    writer = UsageWriter(slow, interval_s=0.01, batch_size=3)  # type: ignore[arg-type]
    writer.start()
    for i in range(5):
        writer.add((i,))
    await asyncio.wait_for(slow.writing.wait(), 5)  # a batch is in flight
    for i in range(5, 9):
        writer.add((i,))
    closing = asyncio.create_task(writer.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for the write in flight, never cancels it
    slow.release.set()
    await asyncio.wait_for(closing, 5)
    assert [row for batch in slow.batches for row in batch] == [(i,) for i in range(9)]
    assert all(len(batch) <= 3 for batch in slow.batches)
    assert writer.written == 9 and writer.queued == 0 and writer.dropped == 0
