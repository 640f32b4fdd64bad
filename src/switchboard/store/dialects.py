"""Migration statements that apply to one SQL dialect only, and picking a statement for a dialect."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PostgresOnly", "SqliteOnly", "migration_sql"]


@dataclass(frozen=True, slots=True)
class PostgresOnly:
    """A migration statement that SQLite skips: its INTEGER already holds 64 bits, and it cannot
    change a column's type."""

    sql: str


@dataclass(frozen=True, slots=True)
class SqliteOnly:
    """A migration statement that PostgreSQL skips (its PostgreSQL twin is a `PostgresOnly`)."""

    sql: str


def migration_sql(statement: str | PostgresOnly | SqliteOnly, dialect: str) -> str | None:
    """The statement to run on `dialect` ("sqlite" or "postgresql"), None when it does not apply there."""
    if isinstance(statement, PostgresOnly):
        return statement.sql if dialect == "postgresql" else None
    if isinstance(statement, SqliteOnly):
        return statement.sql if dialect == "sqlite" else None
    return statement
