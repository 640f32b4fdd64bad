"""Real PostgreSQL and Redis for the access tests: a fresh schema / key prefix per use, removed after."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_BASE)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _sql(sql: str) -> None:
    # In a thread of its own: fixtures may be set up while the test's event loop is running.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_pg(sql))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@contextmanager
def pg_schema() -> Iterator[str]:
    """A store URL whose tables live in a new schema, dropped afterwards."""
    schema = "sb_test_" + secrets.token_hex(6)
    _sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?search_path={schema}"
    finally:
        _sql(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A unique key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"sbtest:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
