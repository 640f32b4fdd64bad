"""The SQLite store: the zero-setup default (`store.url: sqlite:///switchboard.db`).

The stdlib `sqlite3` module blocks, so every call runs on one dedicated worker thread (which also
serialises access to the one connection); the event loop never waits on disk. WAL mode lets several
worker processes on one machine share the file.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..background_threads import background_thread, yield_to_loop
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

__all__ = ["SqliteStore"]

T = TypeVar("T")


# Rows per INSERT statement. Binding a statement's values holds the GIL; between statements the writer
# yields (background_threads.yield_to_loop), so a request arriving meanwhile waits for at most one small
# statement (25 rows: ~0.1 ms) instead of a whole batch (issue 14's p99 stalls at concurrency 1).
_ROWS_PER_INSERT = 25


def _insert_sql(rows: int) -> str:
    one = f"({', '.join('?' * len(USAGE_COLUMNS))})"
    return f"INSERT INTO sb_usage ({', '.join(USAGE_COLUMNS)}) VALUES {', '.join([one] * rows)}"


_INSERT_FULL = _insert_sql(_ROWS_PER_INSERT)


def _q(sql: str) -> str:
    return sql.replace("{}", "?")


_UPSERT_ROLLUP = (f"INSERT INTO sb_usage_rollup ({', '.join(ROLLUP_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))}) {ROLLUP_CONFLICT}")
_UPSERT_LATENCY = (f"INSERT INTO sb_latency_rollup ({', '.join(LATENCY_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(LATENCY_COLUMNS))}) {LATENCY_CONFLICT}")
_UPSERT_LAST_USED = f"INSERT INTO sb_key_last_used (key_id, last_ts) VALUES (?, ?) {last_used_conflict('sqlite')}"
FLOOR = "CAST({x} AS INTEGER)"
"""Flooring `{x}` (a non-negative number) to an integer, in SQLite."""

_PUT_RESPONSE = _q(RESPONSE_PUT_SQL)
_GET_RESPONSE = _q(RESPONSE_GET_SQL)
_DELETE_RESPONSE = _q(RESPONSE_DELETE_SQL)
_RESPONSE_EXISTS = _q(RESPONSE_EXISTS_SQL)
_RESPONSE_CHAIN = _q(RESPONSE_CHAIN_SQL)
_PURGE_RESPONSES = _q(RESPONSE_PURGE_SQL)


_BUSY_TIMEOUT_S = 10.0


def _enter_wal(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL. SQLite answers this pragma with "database is locked" at once, without
    waiting on the busy timeout, while another connection holds the lock it needs: which is what several
    workers starting together on a new database do to each other. So try again until the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)  # on the store's own thread, before it serves anything
        pause = min(pause * 2, 0.1)


class SqliteStore:
    floor_sql = FLOOR
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise RuntimeError("store is not open")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-sqlite",
                                            initializer=background_thread)
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        await self._run(self._migrate)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit where needed.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        _enter_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # several processes may start at once
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS sb_schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM sb_schema_version").fetchone()[0]
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    sql = migration_sql(statement, "sqlite")
                    if sql is not None:
                        # A plain rowid key: AUTOINCREMENT would update sqlite_sequence on every insert for nothing.
                        conn.execute(sql.format(pk="INTEGER PRIMARY KEY", float="REAL"))
                conn.execute("INSERT INTO sb_schema_version VALUES (?, ?)", (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def create_key(self, key: VirtualKey) -> None:
        sql = f"INSERT INTO sb_api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' * len(KEY_COLUMNS))})"
        row = key_to_row(key)
        await self._run(lambda c: c.execute(sql, row))

    async def _one_key(self, column: str, value: str) -> VirtualKey | None:
        sql = f"SELECT {', '.join(KEY_COLUMNS)} FROM sb_api_keys WHERE {column} = ?"
        row = await self._run(lambda c: c.execute(sql, (value,)).fetchone())
        return key_from_row(row) if row is not None else None

    async def get_key(self, key_id: str) -> VirtualKey | None:
        return await self._one_key("id", key_id)

    async def key_by_hash(self, secret_hash: str) -> VirtualKey | None:
        return await self._one_key("secret_hash", secret_hash)

    async def list_keys(self) -> list[VirtualKey]:
        sql = f"SELECT {', '.join(KEY_COLUMNS)} FROM sb_api_keys ORDER BY created_at, id"
        rows = await self._run(lambda c: c.execute(sql).fetchall())
        return [key_from_row(r) for r in rows]

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> VirtualKey | None:
        names, values = key_update({**changes, "updated_at": time.time()})
        sql = f"UPDATE sb_api_keys SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"
        await self._run(lambda c: c.execute(sql, (*values, key_id)))
        return await self.get_key(key_id)

    async def insert_usage(self, rows: Sequence[UsageValues]) -> None:
        if not rows:
            return
        def write(c: sqlite3.Connection) -> None:
            deltas = rollup_deltas(rows)  # on the store's thread, yielding to the loop as it goes
            # Multi-row INSERTs, not `executemany`: that releases and retakes the GIL around every row, and
            # each retake can stall the event loop thread for a whole switch interval.
            c.execute("BEGIN")
            try:
                for start in range(0, len(rows), _ROWS_PER_INSERT):
                    chunk = rows[start:start + _ROWS_PER_INSERT]
                    sql = _INSERT_FULL if len(chunk) == _ROWS_PER_INSERT else _insert_sql(len(chunk))
                    c.execute(sql, list(itertools.chain.from_iterable(chunk)))
                    yield_to_loop()
                c.executemany(_UPSERT_ROLLUP, deltas.rollup)  # a few rows per batch (rollup.py)
                c.executemany(_UPSERT_LATENCY, deltas.latency)
                c.executemany(_UPSERT_LAST_USED, deltas.last_used)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(write)

    async def query_usage(self, query: UsageQuery) -> tuple[list[UsageRow], UsageTotals]:
        where, params = usage_where(query)
        rows_sql = _q(f"SELECT {', '.join(USAGE_COLUMNS)} FROM sb_usage{where} ORDER BY ts DESC, id DESC LIMIT ?")
        totals_sql = _q(TOTALS_SQL + where)

        def read(c: sqlite3.Connection) -> tuple[list[Any], Any]:
            return c.execute(rows_sql, (*params, query.limit)).fetchall(), c.execute(totals_sql, params).fetchone()

        rows, totals = await self._run(read)
        return [usage_from_row(r) for r in rows], totals_from_row(totals)

    async def aggregate(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a read-only aggregate query written with `{}` placeholders (the dashboard's, rollup.py)."""
        text = _q(sql)
        values = tuple(params)
        rows: list[tuple[Any, ...]] = await self._run(lambda c: c.execute(text, values).fetchall())
        return rows

    async def spend(self, key_id: str, since: float) -> float:
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM sb_usage WHERE key_id = ? AND ts >= ?"
        row = await self._run(lambda c: c.execute(sql, (key_id, since)).fetchone())
        return float(row[0])

    async def put_response(self, r: StoredResponse) -> None:
        row = response_to_row(r)  # serialised now: the row is a snapshot even if the caller changes `r` later
        await self._run(lambda c: c.execute(_PUT_RESPONSE, row))

    async def get_response(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        params = visible_params(response_id, key_id, time.time())
        row = await self._run(lambda c: c.execute(_GET_RESPONSE, params).fetchone())
        return response_from_row(row) if row is not None else None

    async def delete_response(self, response_id: str, key_id: str | None) -> bool:
        params = visible_params(response_id, key_id, time.time())
        deleted: int = await self._run(lambda c: c.execute(_DELETE_RESPONSE, params).rowcount)
        return deleted > 0

    async def response_exists(self, response_id: str) -> bool:
        row = await self._run(lambda c: c.execute(_RESPONSE_EXISTS, (response_id,)).fetchone())
        return row is not None

    async def response_chain(self, response_id: str, key_id: str | None,
                             max_depth: int = 1000) -> list[StoredResponse] | None:
        """See `Store.response_chain`: one recursive query; a missing/expired/foreign ancestor ends the chain."""
        params = chain_params(response_id, key_id, time.time(), max_depth)
        rows = await self._run(lambda c: c.execute(_RESPONSE_CHAIN, params).fetchall())
        return [response_from_row(r) for r in rows] if rows else None

    async def purge_responses(self, now: float) -> int:
        # One job per batch: key lookups queued on the same worker thread run between batches.
        params = (float(now), PURGE_BATCH)
        total = 0
        while True:
            deleted: int = await self._run(lambda c: c.execute(_PURGE_RESPONSES, params).rowcount)
            total += deleted
            if deleted < PURGE_BATCH:
                return total
