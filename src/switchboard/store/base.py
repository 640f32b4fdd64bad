"""The store interface (keys and usage log) and what both backends share: schema migrations and SQL.

A backend only runs statements; the SQL text, the migrations and the row mapping live here once.
Placeholders are written `{}` and filled per dialect (`?` for SQLite, `$n` for PostgreSQL).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .records import KEY_FIELDS, UsageQuery, UsageRow, UsageTotals, VirtualKey

__all__ = [
    "INT64_MAX",
    "KEY_COLUMNS",
    "MIGRATIONS",
    "TOTALS_SQL",
    "USAGE_COLUMNS",
    "PostgresOnly",
    "Store",
    "UsageValues",
    "key_from_row",
    "key_to_row",
    "key_update",
    "migration_sql",
    "totals_from_row",
    "usage_from_row",
    "usage_to_row",
    "usage_values",
    "usage_where",
]

UsageValues = tuple[Any, ...]
"""One usage log row as it is written: its column values in USAGE_COLUMNS order, `stream` as 0/1.

The usage log is written as these plain tuples (built once per request and handed to the database
driver as they are); `UsageRow` is what reads return."""


class Store(Protocol):
    """Keys CRUD and the usage log. Every method is a coroutine; implementations are safe to share."""

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


INT64_MAX = 2**63 - 1
"""The largest count or limit the store holds (64-bit columns in both backends)."""


@dataclass(frozen=True, slots=True)
class PostgresOnly:
    """A migration statement that SQLite skips: its INTEGER already holds 64 bits, and it cannot
    change a column's type."""

    sql: str


def migration_sql(statement: str | PostgresOnly, dialect: str) -> str | None:
    """The statement to run on `dialect` ("sqlite" or "postgresql"), None when it does not apply there."""
    if isinstance(statement, PostgresOnly):
        return statement.sql if dialect == "postgresql" else None
    return statement


# Each migration is (version, statements). Statements are idempotent so a crash mid-way is harmless;
# `{pk}` and `{float}` are the dialect's auto-increment key and double types.
MIGRATIONS: list[tuple[int, list[str | PostgresOnly]]] = [
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
]

KEY_COLUMNS = ("id", "name", "secret_hash", "hint", "models", "expires_at", "rpm", "tpm", "budget_usd",
               "budget_period", "revoked", "created_at", "updated_at")
USAGE_COLUMNS = ("ts", "request_id", "key_id", "endpoint", "model", "provider", "upstream_model", "status", "stream",
                 "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "ttft_ms")
_STREAM = USAGE_COLUMNS.index("stream")


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
    values = usage_values(row)
    return (*values[:_STREAM], int(values[_STREAM]), *values[_STREAM + 1:])


def usage_from_row(row: Sequence[Any]) -> UsageRow:
    values = dict(zip(USAGE_COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
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
              "COALESCE(SUM(cost_usd), 0) FROM sb_usage")


def totals_from_row(row: Sequence[Any]) -> UsageTotals:
    return UsageTotals(requests=int(row[0]), prompt_tokens=int(row[1]), completion_tokens=int(row[2]),
                       cost_usd=float(row[3]))
