"""Limits and token counts are 64-bit in both stores; a value the store cannot hold is a 400 naming the field.

The bug: `"tpm": 10000000000` answered 500 on PostgreSQL (its INTEGER is 32-bit; asyncpg raised
`DataError: value out of int32 range`) while SQLite took it. Checked through the real server on
both stores, on the store API, and on a database created before migration 2.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.store import UsageQuery, VirtualKey, build_store
from switchboard.store.base import MIGRATIONS
from tests.access.backends import PG_BASE, _pg
from tests.access.helpers import ADMIN, CHAT, access_config, bearer
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

BIG_TPM = 10_000_000_000  # above 2**31: what failed on PostgreSQL
INT64_MAX = 2**63 - 1


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def server(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    from tests.access.backends import pg_schema

    if request.param == "sqlite":
        proc = SwitchboardProcess(access_config(fake_openai, "sqlite:///data/ranges.db")).start()
        yield proc
        proc.stop()
        return
    with pg_schema() as url:
        proc = SwitchboardProcess(access_config(fake_openai, url)).start()
        yield proc
        proc.stop()


def test_limits_above_32_bits_are_stored_and_enforced(server: SwitchboardProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10, headers=ADMIN) as c:
        r = c.post("/admin/keys", json={"name": "big", "tpm": BIG_TPM, "rpm": INT64_MAX})
        assert r.status_code == 201, r.text
        key_id, secret = r.json()["id"], r.json()["key"]
        assert r.json()["tpm"] == BIG_TPM and r.json()["rpm"] == INT64_MAX
        got = c.get(f"/admin/keys/{key_id}").json()
        assert got["tpm"] == BIG_TPM and got["rpm"] == INT64_MAX
        r = c.patch(f"/admin/keys/{key_id}", json={"tpm": 2**62})
        assert r.status_code == 200 and r.json()["tpm"] == 2**62
        answer = c.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-limit-tokens"] == str(2**62)


@pytest.mark.parametrize(("field", "value"), [("tpm", 2**63), ("rpm", 2**64 - 1), ("tpm", -5)])
def test_a_value_the_store_cannot_hold_is_a_400_naming_the_field(server: SwitchboardProcess, field: str,
                                                                 value: int) -> None:
    with httpx.Client(base_url=server.url, timeout=10, headers=ADMIN) as c:
        r = c.post("/admin/keys", json={"name": "too-big", field: value})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == field and error["type"] == "invalid_request_error" and field in error["message"]
        key_id = c.post("/admin/keys", json={"name": "fine"}).json()["id"]
        r = c.patch(f"/admin/keys/{key_id}", json={field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field
        assert c.get(f"/admin/keys/{key_id}").json()[field] is None


def _version_1_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sb_schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for statement in MIGRATIONS[0][1]:
        assert isinstance(statement, str)
        conn.execute(statement.format(pk="INTEGER PRIMARY KEY", float="REAL"))
    conn.execute("INSERT INTO sb_schema_version VALUES (1, 0)")
    conn.commit()
    conn.close()


async def _version_1_postgres(url: str) -> None:
    schema = url.rpartition("search_path=")[2]
    sql = [f"SET search_path = {schema}",
           "CREATE TABLE sb_schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)",
           *(str(s).format(pk="BIGSERIAL PRIMARY KEY", float="DOUBLE PRECISION") for s in MIGRATIONS[0][1]),
           "INSERT INTO sb_schema_version VALUES (1, 0)"]
    await _pg("; ".join(sql), 30.0, PG_BASE)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_database_made_before_migration_2_holds_64_bit_values_after_it(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = "sqlite:///old.db"
        _version_1_sqlite(tmp_path / "old.db")
    else:
        url = request.getfixturevalue("pg_url")
        await _version_1_postgres(url)
    store = build_store(url, tmp_path)
    await store.open()
    try:
        key = VirtualKey(id="key_big", name="big", secret_hash="ab" * 32, hint="sk-sb-...big0", rpm=INT64_MAX,
                         tpm=BIG_TPM)
        await store.create_key(key)
        got = await store.get_key("key_big")
        assert got is not None and (got.rpm, got.tpm) == (INT64_MAX, BIG_TPM)
        updated = await store.update_key("key_big", {"tpm": 2**62})
        assert updated is not None and updated.tpm == 2**62
        row = (1.0, "req_big", "key_big", "/chat/completions", "m", "p", "u", 200, 0, 3_000_000_000, 2**40, 0.5,
               1.0, None, 2**33, 2**34, 2**35, 0, None)  # + cached, cache write, reasoning, estimated: 64-bit
        # too; the trace id last (none)
        await store.insert_usage([row])
        _, totals = await store.query_usage(UsageQuery(key_id="key_big"))
        assert (totals.prompt_tokens, totals.completion_tokens) == (3_000_000_000, 2**40)
    finally:
        await store.close()
    # Opening again finds every migration applied.
    store = build_store(url, tmp_path)
    await asyncio.wait_for(store.open(), 30)
    await store.close()


@pytest.mark.parametrize(("field", "value"), [("budget_usd", float("nan")), ("budget_usd", float("inf")),
                                              ("budget_usd", 10**400), ("expires_at", 10**400),
                                              ("expires_at", float("nan")), ("rpm", 2**63)])
def test_values_no_column_holds_are_refused_by_field(field: str, value: object) -> None:
    """What the CLI or a Python caller can pass (JSON cannot carry NaN or 10**400): a 400, not a 500."""
    from switchboard.access.keys import validate_key_fields
    from switchboard.errors import GatewayError

    with pytest.raises(GatewayError) as err:
        validate_key_fields({field: value}, creating=False)
    assert err.value.status == 400 and err.value.param == field
