"""Usage log batches larger than one INSERT statement, on both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.store import Store, UsageQuery, UsageRow, build_store
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
        latency_ms=None if i % 7 else 1.25, ttft_ms=None)


async def test_a_big_batch_keeps_every_row_and_value(store: Store) -> None:
    rows = [_row(i) for i in range(613)]  # two full multi-row statements and a remainder
    await store.insert_usage(rows)
    await store.insert_usage([])
    got, totals = await store.query_usage(UsageQuery(limit=1000))
    assert totals.requests == 613 and totals.prompt_tokens == sum(range(613))
    assert sorted(got, key=lambda r: r.ts) == rows


async def test_writer_flushes_everything_in_order(store: Store) -> None:
    writer = UsageWriter(store, interval_s=60, batch_size=300)
    writer.start()
    for i in range(700):
        writer.add(_row(i))
    await writer.aclose()
    got, totals = await store.query_usage(UsageQuery(limit=1000))
    assert totals.requests == 700 and writer.written == 700 and writer.dropped == 0
    assert [r.request_id for r in got][:2] == ["req_699", "req_698"]
