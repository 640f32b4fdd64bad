"""Storage of virtual keys, the usage log and stored responses: SQLite by default, PostgreSQL for shared deployments."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from .base import Store, UsageValues, stored_size
from .records import BUDGET_PERIODS, KEY_ROLES, StoredResponse, UsageQuery, UsageRow, UsageTotals, VirtualKey

__all__ = ["BUDGET_PERIODS", "KEY_ROLES", "Store", "StoredResponse", "UsageQuery", "UsageRow", "UsageTotals",
           "UsageValues", "VirtualKey", "build_store", "stored_size"]


def build_store(url: str, base_dir: Path) -> Store:
    """The store named by `store.url`; nothing is opened yet. A relative SQLite path is relative to the config."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore

        raw = url[len("sqlite://"):]
        # sqlite:///rel.db -> "rel.db" (relative), sqlite:////abs.db -> "/abs.db"
        path = Path(raw[1:] if raw.startswith("/") else raw)
        if not raw or not str(path):
            raise ConfigError(f"`store.url` names no file: {url}")
        return SqliteStore(path if path.is_absolute() else base_dir / path)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError("`store.url` must start with sqlite:/// or postgresql://")
