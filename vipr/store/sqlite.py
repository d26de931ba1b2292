"""The SQLite backend of the store (DESIGN §8): the embedded default, one file per provider.

SQLite in WAL mode through aiosqlite, shared by the overlay, pvp and proxy processes of one
provider; the hot paths' short statements run on a second connection owned by the loop's
thread (`vipr.store.loopconn`). Rules (DESIGN §8): `synchronous=NORMAL`,
`busy_timeout` ≥ 5 s, every write transaction starts with `BEGIN IMMEDIATE` (a deferred
read-then-write cannot wait for the lock and fails with "database is locked" under
contention), transactions are short, bulk inserts use `executemany` in one transaction.
The API and its docs: `vipr.store.api`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TypeVar, cast

import aiosqlite

from vipr.metrics import StoreTimer
from vipr.store.api import Store, next_epoch, recent_key, vcr_change_steps
from vipr.store.errors import NotFoundError, StoreError
from vipr.store.loopconn import LoopBusy, LoopConnection, immediate_transaction
from vipr.store.models import (
    DIRECTIONS,
    UNKNOWN_CALLER,
    Direction,
    PublishedNumber,
    Route,
    TicketKey,
    ValidationRecord,
    Vcr,
    VcrChange,
)
from vipr.store.opening import apply_pragma, migrate, private_database
from vipr.store.rows import (
    COMPLETE_VCR,
    INSERT_VALIDATION,
    INSERT_VCR,
    KEY_COLS,
    ROUTE_COLS,
    VALIDATION_COLS,
    VCR_COLS,
    Row,
    key_from_row,
    route_from_row,
    route_params,
    validation_from_row,
    validation_params,
    vcr_from_row,
    vcr_params,
)
from vipr.store.schema import PRAGMAS, TABLE_COLUMNS, TABLE_KEY, TABLES

__all__ = ["SqliteStore"]

T = TypeVar("T")
_READ, _WRITE = StoreTimer("sqlite", "read"), StoreTimer("sqlite", "write")

# One failed PVP handshake against a terminating VCR (DESIGN §5); also run by the decoy path.
_RECORD_FAILURE = (
    "UPDATE vcr SET failures = failures + 1,"
    " burned = CASE WHEN failures + 1 >= ? THEN 1 ELSE burned END"
    f" WHERE id = ? RETURNING {VCR_COLS}"
)
MAX_ON_LOOP_ROWS = 64  # inserts in one transaction on the loop's thread (vipr.store.loopconn)

log = logging.getLogger("vipr.store")


def _limit(limit: int | None) -> int:
    return -1 if limit is None else max(0, int(limit))  # SQLite: LIMIT -1 = no limit


class SqliteStore(Store):
    """One connection to the provider's SQLite file; several processes may each open their
    own. Always close it (or use `async with`): aiosqlite's worker thread keeps the process
    alive otherwise."""

    def __init__(self, path: str, db: aiosqlite.Connection) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = db
        # One aiosqlite connection runs one operation at a time; the lock orders this store's
        # reads, write transactions (each one hand-off, `_transaction`) and close between tasks.
        self._lock = asyncio.Lock()
        # Hot paths' short statements run here, on the loop's thread (vipr.store.loopconn).
        self._loop_conn = LoopConnection(path) if path != ":memory:" else None
        self._checkpoint: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def connect(cls, path: str | Path) -> SqliteStore:
        name = str(path)
        try:
            if name != ":memory:":
                private_database(Path(name))
            db = await aiosqlite.connect(name, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open database {name}: {e}") from e
        try:
            for pragma in PRAGMAS:
                rows = await apply_pragma(db, pragma)
                if pragma.startswith("PRAGMA journal_mode") and name != ":memory:":
                    mode = str(rows[0][0]).lower() if rows else "?"
                    if mode != "wal":
                        raise StoreError(f"{name}: journal_mode is {mode}, WAL required")
            await migrate(db, name)
        except sqlite3.Error as e:
            await db.close()
            raise StoreError(f"cannot open database {name}: {e}") from e
        except BaseException:
            await db.close()
            raise
        return cls(name, db)

    async def close(self) -> None:
        """Close the connection; later calls raise StoreError. Closing twice is fine."""
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        db, self._db = self._db, None
        if self._loop_conn is not None:
            with suppress(sqlite3.Error):
                self._loop_conn.close()
        if db is not None:
            async with self._lock:
                try:
                    await db.close()
                except sqlite3.Error as e:
                    raise StoreError(f"closing {self.path}: {e}") from e

    @property
    def backend(self) -> str:
        return "sqlite"

    async def schema_version(self) -> int:
        return int((await self._fetch("PRAGMA user_version"))[0][0])

    async def row_counts(self) -> dict[str, int]:
        return {t: int((await self._fetch(f"SELECT count(*) FROM {t}"))[0][0]) for t in TABLES}

    # ---------------------------------------------------------------- plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"store {self.path} is closed")
        return self._db

    async def _fetch(
        self, sql: str, params: Sequence[object] = (), *, on_loop: bool = False
    ) -> list[Row]:
        t0, ok = time.perf_counter(), False
        try:
            rows = await self._fetch_rows(sql, params, on_loop=on_loop)
            ok = True
            return rows
        finally:
            _READ.done(t0, ok)

    async def _fetch_rows(
        self, sql: str, params: Sequence[object] = (), *, on_loop: bool = False
    ) -> list[Row]:
        """One statement's rows. `on_loop`: a short indexed read, run on the loop's thread
        (vipr.store.loopconn) unless the database is locked."""
        if on_loop and self._loop_conn is not None:
            self._conn()  # closed → StoreError
            try:
                return self._loop_conn.fetch(sql, params)
            except LoopBusy:
                pass
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e
        async with self._lock:
            db = self._conn()
            try:
                return list(await db.execute_fetchall(sql, params))
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    async def _transaction(
        self, body: Callable[[sqlite3.Connection], T], *, on_loop: bool = False
    ) -> T:
        t0, ok = time.perf_counter(), False
        try:
            out = await self._run_transaction(body, on_loop=on_loop)
            ok = True
            return out
        finally:
            _WRITE.done(t0, ok)

    async def _run_transaction(
        self, body: Callable[[sqlite3.Connection], T], *, on_loop: bool = False
    ) -> T:
        """A short write transaction in one hand-off to aiosqlite's worker thread: BEGIN
        IMMEDIATE, `body(conn)`, COMMIT there, ROLLBACK on any error.

        `on_loop`: a write of a few rows through an index, run on the loop's thread instead
        (vipr.store.loopconn), falling back to the worker thread when the database is locked;
        `body` then runs twice at most (the first attempt rolled back).

        One hop instead of one per statement: with the event loop busy (TLS-SRP), each hop
        costs a thread wake-up, a self-pipe write and a wait for the GIL, and these cost more
        CPU than SQLite's own work (docs/benchmarks.md ## PVP). `body` runs in the worker
        thread and must be plain sqlite3 code: no awaits, nothing that touches the loop. A
        cancelled caller does not cut it short: the transaction still commits or rolls back
        as a whole before the next queued operation runs (aiosqlite's queue is FIFO).
        """

        def run() -> T:  # db._conn: the sqlite3 connection, on the thread that owns it
            return immediate_transaction(db._conn, body)

        if on_loop and self._loop_conn is not None:
            self._conn()  # closed → StoreError
            try:
                out = self._loop_conn.transaction(body)
            except LoopBusy:
                pass
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e
            else:
                if self._loop_conn.checkpoint_due():
                    self._start_checkpoint()
                return out
        async with self._lock:
            db = self._conn()
            # aiosqlite has no public "run this function on the connection's thread"; its
            # `_execute` (queue + future) is that, unchanged since 0.17 (pinned < 0.23).
            submit = cast(Callable[[Callable[[], T]], Awaitable[T]], db._execute)
            try:
                return await submit(run)
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    def _start_checkpoint(self) -> None:
        """WAL checkpoint on the worker thread for the commits made on the loop's connection
        (which never checkpoints itself); one at a time, awaited by close()."""
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            await self._fetch("PRAGMA wal_checkpoint(PASSIVE)")
        except StoreError as e:  # the next one retries; the WAL only grows meanwhile
            log.warning("WAL checkpoint of %s failed: %s", self.path, e)

    async def _write_fetch(
        self, sql: str, params: Sequence[object] = (), *, on_loop: bool = False
    ) -> list[Row]:
        return await self._transaction(lambda c: c.execute(sql, params).fetchall(),
                                       on_loop=on_loop)

    async def _write_count(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self._transaction(lambda c: c.execute(sql, params).rowcount)

    # ---------------------------------------------------------------- whole tables

    async def export_rows(self, table: str, after: object | None, limit: int
                          ) -> list[tuple[object, ...]]:
        cols, key = ", ".join(TABLE_COLUMNS[table]), TABLE_KEY[table]
        where, params = (f" WHERE {key} > ?", [after]) if after is not None else ("", [])
        rows = await self._fetch(f"SELECT {cols} FROM {table}{where} ORDER BY {key} LIMIT ?",
                                 [*params, int(limit)])
        return [tuple(r) for r in rows]

    async def import_rows(self, table: str, rows: Sequence[tuple[object, ...]]) -> int:
        if not rows:
            return 0
        cols = TABLE_COLUMNS[table]
        sql = (f"INSERT INTO {table} ({', '.join(cols)})"
               f" VALUES ({', '.join('?' for _ in cols)}) ON CONFLICT DO NOTHING")
        data = [tuple(r) for r in rows]
        return await self._transaction(lambda c: c.executemany(sql, data).rowcount)

    async def max_key(self, table: str) -> object | None:
        rows = await self._fetch(f"SELECT max({TABLE_KEY[table]}) FROM {table}")
        return rows[0][0] if rows else None

    # ---------------------------------------------------------------- VCRs

    async def add_vcr(self, v: Vcr) -> int | None:
        params = vcr_params(v)
        rows = await self._write_fetch(INSERT_VCR + " RETURNING id", params)
        return int(rows[0][0]) if rows else None

    async def add_vcrs(self, vs: Iterable[Vcr]) -> int:
        params = [vcr_params(v) for v in vs]
        if not params:
            return 0
        return await self._transaction(lambda c: c.executemany(INSERT_VCR, params).rowcount)

    async def add_vcrs_ids(self, vs: Sequence[Vcr]) -> list[int | None]:
        if not vs:
            return []
        params = [vcr_params(v) for v in vs]

        def body(c: sqlite3.Connection) -> list[int | None]:
            out: list[int | None] = []
            for p in params:
                rows = c.execute(INSERT_VCR + " RETURNING id", p).fetchall()
                out.append(int(rows[0][0]) if rows else None)
            return out

        return await self._transaction(body)

    async def apply_vcr_changes(self, changes: Sequence[VcrChange]) -> list[int | None]:
        steps = vcr_change_steps(changes)
        if not steps:
            return []

        def body(c: sqlite3.Connection) -> list[int | None]:
            out: list[int | None] = []
            for insert, complete in steps:
                rows = c.execute(COMPLETE_VCR, complete).fetchall() if complete else []
                if not rows:
                    rows = c.execute(INSERT_VCR + " RETURNING id", insert).fetchall()
                out.append(int(rows[0][0]) if rows else None)
            return out

        # The proxy's batches are small and indexed (call_id, direction): on the loop's thread.
        return await self._transaction(body, on_loop=len(steps) <= MAX_ON_LOOP_ROWS)

    async def find_open_vcrs(self, call_id: str | None = None) -> list[tuple[Vcr, str | None]]:
        where, params = ("call_id = ? AND ", (call_id,)) if call_id is not None else ("", ())
        rows = await self._fetch(
            f"SELECT {VCR_COLS}, dialog FROM vcr WHERE {where}state = 'open'"
            " ORDER BY start, id", params)
        return [(vcr_from_row(r), r[12]) for r in rows]

    async def close_unterminated(self, started_before: float) -> int:
        return await self._write_count(
            "UPDATE vcr SET state = 'unterminated', dialog = NULL"
            " WHERE state = 'open' AND start < ?", (float(started_before),))

    async def get_vcr(self, id: int) -> Vcr | None:
        rows = await self._fetch(f"SELECT {VCR_COLS} FROM vcr WHERE id = ?", (id,), on_loop=True)
        return vcr_from_row(rows[0]) if rows else None

    async def list_vcrs(
        self, since: float | None = None, direction: Direction | None = None,
        limit: int | None = 100,
    ) -> list[Vcr]:
        where, params = ["1"], []  # type: list[str], list[object]
        if since is not None:
            where.append("start >= ?")
            params.append(float(since))
        if direction is not None:
            if direction not in DIRECTIONS:
                raise StoreError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
            where.append("direction = ?")
            params.append(direction)
        params.append(_limit(limit))
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE {' AND '.join(where)}"
            " ORDER BY start DESC, id DESC LIMIT ?",
            params,
        )
        return [vcr_from_row(r) for r in rows]

    async def find_terminating_candidates(
        self, callee: str, caller: str, start_from: float, start_to: float, now: float,
        max_age: float,
    ) -> list[Vcr]:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE callee = ? AND start >= ? AND start < ?"
            " AND start >= ? AND direction = 'terminating' AND burned = 0"
            " AND state = 'complete'"   # DESIGN §7: only a real stop time validates
            " AND (caller = ? OR caller = ?) ORDER BY start DESC, id DESC",
            (callee, float(start_from), float(start_to), float(now) - float(max_age), caller,
             UNKNOWN_CALLER),
            on_loop=True,  # PVP server, every attempt: index vcr_callee_start
        )
        return [vcr_from_row(r) for r in rows]

    async def pending_originating_vcrs(self, min_duration: float) -> list[Vcr]:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr INDEXED BY vcr_pending WHERE direction = 'originating'"
            " AND validated IS NULL AND burned = 0 AND state = 'complete' AND stop - start >= ?"
            " ORDER BY start, id",
            (float(min_duration),),
        )
        return [vcr_from_row(r) for r in rows]

    async def latest_originating_vcr(self, callee: str) -> Vcr | None:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE callee = ? AND direction = 'originating'"
            " AND state = 'complete' ORDER BY start DESC, id DESC LIMIT 1",
            (callee,),
        )
        return vcr_from_row(rows[0]) if rows else None

    async def record_vcr_failure(self, id: int, max_failures: int) -> Vcr:
        rows = await self._write_fetch(_RECORD_FAILURE, (int(max_failures), id), on_loop=True)
        if not rows:
            raise NotFoundError(f"no VCR with id {id}")
        return vcr_from_row(rows[0])

    async def record_decoy_failure(self, max_failures: int) -> None:
        await self._write_fetch(_RECORD_FAILURE, (int(max_failures), 0), on_loop=True)

    async def mark_vcr_validated(self, id: int, when: float) -> bool:
        n = await self._write_count("UPDATE vcr SET validated = ? WHERE id = ?", (float(when), id))
        return n > 0

    async def delete_vcr(self, id: int) -> bool:
        return await self._write_count("DELETE FROM vcr WHERE id = ?", (id,)) > 0

    async def purge_vcrs(self, older_than: float) -> int:
        return await self._write_count("DELETE FROM vcr WHERE start < ?", (float(older_than),))

    # ---------------------------------------------------------------- routes

    async def upsert_route(self, r: Route) -> None:
        await self._write_count(
            f"INSERT INTO route ({ROUTE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET routes = excluded.routes,"
            " ticket = excluded.ticket, ticket_expires = excluded.ticket_expires,"
            " expires = excluded.expires, learned_from_node = excluded.learned_from_node,"
            " learned_from_domain = excluded.learned_from_domain,"
            " validated_at = excluded.validated_at, last_used = excluded.last_used,"
            " failures = excluded.failures",
            route_params(r),
        )

    async def learn_route(self, r: Route, vcr_id: int | None) -> None:
        params = route_params(r)

        def body(c: sqlite3.Connection) -> None:
            c.execute(f"INSERT OR REPLACE INTO route ({ROUTE_COLS})"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", params)
            if vcr_id is not None:
                c.execute("UPDATE vcr SET validated = ? WHERE id = ?",
                          (float(r.validated_at), vcr_id))

        await self._transaction(body, on_loop=True)  # PVP client, every learned route

    async def get_route(self, number: str) -> Route | None:
        rows = await self._fetch(f"SELECT {ROUTE_COLS} FROM route WHERE number = ?", (number,))
        return route_from_row(rows[0]) if rows else None

    async def list_routes(self) -> list[Route]:
        rows = await self._fetch(f"SELECT {ROUTE_COLS} FROM route ORDER BY number")
        return [route_from_row(r) for r in rows]

    async def record_route_failure(self, number: str, max_failures: int) -> bool:
        def body(c: sqlite3.Connection) -> bool:
            rows = c.execute(
                "UPDATE route SET failures = failures + 1 WHERE number = ? RETURNING failures",
                (number,),
            ).fetchall()
            if not rows or int(rows[0][0]) < max_failures:
                return False
            c.execute("DELETE FROM route WHERE number = ?", (number,))
            return True

        return await self._transaction(body)

    async def touch_route(self, number: str, when: float) -> bool:
        n = await self._write_count(
            "UPDATE route SET last_used = ? WHERE number = ?", (float(when), number)
        )
        return n > 0

    async def delete_route(self, number: str) -> bool:
        return await self._write_count("DELETE FROM route WHERE number = ?", (number,)) > 0

    # ---------------------------------------------------------------- published numbers

    async def set_published(self, p: PublishedNumber) -> None:
        await self._write_count(
            "INSERT INTO published_number (number, vservice, stored_at, expires)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (number) DO UPDATE SET"
            " vservice = excluded.vservice, stored_at = excluded.stored_at,"
            " expires = excluded.expires",
            (p.number, p.vservice, float(p.stored_at), float(p.expires)),
        )

    async def list_published(self) -> list[PublishedNumber]:
        rows = await self._fetch(
            "SELECT number, vservice, stored_at, expires FROM published_number ORDER BY number"
        )
        return [PublishedNumber(number=r[0], vservice=r[1], stored_at=r[2], expires=r[3])
                for r in rows]

    async def delete_published(self, number: str) -> bool:
        n = await self._write_count("DELETE FROM published_number WHERE number = ?", (number,))
        return n > 0

    # ---------------------------------------------------------------- ticket keys

    async def create_ticket_key(self, now: float, *,
                                unless_created_since: float | None = None) -> TicketKey:
        secret = secrets.token_bytes(32)

        def body(c: sqlite3.Connection) -> TicketKey:
            rows = c.execute(
                "SELECT epoch, secret, created, retired, serial FROM ticket_key").fetchall()
            keep = recent_key(rows, unless_created_since)
            if keep is not None:
                return keep
            epoch, serial = next_epoch(
                (int(r[0]), r[3] is not None, int(r[4])) for r in rows)
            c.execute(
                "INSERT OR REPLACE INTO ticket_key (epoch, secret, created, retired, serial)"
                " VALUES (?, ?, ?, NULL, ?)",
                (epoch, secret, float(now), serial),
            )
            return TicketKey(epoch=epoch, secret=secret, created=float(now), retired=None)

        return await self._transaction(body)

    async def current_ticket_key(self) -> TicketKey | None:
        rows = await self._fetch(
            f"SELECT {KEY_COLS} FROM ticket_key WHERE retired IS NULL"
            " ORDER BY serial DESC LIMIT 1",
            on_loop=True,
        )
        return key_from_row(rows[0]) if rows else None

    async def ticket_key(self, epoch: int) -> TicketKey | None:
        rows = await self._fetch(f"SELECT {KEY_COLS} FROM ticket_key WHERE epoch = ?", (epoch,))
        return key_from_row(rows[0]) if rows else None

    async def ticket_keys(self) -> list[TicketKey]:
        rows = await self._fetch(f"SELECT {KEY_COLS} FROM ticket_key ORDER BY serial")
        return [key_from_row(r) for r in rows]

    async def retire_ticket_key(self, epoch: int, now: float) -> bool:
        n = await self._write_count(
            "UPDATE ticket_key SET retired = ? WHERE epoch = ? AND retired IS NULL",
            (float(now), epoch),
        )
        return n > 0

    # ---------------------------------------------------------------- validation log

    async def log_validation(self, rec: ValidationRecord) -> int:
        params = validation_params(rec)
        rows = await self._write_fetch(INSERT_VALIDATION + " RETURNING id", params)
        return int(rows[0][0])

    async def log_validations(self, recs: Iterable[ValidationRecord]) -> int:
        params = [validation_params(rec) for rec in recs]
        if not params:
            return 0
        # Batches of a few records (vipr.pvp.vlog); bigger ones take the worker thread.
        await self._transaction(lambda c: c.executemany(INSERT_VALIDATION, params),
                                on_loop=len(params) <= MAX_ON_LOOP_ROWS)
        return len(params)

    async def list_validations(
        self, limit: int | None = 50, since: float | None = None
    ) -> list[ValidationRecord]:
        rows = await self._fetch(
            f"SELECT {VALIDATION_COLS} FROM validation WHERE at >= ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (float("-inf") if since is None else float(since), _limit(limit)),
        )
        return [validation_from_row(r) for r in rows]

    async def purge_validations(self, older_than: float) -> int:
        return await self._write_count("DELETE FROM validation WHERE at < ?", (float(older_than),))
