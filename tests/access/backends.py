"""Real PostgreSQL and Redis for the access tests: a fresh schema / key prefix per use, removed after.

When one is not reachable, the tests that need it are skipped with the reason, unless
`SWITCHBOARD_REQUIRE_SERVICES=1` (set by `.ci/run`) makes that a failure: CI runs them all.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import pytest

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_SERVICES = "SWITCHBOARD_REQUIRE_SERVICES"
_PROBE_TIMEOUT_S = 3.0


def service_decision(service: str, problem: str | None,
                     environ: Mapping[str, str]) -> tuple[Literal["run", "skip", "fail"], str]:
    """What a test needing `service` does, given why it is unreachable (`problem`; None: it is reachable)."""
    if problem is None:
        return "run", ""
    if environ.get(REQUIRE_SERVICES, "").strip() not in ("", "0"):
        return "fail", f"{service} is required ({REQUIRE_SERVICES} is set) but not reachable: {problem}"
    return "skip", (f"{service} is not reachable ({problem}); the README says how to start it "
                    f"(set {REQUIRE_SERVICES}=1 to make this a failure, as CI does)")


@functools.cache
def _postgres_problem(url: str = PG_BASE) -> str | None:
    """None if `SELECT 1` works on `url`, else why not (probed once per session)."""
    try:
        _sql("SELECT 1", timeout=_PROBE_TIMEOUT_S, url=url)
    except Exception as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


@functools.cache
def _redis_problem(host: str = "127.0.0.1", port: int = 6379) -> str | None:
    """None if Redis at host:port answers PING, else why not (probed once per session)."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"redis://{host}:{port}: {type(exc).__name__}: {exc}"
    if not reply.startswith(b"+PONG"):
        return f"redis://{host}:{port}: answered {reply[:40]!r} to PING"
    return None


def _require(service: str, problem: str | None) -> None:
    action, reason = service_decision(service, problem, os.environ)
    if action == "skip":
        pytest.skip(reason)
    if action == "fail":
        pytest.fail(reason, pytrace=False)


def require_postgres() -> None:
    """Skip (or fail, in CI) the calling test when PostgreSQL is not reachable; probed once per session."""
    _require("PostgreSQL", _postgres_problem())


def require_redis() -> None:
    """Skip (or fail, in CI) the calling test when Redis is not reachable; probed once per session."""
    _require("Redis", _redis_problem())


async def _pg(sql: str, connect_timeout_s: float, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=connect_timeout_s)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _sql(sql: str, timeout: float = 60.0, url: str = PG_BASE) -> None:
    # In a thread of its own: fixtures may be set up while the test's event loop is running.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_pg(sql, timeout, url))
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
    require_postgres()
    schema = "sb_test_" + secrets.token_hex(6)
    _sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?search_path={schema}"
    finally:
        _sql(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A unique key prefix; every key under it is deleted afterwards."""
    require_redis()
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
