"""The store interface (keys, usage log, stored responses) and what both backends share: migrations and SQL.

A backend only runs statements; the SQL text, the migrations and the row mapping live here once.
Placeholders are written `{}` and filled per dialect (`?` for SQLite, `$n` for PostgreSQL).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from .dialects import PostgresOnly, SqliteOnly, migration_sql
from .records import KEY_FIELDS, USAGE_COLUMNS, StoredResponse, UsageQuery, UsageRow, UsageTotals, VirtualKey
from .rollup import ROLLUP_MIGRATION

__all__ = [
    "INT64_MAX",
    "KEY_COLUMNS",
    "MIGRATIONS",
    "PURGE_BATCH",
    "RESPONSE_CHAIN_SQL",
    "RESPONSE_COLUMNS",
    "RESPONSE_DELETE_SQL",
    "RESPONSE_EXISTS_SQL",
    "RESPONSE_GET_SQL",
    "RESPONSE_PURGE_SQL",
    "RESPONSE_PUT_SQL",
    "TOTALS_SQL",
    "USAGE_COLUMNS",
    "PostgresOnly",
    "SqliteOnly",
    "Store",
    "UsageValues",
    "chain_params",
    "key_from_row",
    "key_to_row",
    "key_update",
    "migration_sql",
    "response_from_row",
    "response_to_row",
    "stored_size",
    "totals_from_row",
    "usage_from_row",
    "usage_to_row",
    "usage_values",
    "usage_where",
    "visible_params",
]

UsageValues = tuple[Any, ...]
"""One usage log row as it is written: its column values in USAGE_COLUMNS order, `stream` as 0/1.

