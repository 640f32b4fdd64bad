"""Stored Responses API turns on the real backends (SQLite and PostgreSQL), driven through the Store interface."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.store import Store, StoredResponse, build_store, stored_size
from switchboard.store.base import MIGRATIONS
from switchboard.store.postgres import PostgresStore
from switchboard.store.sqlite import SqliteStore

KEY_A = "key_aaaaaaaaaaaa"
KEY_B = "key_bbbbbbbbbbbb"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "sqlite:///data/sb.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = build_store(url, tmp_path)
    await s.open()
    await s.close()
    s = build_store(url, tmp_path)  # a second open finds every migration applied
    await s.open()
    yield s
    await s.close()


def _turn(i: int, text: str) -> list[dict[str, Any]]:
    """One turn's items: the user's message, a tool call and its output, the assistant's answer."""
    return [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        {"type": "function_call", "id": f"fc_{i}", "call_id": f"call_{i}", "name": "shell",
         "arguments": '{"cmd": ["ls", "-l"]}', "status": "completed"},
        {"type": "function_call_output", "call_id": f"call_{i}", "output": "total 0\n"},
        {"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": f"answer {i}", "annotations": []}]},
    ]


def _response(rid: str, key_id: str | None = KEY_A, previous: str | None = None, ttl: float = 3600.0,
              created_at: float | None = None, text: str = "hi") -> StoredResponse:
    created = time.time() if created_at is None else created_at
    items = _turn(len(rid), text)
    body = {"id": rid, "object": "response", "created_at": int(created), "status": "completed", "model": "m",
            "output": items[1:2] + items[3:], "previous_response_id": previous,
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}}
    return StoredResponse(id=rid, key_id=key_id, created_at=created, expires_at=created + ttl,
                          previous_response_id=previous, model="m", items=items, input_count=3, response=body)


async def _chain(store: Store, n: int, key_id: str | None = KEY_A, prefix: str = "resp_") -> list[StoredResponse]:
    out: list[StoredResponse] = []
    previous = None
    for i in range(n):
        r = _response(f"{prefix}{i}", key_id, previous, text=f"turn {i}")
        await store.put_response(r)
        out.append(r)
        previous = r.id
    return out


def _ids(chain: list[StoredResponse] | None) -> list[str] | None:
    return None if chain is None else [r.id for r in chain]


async def test_round_trip_keeps_every_field(store: Store) -> None:
    r = _response("resp_round", text="héllo ✓ \"quoted\" \\ \x00 nul")
    r.response["metadata"] = {"nested": [1, 2.5, None, True, {"deep": "ünï"}]}
    await store.put_response(r)
    got = await store.get_response("resp_round", KEY_A)
    assert got == r  # every column, the JSON ones value for value
    assert got is not None and got.items[0]["content"][0]["text"].endswith("\x00 nul")
    anonymous = _response("resp_anon", key_id=None)  # auth disabled: no key
    await store.put_response(anonymous)
    assert await store.get_response("resp_anon", None) == anonymous
    assert await store.get_response("resp_missing", KEY_A) is None


async def test_put_replaces_an_existing_id(store: Store) -> None:
    await store.put_response(_response("resp_x", text="first"))
    second = _response("resp_x", text="second", previous="resp_parent")
    second.input_count = 1
    await store.put_response(second)
    assert await store.get_response("resp_x", KEY_A) == second


async def test_a_response_is_visible_only_to_the_key_that_created_it(store: Store) -> None:
    await _chain(store, 2)
    for other in (KEY_B, None, ""):
        assert await store.get_response("resp_1", other) is None
        assert await store.response_chain("resp_1", other) is None
        assert await store.delete_response("resp_1", other) is False
    assert _ids(await store.response_chain("resp_1", KEY_A)) == ["resp_0", "resp_1"]  # the failed deletes left it
    await store.put_response(_response("resp_anon", key_id=None))
    assert await store.get_response("resp_anon", KEY_A) is None  # a key never sees what no key created
    assert await store.delete_response("resp_anon", KEY_A) is False
    assert await store.delete_response("resp_1", KEY_A) is True
    assert await store.get_response("resp_1", KEY_A) is None
    assert await store.delete_response("resp_1", KEY_A) is False
    assert await store.delete_response("resp_anon", None) is True


