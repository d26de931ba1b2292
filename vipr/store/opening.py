"""Opening a store's connection: the database file created owner-only, the PRAGMAs (with the
WAL switch's retry) and the schema migrations (vipr.store.schema)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiosqlite

from vipr.private_files import private_dir, private_file, tighten
from vipr.store.errors import StoreError
from vipr.store.schema import BUSY_TIMEOUT_MS, MIGRATIONS, SCHEMA_VERSION

__all__ = ["apply_pragma", "migrate", "private_database"]


def private_database(path: Path) -> None:
    """The database file exists 0600 before SQLite opens it, so the -wal/-shm it creates get
    0600 too (SQLite copies the database's mode); older files readable by others are
    tightened (vipr.private_files). The ticket HMAC keys live here."""
    private_dir(path.parent, warn=False)
    private_file(path, "database")
    for suffix in ("-wal", "-shm", "-journal"):
        tighten(path.with_name(path.name + suffix), "database file")


async def apply_pragma(db: aiosqlite.Connection, pragma: str) -> list[Any]:
    """Run one PRAGMA. Switching a fresh file to WAL needs an exclusive lock and SQLite answers
    SQLITE_BUSY at once, without its busy handler, when another process is opening the same file
    (sqlite.org/wal.html "persistence"): retry with a short backoff for up to busy_timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return list(await db.execute_fetchall(pragma))
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def migrate(db: aiosqlite.Connection, name: str) -> None:
    """Bring the schema to SCHEMA_VERSION; a no-op (no write lock) when it is current."""

    async def version() -> int:
        rows = list(await db.execute_fetchall("PRAGMA user_version"))
        return int(rows[0][0])

    if await version() == SCHEMA_VERSION:
        return
    await db.execute("BEGIN IMMEDIATE")
    try:
        current = await version()  # another process may have migrated meanwhile
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{name}: schema version {current} is newer than this vipr ({SCHEMA_VERSION})"
            )
        for step in MIGRATIONS[current:]:
            for stmt in step:
                await db.execute(stmt)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        await db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