The usage log is written as these plain tuples (built once per request and handed to the database
driver as they are); `UsageRow` is what reads return."""


class Store(Protocol):
    """Keys CRUD, the usage log and stored responses. Every method is a coroutine; implementations are safe to share.

    Stored responses are private to the key that created them: a response another key created, or one
    past its `expires_at`, reads exactly like one that does not exist (never reveal which).
    """

    floor_sql: str  # the dialect's floor of `{x}` to an integer (for aggregates by time)

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def create_key(self, key: VirtualKey) -> None: ...
    async def get_key(self, key_id: str) -> VirtualKey | None: ...
    async def key_by_hash(self, secret_hash: str) -> VirtualKey | None: ...
    async def list_keys(self) -> list[VirtualKey]: ...
    async def update_key(self, key_id: str, changes: dict[str, Any]) -> VirtualKey | None: ...
    async def insert_usage(self, rows: Sequence[UsageValues]) -> None: ...
    async def query_usage(self, query: UsageQuery) -> tuple[list[UsageRow], UsageTotals]: ...
    async def spend(self, key_id: str, since: float) -> float: ...

    async def aggregate(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a read-only aggregate query over the usage log or its rollups (SQL from rollup.py, `{}`
        placeholders)."""
        ...

    async def put_response(self, r: StoredResponse) -> None:
        """Insert `r`; a row with the same id is replaced. The caller has checked its size (`stored_size`)."""
        ...

    async def get_response(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """The response if it exists, has not expired and was created by `key_id`; otherwise None."""
        ...

    async def delete_response(self, response_id: str, key_id: str | None) -> bool:
        """Delete the response if `get_response` would return it; whether it did."""
        ...

    async def response_exists(self, response_id: str) -> bool:
        """Whether a response with this id is stored (for any key, expired or not)."""
        ...

    async def response_chain(self, response_id: str, key_id: str | None,
                             max_depth: int = 1000) -> list[StoredResponse] | None:
        """The response and its ancestors via `previous_response_id`, oldest first, in one query.

        None if `response_id` itself is not visible to `key_id` (missing, expired, another key's). An
        ancestor that is missing, expired or another key's ends the chain there: the list then starts
        after the gap, and its first element's `previous_response_id` is not None. At most `max_depth`
        (>= 1) responses, the newest ones, are returned; the bound also ends a cycle made by replacing rows.
        """
        ...

    async def purge_responses(self, now: float) -> int:
        """Delete the responses expired at `now` (`expires_at <= now`), in batches; how many were deleted."""
        ...


INT64_MAX = 2**63 - 1
"""The largest count or limit the store holds (64-bit columns in both backends)."""


# Each migration is (version, statements), run in one transaction with its version row; statements
# are idempotent where they can be, so a crash mid-way is harmless;
# `{pk}` and `{float}` are the dialect's auto-increment key and double types.
MIGRATIONS: list[tuple[int, list[str | PostgresOnly | SqliteOnly]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS sb_api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            models TEXT NOT NULL,
            expires_at {float},
            rpm INTEGER,
            tpm INTEGER,
            budget_usd {float},
            budget_period TEXT NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0,
            created_at {float} NOT NULL,
            updated_at {float} NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS sb_usage (
            id {pk},
            ts {float} NOT NULL,
            request_id TEXT NOT NULL,
            key_id TEXT,
            endpoint TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            upstream_model TEXT,
            status INTEGER NOT NULL,
            stream INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost_usd {float} NOT NULL,
            latency_ms {float},
            ttft_ms {float})""",
        "CREATE INDEX IF NOT EXISTS sb_usage_ts ON sb_usage (ts)",
        "CREATE INDEX IF NOT EXISTS sb_usage_key_ts ON sb_usage (key_id, ts)",
    ]),
    # Limits and token counts are 64-bit: PostgreSQL's INTEGER is 32-bit, so `tpm: 10000000000` failed
    # there. Changing the type of the usage columns rewrites that table once (under the migration lock).
    (2, [
        PostgresOnly("ALTER TABLE sb_api_keys ALTER COLUMN rpm TYPE BIGINT, ALTER COLUMN tpm TYPE BIGINT"),
        PostgresOnly("ALTER TABLE sb_usage ALTER COLUMN prompt_tokens TYPE BIGINT, "
                     "ALTER COLUMN completion_tokens TYPE BIGINT"),
    ]),
    # Stored Responses API turns. Numbered 10, not 2: other branches add 2..9; keep this list sorted.
    (10, [
        """CREATE TABLE IF NOT EXISTS sb_responses (
            id TEXT PRIMARY KEY,
            key_id TEXT,
            created_at {float} NOT NULL,
            expires_at {float} NOT NULL,
            previous_response_id TEXT,
            model TEXT NOT NULL,
            items TEXT NOT NULL,
            input_count INTEGER NOT NULL,
            response TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS sb_responses_expires_at ON sb_responses (expires_at)",
    ]),
    # Cost that matches the bill: the cache and reasoning counts, `estimated` (the gateway counted a stream
    # that ended without usage), and `cost_usd` nullable (NULL: the model has no price). SQLite cannot drop
    # a NOT NULL, so the table is rebuilt, the same way in both dialects (the migration runs in one
    # transaction; the row ids are renumbered in their order, nothing refers to them).
    (20, [
        "ALTER TABLE sb_usage RENAME TO sb_usage_v19",
        "DROP INDEX IF EXISTS sb_usage_ts",
        "DROP INDEX IF EXISTS sb_usage_key_ts",
        """CREATE TABLE sb_usage (
            id {pk},
            ts {float} NOT NULL,
            request_id TEXT NOT NULL,
            key_id TEXT,
            endpoint TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            upstream_model TEXT,
            status INTEGER NOT NULL,
            stream INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost_usd {float},
            latency_ms {float},
            ttft_ms {float},
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            estimated INTEGER NOT NULL DEFAULT 0)""",
        PostgresOnly("ALTER TABLE sb_usage ALTER COLUMN prompt_tokens TYPE BIGINT, "
                     "ALTER COLUMN completion_tokens TYPE BIGINT, ALTER COLUMN cached_tokens TYPE BIGINT, "
                     "ALTER COLUMN cache_write_tokens TYPE BIGINT, ALTER COLUMN reasoning_tokens TYPE BIGINT"),
        """INSERT INTO sb_usage (ts, request_id, key_id, endpoint, model, provider, upstream_model, status, stream,
            prompt_tokens, completion_tokens, cost_usd, latency_ms, ttft_ms)
            SELECT ts, request_id, key_id, endpoint, model, provider, upstream_model, status, stream,
            prompt_tokens, completion_tokens, cost_usd, latency_ms, ttft_ms FROM sb_usage_v19 ORDER BY id""",
        "DROP TABLE sb_usage_v19",
        "CREATE INDEX IF NOT EXISTS sb_usage_ts ON sb_usage (ts)",
        "CREATE INDEX IF NOT EXISTS sb_usage_key_ts ON sb_usage (key_id, ts)",
    ]),
    # The dashboard (issue 16): admin roles on keys (NULL: none), and the usage log's rollups (rollup.py).
    (30, [
        "ALTER TABLE sb_api_keys ADD COLUMN role TEXT",
        *ROLLUP_MIGRATION,
    ]),
    # The request's trace id (32 hex digits) when tracing is configured, NULL otherwise: a usage row leads
    # to its trace. Version 40 is issue 17's traces half.
    (40, [
        "ALTER TABLE sb_usage ADD COLUMN trace_id TEXT",
    ]),
]

KEY_COLUMNS = ("id", "name", "secret_hash", "hint", "models", "expires_at", "rpm", "tpm", "budget_usd",
               "budget_period", "revoked", "created_at", "updated_at", "role")
_STREAM = USAGE_COLUMNS.index("stream")
_ESTIMATED = USAGE_COLUMNS.index("estimated")


def _column_value(name: str, value: Any) -> Any:
    if name == "models":
        return orjson.dumps(list(value)).decode()
    if name == "revoked":
        return 1 if value else 0
    return value


def key_to_row(key: VirtualKey) -> tuple[Any, ...]:
    return tuple(_column_value(c, getattr(key, c)) for c in KEY_COLUMNS)


def key_from_row(row: Sequence[Any]) -> VirtualKey:
    values = dict(zip(KEY_COLUMNS, row, strict=True))
    values["models"] = orjson.loads(values["models"])
    values["revoked"] = bool(values["revoked"])
    return VirtualKey(**values)


def key_update(changes: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Column names and values of an update; unknown fields are a programming error."""
    names: list[str] = []
    values: list[Any] = []
    for name, value in changes.items():
        if name not in (*KEY_FIELDS, "updated_at"):
            raise ValueError(f"not an updatable key field: {name}")
        names.append(name)
        values.append(_column_value(name, value))
    return names, values


usage_values: Callable[[UsageRow], tuple[Any, ...]] = operator.attrgetter(*USAGE_COLUMNS)
"""A row's column values in USAGE_COLUMNS order, `stream` still a bool."""


def usage_to_row(row: UsageRow) -> UsageValues:
    values = list(usage_values(row))
    values[_STREAM] = int(values[_STREAM])
    values[_ESTIMATED] = int(values[_ESTIMATED])
    return tuple(values)


def usage_from_row(row: Sequence[Any]) -> UsageRow:
    values = dict(zip(USAGE_COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
    values["estimated"] = bool(values["estimated"])
    return UsageRow(**values)


def usage_where(query: UsageQuery) -> tuple[str, list[Any]]:
    """A WHERE clause with `{}` placeholders, and its parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for column, op, value in (("key_id", "=", query.key_id), ("model", "=", query.model), ("ts", ">=", query.since),
                              ("ts", "<", query.until), ("status", "=", query.status)):
        if value is not None:
            parts.append(f"{column} {op} {{}}")
            params.append(value)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


TOTALS_SQL = ("SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
              "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cache_write_tokens), 0), "
              "COALESCE(SUM(reasoning_tokens), 0), COUNT(*) - COUNT(cost_usd), COALESCE(SUM(estimated), 0) "
              "FROM sb_usage")


def totals_from_row(row: Sequence[Any]) -> UsageTotals:
    return UsageTotals(requests=int(row[0]), prompt_tokens=int(row[1]), completion_tokens=int(row[2]),
                       cost_usd=float(row[3]), cached_tokens=int(row[4]), cache_write_tokens=int(row[5]),
                       reasoning_tokens=int(row[6]), unpriced=int(row[7]), estimated=int(row[8]))


# --------------------------------------------------------------------------------------------
# Stored responses. `items` and `response` are JSON text (orjson). Visibility is one predicate used by
# every read: the owner matches and the row has not expired. The owner is compared as
# `COALESCE(key_id, '')` so that "no key" (auth disabled) is a plain value in both dialects; key ids
# are never empty.

RESPONSE_COLUMNS = ("id", "key_id", "created_at", "expires_at", "previous_response_id", "model", "items",
                    "input_count", "response")
_RESPONSE_LIST = ", ".join(RESPONSE_COLUMNS)
_VISIBLE = "COALESCE(key_id, '') = {} AND expires_at > {}"

RESPONSE_PUT_SQL = (
    f"INSERT INTO sb_responses ({_RESPONSE_LIST}) VALUES ({', '.join(['{}'] * len(RESPONSE_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in RESPONSE_COLUMNS[1:]))
"""Parameters: `response_to_row(r)`."""

RESPONSE_GET_SQL = f"SELECT {_RESPONSE_LIST} FROM sb_responses WHERE id = {{}} AND {_VISIBLE}"
"""Parameters: `visible_params(...)`."""

RESPONSE_DELETE_SQL = f"DELETE FROM sb_responses WHERE id = {{}} AND {_VISIBLE}"
"""Parameters: `visible_params(...)`."""

RESPONSE_EXISTS_SQL = "SELECT 1 FROM sb_responses WHERE id = {}"
"""Parameters: the response id."""
"""Parameters: `visible_params(...)`."""

RESPONSE_CHAIN_SQL = (
    f"WITH RECURSIVE chain AS ("
    f"SELECT 0 AS depth, {_RESPONSE_LIST} FROM sb_responses WHERE id = {{}} AND {_VISIBLE} "
    f"UNION ALL "
    f"SELECT chain.depth + 1, {', '.join('r.' + c for c in RESPONSE_COLUMNS)} "
    f"FROM sb_responses r JOIN chain ON r.id = chain.previous_response_id "
    f"WHERE chain.depth < {{}} AND COALESCE(r.key_id, '') = {{}} AND r.expires_at > {{}}) "
    f"SELECT {_RESPONSE_LIST} FROM chain ORDER BY depth DESC")
"""Parameters: `chain_params(...)`. One statement: the newest row, then each parent while it is visible."""

PURGE_BATCH = 1000
"""Rows deleted per purge statement: a big backlog never holds the database (or SQLite's one thread) long."""

RESPONSE_PURGE_SQL = ("DELETE FROM sb_responses WHERE id IN "
                      "(SELECT id FROM sb_responses WHERE expires_at <= {} LIMIT {})")
"""Parameters: `(now, PURGE_BATCH)`; repeat while a batch deletes PURGE_BATCH rows."""


def _owner(key_id: str | None) -> str:
    return key_id or ""


def visible_params(response_id: str, key_id: str | None, now: float) -> tuple[str, str, float]:
    return response_id, _owner(key_id), float(now)


def chain_params(response_id: str, key_id: str | None, now: float, max_depth: int) -> tuple[Any, ...]:
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    owner = _owner(key_id)
    return response_id, owner, float(now), max_depth - 1, owner, float(now)


def stored_size(r: StoredResponse) -> int:
    """Bytes the response takes in the store's JSON columns (`items` and `response`), as `put_response` writes them.

    Serialises both (orjson: about a millisecond per MiB); the headend compares it with
    `responses.max_stored_bytes` before `put_response`.
    """
    return len(orjson.dumps(r.items)) + len(orjson.dumps(r.response))


def response_to_row(r: StoredResponse) -> tuple[Any, ...]:
    return (r.id, r.key_id, float(r.created_at), float(r.expires_at), r.previous_response_id, r.model,
            orjson.dumps(r.items).decode(), int(r.input_count), orjson.dumps(r.response).decode())


def response_from_row(row: Sequence[Any]) -> StoredResponse:
    (id_, key_id, created_at, expires_at, previous, model, items, input_count, response) = row
    return StoredResponse(id=id_, key_id=key_id, created_at=float(created_at), expires_at=float(expires_at),
                          previous_response_id=previous, model=model, items=orjson.loads(items),
                          input_count=int(input_count), response=orjson.loads(response))