async def test_an_expired_response_is_invisible_then_purged_and_counted(store: Store) -> None:
    now = time.time()
    await store.put_response(_response("resp_old", created_at=now - 100, ttl=99))  # expired a second ago
    await store.put_response(_response("resp_new", created_at=now, ttl=3600))
    assert await store.get_response("resp_old", KEY_A) is None
    assert await store.response_chain("resp_old", KEY_A) is None
    assert await store.delete_response("resp_old", KEY_A) is False
    assert await store.purge_responses(now - 50) == 0  # not yet expired at that time
    assert await store.purge_responses(now) == 1
    assert await store.purge_responses(now) == 0  # gone, not merely hidden
    assert await store.get_response("resp_new", KEY_A) is not None
    assert await store.purge_responses(now + 3600) == 1  # expires_at itself counts as expired
    assert await store.get_response("resp_new", KEY_A) is None


async def test_purge_deletes_a_backlog_larger_than_one_batch(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    module = "switchboard.store.sqlite" if isinstance(store, SqliteStore) else "switchboard.store.postgres"
    monkeypatch.setattr(f"{module}.PURGE_BATCH", 3)
    now = time.time()
    for i in range(8):
        await store.put_response(_response(f"resp_old{i}", created_at=now - 100, ttl=10))
    await store.put_response(_response("resp_keep", created_at=now))
    assert await store.purge_responses(now) == 8
    assert await store.purge_responses(now) == 0
    assert await store.get_response("resp_keep", KEY_A) is not None


async def test_chain_is_oldest_first(store: Store) -> None:
    written = await _chain(store, 5)
    chain = await store.response_chain("resp_4", KEY_A)
    assert chain == written  # oldest first, every field intact
    assert _ids(await store.response_chain("resp_2", KEY_A)) == ["resp_0", "resp_1", "resp_2"]
    assert _ids(await store.response_chain("resp_0", KEY_A)) == ["resp_0"]
    assert await store.response_chain("resp_nope", KEY_A) is None


async def test_chain_ends_at_a_missing_expired_or_foreign_ancestor(store: Store) -> None:
    await _chain(store, 5)
    assert await store.delete_response("resp_1", KEY_A)
    chain = await store.response_chain("resp_4", KEY_A)
    assert _ids(chain) == ["resp_2", "resp_3", "resp_4"]
    assert chain is not None and chain[0].previous_response_id == "resp_1"  # how a caller sees the cut
    now = time.time()
    await store.put_response(_response("resp_3", previous="resp_2", created_at=now - 100, ttl=10))  # now expired
    assert _ids(await store.response_chain("resp_4", KEY_A)) == ["resp_4"]
    await store.put_response(_response("resp_b0", key_id=KEY_B))
    await store.put_response(_response("resp_a1", key_id=KEY_A, previous="resp_b0"))
    assert _ids(await store.response_chain("resp_a1", KEY_A)) == ["resp_a1"]


async def test_chain_depth_is_bounded_and_a_cycle_ends(store: Store) -> None:
    await _chain(store, 5)
    assert _ids(await store.response_chain("resp_4", KEY_A, max_depth=2)) == ["resp_3", "resp_4"]
    assert _ids(await store.response_chain("resp_4", KEY_A, max_depth=1)) == ["resp_4"]
    with pytest.raises(ValueError, match="max_depth"):
        await store.response_chain("resp_4", KEY_A, max_depth=0)
    # Replacing rows can make a cycle; the bound still ends the walk.
    await store.put_response(_response("resp_0", previous="resp_4"))
    assert _ids(await store.response_chain("resp_4", KEY_A, max_depth=7)) == [
        "resp_3", "resp_4", "resp_0", "resp_1", "resp_2", "resp_3", "resp_4"]


class _QueryLog:
    """Every SQL statement the store sends to the database, as the database driver reports it."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def on_responses(self) -> list[str]:
        return [s for s in self.statements if "sb_responses" in s]


async def _log_queries(store: Store) -> _QueryLog:
    log = _QueryLog()
    if isinstance(store, SqliteStore):
        conn = store._conn
        assert conn is not None
        conn.set_trace_callback(log.statements.append)  # called by SQLite for each statement it runs
        return log
    assert isinstance(store, PostgresStore)
    import asyncpg

    # A pool whose every connection reports each query it runs, whichever pool or connection API is used.
    def record(query: Any) -> None:
        log.statements.append(query.query)

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(record)

    old = store.pool
    store._pool = await asyncpg.create_pool(store.url, min_size=1, max_size=3, init=init)
    await old.close()
    return log


async def test_the_whole_chain_is_one_query(store: Store) -> None:
    await _chain(store, 6)
    log = await _log_queries(store)
    chain = await store.response_chain("resp_5", KEY_A)
    await asyncio.sleep(0)  # asyncpg reports queries with call_soon
    assert _ids(chain) == [f"resp_{i}" for i in range(6)]
    assert len(log.on_responses()) == 1, log.statements
    assert "RECURSIVE" in log.on_responses()[0]
    log.statements.clear()
    assert await store.response_chain("resp_missing", KEY_A) is None
    await asyncio.sleep(0)
    assert len(log.on_responses()) == 1


async def test_an_existing_database_gains_the_responses_table(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made before stored responses (schema version 1) gets the table when the new code opens it."""
    monkeypatch.setattr("switchboard.store.sqlite.MIGRATIONS", [m for m in MIGRATIONS if m[0] == 1])
    old = build_store("sqlite:///sb.db", tmp_path)
    await old.open()
    await old.close()
    with sqlite3.connect(tmp_path / "sb.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "sb_responses" not in tables and "sb_api_keys" in tables
    monkeypatch.undo()
    new = build_store("sqlite:///sb.db", tmp_path)
    await new.open()
    try:
        await new.put_response(_response("resp_up"))
        assert await new.get_response("resp_up", KEY_A) is not None
    finally:
        await new.close()
    with sqlite3.connect(tmp_path / "sb.db") as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        versions = [row[0] for row in conn.execute("SELECT version FROM sb_schema_version ORDER BY version")]
    assert "sb_responses_expires_at" in indexes and versions[0] == 1 and 10 in versions


def test_stored_size_is_the_bytes_of_the_json_columns() -> None:
    r = _response("resp_size", text="ü" * 1000)  # two bytes each in UTF-8
    expected = len(orjson.dumps(r.items)) + len(orjson.dumps(r.response))
    assert stored_size(r) == expected
    bigger = _response("resp_size", text="ü" * 2000)
    assert stored_size(bigger) - stored_size(r) == 2000  # 1000 more characters of 2 bytes, once in items
    bigger.response["output"].append({"type": "message", "content": "x" * 500})
    assert stored_size(bigger) - stored_size(r) > 2500


async def test_two_stores_on_one_postgres_share_a_conversation(pg_url: str, tmp_path: Path) -> None:
    a, b = build_store(pg_url, tmp_path), build_store(pg_url, tmp_path)
    await a.open()
    await b.open()  # the second instance finds the schema migrated and migrates nothing
    try:
        await a.put_response(_response("resp_t1", text="turn 1"))
        first = await b.get_response("resp_t1", KEY_A)
        assert first is not None and first.items[0]["content"][0]["text"] == "turn 1"
        await b.put_response(_response("resp_t2", previous="resp_t1", text="turn 2"))
        await a.put_response(_response("resp_t3", previous="resp_t2", text="turn 3"))
        for s in (a, b):
            assert _ids(await s.response_chain("resp_t3", KEY_A)) == ["resp_t1", "resp_t2", "resp_t3"]
            assert await s.get_response("resp_t3", KEY_B) is None
        assert await b.delete_response("resp_t2", KEY_A)
        assert _ids(await a.response_chain("resp_t3", KEY_A)) == ["resp_t3"]
        await b.put_response(_response("resp_old", created_at=time.time() - 100, ttl=1))
        assert await a.purge_responses(time.time()) == 1  # rows written by the other instance
    finally:
        await a.close()
        await b.close()
