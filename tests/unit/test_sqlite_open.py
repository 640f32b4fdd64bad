"""Opening the SQLite store while another process holds the database's write lock: several workers
starting together on a new database do this to each other, and SQLite refuses the switch to WAL at
once (no busy wait) while another connection holds the RESERVED lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from switchboard.store import sqlite as module
from switchboard.store.sqlite import SqliteStore


async def test_open_waits_for_another_connection_to_release_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE elsewhere (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")  # what a starting worker's migration holds
    released = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    released.start()
    store = SqliteStore(path)
    try:
        await store.open()
        await store.ping()
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        released.join()
        await store.close()
        other.close()


async def test_a_lock_held_past_the_busy_timeout_still_fails_the_open(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "switchboard.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE elsewhere (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    store = SqliteStore(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.open()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
