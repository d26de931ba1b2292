"""A second SQLite connection used on the event loop's own thread, for the hot paths' short
statements (a few rows through an index), so they cost no hand-off to aiosqlite's thread.

Why: each aiosqlite operation is a queue hand-off, a thread wake-up, a self-pipe write back to
the loop and two GIL transfers. With the loop busy (PVP's TLS-SRP), that costs the loop more CPU
than SQLite's own work on an indexed row: bench/pvp.py measured ~0.8 ms per hop on the loop
against tens of µs for the statement itself (docs/benchmarks.md ## PVP, "Third round").

What keeps the loop safe (the DESIGN §8 rules still hold for everything else):
- `busy_timeout = 0`: this connection never waits for a lock. SQLITE_BUSY / SQLITE_LOCKED raise
  `LoopBusy` after a rollback, and `Store` runs the same work on its aiosqlite thread instead,
  which waits up to its busy_timeout. In WAL mode readers are not blocked by the writer, so
  this happens only to writes that meet another writer.
- `wal_autocheckpoint = 0`: a checkpoint (copying WAL pages into the database, fsync) never
  runs here. `Store` runs a PASSIVE checkpoint on its worker thread every `CHECKPOINT_EVERY`
  commits made on this connection.
- only the statements `Store` marks `on_loop` use it: point lookups and one-row or
  few-row writes. Bulk work and purges stay on the worker thread.
- it is opened lazily on first use and belongs to that thread; used from another thread
  (a second event loop) it answers `LoopBusy` too, so the work goes to the worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

__all__ = ["CHECKPOINT_EVERY", "LoopBusy", "LoopConnection", "immediate_transaction"]

T = TypeVar("T")

CHECKPOINT_EVERY = 200  # commits here between PASSIVE checkpoints (~2-4 WAL pages each)
_PRAGMAS = (
    "PRAGMA busy_timeout=0",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA wal_autocheckpoint=0",
)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class LoopBusy(Exception):
    """The database was locked; nothing was changed. Run the work where waiting is allowed."""


@contextmanager
def _busy_as_loop_busy() -> Iterator[None]:
    """SQLITE_BUSY / SQLITE_LOCKED (extended codes too) become LoopBusy; other errors pass."""
    try:
        yield
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _BUSY_CODES:
            raise LoopBusy(str(e)) from None
        raise


def immediate_transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """BEGIN IMMEDIATE, `body(conn)`, COMMIT; ROLLBACK on any error (the store's one way to
    write, on either of its connections)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):  # no transaction was open
            conn.execute("ROLLBACK")
        raise
    return out


class LoopConnection:
    """The loop thread's connection to the database file at `path` (not ":memory:")."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.commits = 0
        self._conn: sqlite3.Connection | None = None
        self._thread = 0

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            if threading.get_ident() != self._thread:
                raise LoopBusy("used from another thread")
            return self._conn
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            with _busy_as_loop_busy():
                for pragma in _PRAGMAS:
                    conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        self._conn, self._thread = conn, threading.get_ident()
        return conn

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one statement in autocommit mode and return its rows."""
        conn = self._open()
        with _busy_as_loop_busy():
            return conn.execute(sql, params).fetchall()

    def transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """BEGIN IMMEDIATE, `body(conn)`, COMMIT; ROLLBACK on any error (LoopBusy when the
        error was a lock)."""
        conn = self._open()
        with _busy_as_loop_busy():
            out = immediate_transaction(conn, body)
        self.commits += 1
        return out

    def checkpoint_due(self) -> bool:
        return self.commits > 0 and self.commits % CHECKPOINT_EVERY == 0

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and threading.get_ident() == self._thread:
            conn.close()
