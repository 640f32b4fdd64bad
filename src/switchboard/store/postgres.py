"""The PostgreSQL store (`store.url: postgresql://...`), for several instances sharing one database.

Uses asyncpg (optional extra `postgres`, imported only when configured). Migrations run under a
transaction-scoped advisory lock so instances starting together do not race. Extra query parameters
of the URL are passed as server settings by asyncpg (e.g. `?search_path=myschema`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import (
    KEY_COLUMNS,
    MIGRATIONS,
    PURGE_BATCH,
    RESPONSE_CHAIN_SQL,
    RESPONSE_DELETE_SQL,
    RESPONSE_EXISTS_SQL,
    RESPONSE_GET_SQL,
    RESPONSE_PURGE_SQL,
    RESPONSE_PUT_SQL,
    TOTALS_SQL,
    USAGE_COLUMNS,
    UsageValues,
    chain_params,
    key_from_row,
    key_to_row,
    key_update,
    migration_sql,
    response_from_row,
    response_to_row,
    totals_from_row,
    usage_from_row,
    usage_where,
    visible_params,
)
from .records import StoredResponse, UsageQuery, UsageRow, UsageTotals, VirtualKey
from .rollup import (
    LATENCY_COLUMNS,
    LATENCY_CONFLICT,
    ROLLUP_COLUMNS,
    ROLLUP_CONFLICT,
    last_used_conflict,
    rollup_deltas,
)

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x5B5B_0001  # an arbitrary application-wide advisory lock id


_USAGE_TYPES = {"ts": "float8", "status": "int4", "stream": "int4", "prompt_tokens": "int8",
                "completion_tokens": "int8", "cost_usd": "float8", "latency_ms": "float8", "ttft_ms": "float8",
                "cached_tokens": "int8", "cache_write_tokens": "int8", "reasoning_tokens": "int8", "estimated": "int4"}
_INSERT_USAGE = (f"INSERT INTO sb_usage ({', '.join(USAGE_COLUMNS)}) SELECT * FROM unnest("
                 + ", ".join(f"${i}::{_USAGE_TYPES.get(c, 'text')}[]" for i, c in enumerate(USAGE_COLUMNS, 1)) + ")")


_ROLLUP_TYPES = ("int4", "int8", "text", "text", "int8", "int8", "int8", "int8", "float8", "int8", "float8")
_UPSERT_ROLLUP = (f"INSERT INTO sb_usage_rollup ({', '.join(ROLLUP_COLUMNS)}) SELECT * FROM unnest("
                  + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_ROLLUP_TYPES, 1)) + f") {ROLLUP_CONFLICT}")
_UPSERT_LATENCY = (f"INSERT INTO sb_latency_rollup ({', '.join(LATENCY_COLUMNS)}) "
                   "SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::int8[]) "
                   + LATENCY_CONFLICT)
_UPSERT_LAST_USED = ("INSERT INTO sb_key_last_used (key_id, last_ts) SELECT * FROM unnest($1::text[], $2::float8[]) "
                     + last_used_conflict("postgresql"))
FLOOR = "floor({x})::bigint"
"""Flooring `{x}` to an integer, in PostgreSQL."""


def _q(sql: str, start: int = 1) -> str:
    counter = itertools.count(start)
    out = []
    for i, part in enumerate(sql.split("{}")):
        if i:
            out.append(f"${next(counter)}")
        out.append(part)
    return "".join(out)


def _placeholders(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


def _affected(status: str) -> int:
    """The row count of a command status such as `DELETE 3`."""
    return int(status.rsplit(" ", 1)[-1])


_PUT_RESPONSE = _q(RESPONSE_PUT_SQL)
_GET_RESPONSE = _q(RESPONSE_GET_SQL)
_DELETE_RESPONSE = _q(RESPONSE_DELETE_SQL)
_RESPONSE_EXISTS = _q(RESPONSE_EXISTS_SQL)
_RESPONSE_CHAIN = _q(RESPONSE_CHAIN_SQL)
_PURGE_RESPONSES = _q(RESPONSE_PURGE_SQL)


class PostgresStore:
    floor_sql = FLOOR
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        try:
            import asyncpg
        except ImportError as exc:
            raise RuntimeError("store.url is PostgreSQL but asyncpg is not installed; "
                               "install it with: pip install 'switchboard[postgres]'") from exc
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=10)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS sb_schema_version "
                               "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM sb_schema_version")
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    sql = migration_sql(statement, "postgresql")
                    if sql is not None:
                        await conn.execute(sql.format(pk="BIGSERIAL PRIMARY KEY", float="DOUBLE PRECISION"))
                await conn.execute("INSERT INTO sb_schema_version VALUES ($1, $2)", version, time.time())

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def create_key(self, key: VirtualKey) -> None:
        sql = f"INSERT INTO sb_api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({_placeholders(len(KEY_COLUMNS))})"
        await self.pool.execute(sql, *key_to_row(key))

    async def _one_key(self, column: str, value: str) -> VirtualKey | None:
        row = await self.pool.fetchrow(f"SELECT {', '.join(KEY_COLUMNS)} FROM sb_api_keys WHERE {column} = $1", value)
        return key_from_row(tuple(row)) if row is not None else None

    async def get_key(self, key_id: str) -> VirtualKey | None:
        return await self._one_key("id", key_id)

    async def key_by_hash(self, secret_hash: str) -> VirtualKey | None:
        return await self._one_key("secret_hash", secret_hash)

    async def list_keys(self) -> list[VirtualKey]:
        rows = await self.pool.fetch(f"SELECT {', '.join(KEY_COLUMNS)} FROM sb_api_keys ORDER BY created_at, id")
        return [key_from_row(tuple(r)) for r in rows]

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> VirtualKey | None:
        names, values = key_update({**changes, "updated_at": time.time()})
        sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, 1))
        await self.pool.execute(f"UPDATE sb_api_keys SET {sets} WHERE id = ${len(names) + 1}", *values, key_id)
        return await self.get_key(key_id)

    async def insert_usage(self, rows: Sequence[UsageValues]) -> None:
        if not rows:
            return
        # One statement per batch, one array per column: a round trip and a parse per batch, not per row.
        # The rollups in the same transaction, their rows sorted: concurrent instances lock them in one order.
        columns = list(zip(*rows, strict=True))
        deltas = await asyncio.to_thread(rollup_deltas, rows)  # a big batch does not hold up the event loop
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT_USAGE, *columns)
            await conn.execute(_UPSERT_ROLLUP, *zip(*deltas.rollup, strict=True))
            if deltas.latency:
                await conn.execute(_UPSERT_LATENCY, *zip(*deltas.latency, strict=True))
            if deltas.last_used:
                await conn.execute(_UPSERT_LAST_USED, *zip(*deltas.last_used, strict=True))

    async def query_usage(self, query: UsageQuery) -> tuple[list[UsageRow], UsageTotals]:
        where, params = usage_where(query)
        rows_sql = _q(f"SELECT {', '.join(USAGE_COLUMNS)} FROM sb_usage{where} ORDER BY ts DESC, id DESC LIMIT {{}}")
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(rows_sql, *params, query.limit)
            totals = await conn.fetchrow(_q(TOTALS_SQL + where), *params)
        return [usage_from_row(tuple(r)) for r in rows], totals_from_row(tuple(totals))

    async def aggregate(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a read-only aggregate query written with `{}` placeholders (the dashboard's, rollup.py)."""
        return [tuple(r) for r in await self.pool.fetch(_q(sql), *params)]

    async def spend(self, key_id: str, since: float) -> float:
        value = await self.pool.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM sb_usage WHERE key_id = $1 AND ts >= $2", key_id, since)
        return float(value)

    async def put_response(self, r: StoredResponse) -> None:
        await self.pool.execute(_PUT_RESPONSE, *response_to_row(r))

    async def get_response(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        row = await self.pool.fetchrow(_GET_RESPONSE, *visible_params(response_id, key_id, time.time()))
        return response_from_row(tuple(row)) if row is not None else None

    async def delete_response(self, response_id: str, key_id: str | None) -> bool:
        status = await self.pool.execute(_DELETE_RESPONSE, *visible_params(response_id, key_id, time.time()))
        return _affected(status) > 0

    async def response_exists(self, response_id: str) -> bool:
        return await self.pool.fetchval(_RESPONSE_EXISTS, response_id) is not None

    async def response_chain(self, response_id: str, key_id: str | None,
                             max_depth: int = 1000) -> list[StoredResponse] | None:
        """See `Store.response_chain`: one recursive query; a missing/expired/foreign ancestor ends the chain."""
        rows = await self.pool.fetch(_RESPONSE_CHAIN, *chain_params(response_id, key_id, time.time(), max_depth))
        return [response_from_row(tuple(r)) for r in rows] if rows else None

    async def purge_responses(self, now: float) -> int:
        total = 0
        while True:
            deleted = _affected(await self.pool.execute(_PURGE_RESPONSES, float(now), PURGE_BATCH))
            total += deleted
            if deleted < PURGE_BATCH:
                return total
