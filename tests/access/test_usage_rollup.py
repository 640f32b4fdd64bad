"""The rollups migration 30 builds from a usage log already there equal the ones the usage writer keeps,
on SQLite and PostgreSQL (the SQL backfill and `rollup_deltas` bin and bucket alike)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.store import Store, build_store
from switchboard.store.base import USAGE_COLUMNS, migration_sql
from switchboard.store.rollup import ROLLUP_MIGRATION
from tests.access.backends import pg_schema

TABLES = {"sb_usage_rollup": "grain, dim, bucket, value", "sb_latency_rollup": "grain, bucket, model, metric, bin",
          "sb_key_last_used": "key_id"}


def usage_rows(n: int) -> list[tuple[object, ...]]:
    rng = random.Random(30)
    rows = []
    for i in range(n):
        latency = rng.choice([None, 0.4, 1.0, rng.lognormvariate(5, 1.5)])
        rows.append((1_790_000_000 + rng.random() * 5 * 86400, f"r{i}", rng.choice(["k1", "k2", None]),
                     "/chat/completions", rng.choice(["m1", "m2", None]), rng.choice(["p1", None]), "u",
                     rng.choice([200, 200, 429, 500]), 1, rng.randrange(100), rng.randrange(100),
                     rng.choice([None, rng.random()]), latency, None if latency is None else latency / 3,
                     0, 0, 0, 0, None))
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    if request.param == "sqlite":
        s = build_store(f"sqlite:///{tmp_path}/r.db", tmp_path)
        await s.open()
        yield s, "sqlite"
        await s.close()
        return
    with pg_schema() as url:
        s = build_store(url, tmp_path)
        await s.open()
        yield s, "postgresql"
        await s.close()


async def snapshot(store: Store) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table, order in TABLES.items():
        rows = await store.aggregate(f"SELECT * FROM {table} ORDER BY {order}", [])
        out[table] = [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]
    return out


async def test_the_backfill_equals_what_the_writer_keeps(store: tuple[Store, str]) -> None:
    s, dialect = store
    rows = usage_rows(3000)
    for i in range(0, len(rows), 700):
        await s.insert_usage(rows[i:i + 700])
    kept = await snapshot(s)
    assert len(kept["sb_usage_rollup"]) > 100 and len(kept["sb_key_last_used"]) == 2
    for table in TABLES:
        await s.aggregate(f"DELETE FROM {table}", [])
    for statement in ROLLUP_MIGRATION[3:]:  # the backfill (the tables exist)
        sql = migration_sql(statement, dialect)
        if sql is not None:
            await s.aggregate(sql, [])
    assert await snapshot(s) == kept
    assert len(USAGE_COLUMNS) == len(rows[0])
