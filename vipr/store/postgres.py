"""The PostgreSQL backend of the store (DESIGN §8, §12): one database shared by every host of
a provider, through asyncpg (a small pool per process; asyncio-native, no thread hand-off).

Transactions keep the guarantees SQLite's `BEGIN IMMEDIATE` gave the roles, under READ
COMMITTED with the engine's own row locks:
- no lost VCR: an insert is `ON CONFLICT DO NOTHING` on (call_id, direction); a BYE's
  completion that meets a concurrent insert of its open VCR (another proxy host) retries the
  UPDATE, which then sees the committed row;
- a route is learned once: `INSERT … ON CONFLICT (number) DO UPDATE` with the VCR's validated
  mark in the same transaction;
- ticket key rotation is atomic: the transaction takes `ticket_key` in SHARE ROW EXCLUSIVE
  mode (readers go on; a second rotation waits), so two hosts never pick the same epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from vipr.metrics import StoreTimer
from vipr.store.api import Store, next_epoch, recent_key, redact_url, vcr_change_steps
from vipr.store.errors import NotFoundError, StoreError
from vipr.store.events import CHANNEL, EventHandler, StoreEvent, encode_event
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
from vipr.store.pg_listen import Listener
from vipr.store.pg_members import MemberLock
from vipr.store.pg_schema import pg_migrate, pg_version
from vipr.store.rows import (
    INSERT_VALIDATION,
    INSERT_VCR,
    KEY_COLS,
    ROUTE_COLS,
    VALIDATION_COLS,
    VCR_COLS,
    key_from_row,
    route_from_row,
    route_params,
    validation_from_row,
    validation_params,
    vcr_from_row,
    vcr_params,
)
from vipr.store.schema import TABLE_COLUMNS, TABLE_KEY, TABLES

__all__ = ["PostgresStore", "pg"]

log = logging.getLogger("vipr.store")

POOL_MAX = 4            # connections per process (the roles' writes are short)
CONNECT_TIMEOUT = 10.0  # seconds to reach the server when opening
COMMAND_TIMEOUT = 30.0  # a statement that takes longer fails (StoreError) instead of hanging

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_READ, _WRITE = StoreTimer("postgresql", "read"), StoreTimer("postgresql", "write")


def pg(sql: str) -> str:
    """The shared statement text (vipr.store.rows, `?` placeholders) with PostgreSQL's `$n`."""
    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"\?", number, sql)


_INSERT_VALIDATION = pg(INSERT_VALIDATION)
# Each VCR statement sends its own vcr_added event (vipr.store.events) for a complete
# originating VCR it wrote: one round trip, and the NOTIFY is part of the statement's
# transaction (delivered at COMMIT).
_VCR_EVENT = (
    "CASE WHEN direction = 'originating' AND state = 'complete' THEN"
    f" pg_notify('{CHANNEL}', json_build_object('k', 'vcr_added', 'id', id)::text) END"
)
_INSERT_VCR_ID = (
    f"WITH w AS ({pg(INSERT_VCR)} RETURNING id, direction, state) SELECT id, {_VCR_EVENT}"
    " FROM w"
)
# The BYE of an open (or unterminated) call: the stop time, never before the start.
_COMPLETE_VCR = (
    "WITH w AS (UPDATE vcr SET stop = GREATEST($1, start), state = 'complete', dialog = NULL"
    " WHERE call_id = $2 AND direction = $3 AND state != 'complete'"
    f" RETURNING id, direction, state) SELECT id, {_VCR_EVENT} FROM w"
)
_VCR_INSERT_COLS = ("direction", "caller", "callee", "start", "stop", "call_id", "created",
                    "validated", "failures", "burned", "state", "dialog")
_VCR_ARRAY_TYPES = ("text", "text", "text", "float8", "float8", "text", "float8", "float8",
                    "int4", "int4", "text", "text")
# Many VCRs in one statement: one array per column (vcr_params order).
_INSERT_VCRS = (
    f"WITH w AS (INSERT INTO vcr ({', '.join(_VCR_INSERT_COLS)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_VCR_ARRAY_TYPES))
    + ") ON CONFLICT (call_id, direction) DO NOTHING RETURNING id, call_id, direction, state)"
    f" SELECT id, call_id, direction, {_VCR_EVENT} FROM w"
)
_NOTIFY = "SELECT pg_notify($1, $2)"


async def _notify(c: Any, events: Sequence[StoreEvent]) -> None:
    """Queue events in the caller's transaction: delivered at its COMMIT (vipr.store.events)."""
    for e in events:
        await c.execute(_NOTIFY, CHANNEL, encode_event(e))


_UPSERT_ROUTE = (
    f"INSERT INTO route ({ROUTE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    " ON CONFLICT (number) DO UPDATE SET routes = excluded.routes,"
    " ticket = excluded.ticket, ticket_expires = excluded.ticket_expires,"
    " expires = excluded.expires, learned_from_node = excluded.learned_from_node,"
    " learned_from_domain = excluded.learned_from_domain,"
    " validated_at = excluded.validated_at, last_used = excluded.last_used,"
    " failures = excluded.failures"
)


# One failed PVP handshake against a terminating VCR (DESIGN §5); also run by the decoy path.
_RECORD_FAILURE = (
    "UPDATE vcr SET failures = failures + 1,"
    " burned = CASE WHEN failures + 1 >= $1 THEN 1 ELSE burned END"
    f" WHERE id = $2 RETURNING {VCR_COLS}"
)


class PostgresStore(Store):
    """A pool of connections to the provider's PostgreSQL database."""

    def __init__(self, url: str, pool: Any) -> None:
        self.path = redact_url(url)
        self._url = url
        self._pool: Any = pool
        self._listeners: list[Listener] = []
        self._members: MemberLock | None = None
        self._kept: Any = None   # an asyncpg connection of its own, see _quick
        self._kept_busy = False

    @property
    def backend(self) -> str:
        return "postgresql"

    @classmethod
    async def connect(cls, url: str) -> PostgresStore:
        name = redact_url(url)
        try:
            pool = await asyncpg.create_pool(
                url, min_size=0, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT, reset=_keep_session)
        except (*_DB_ERRORS, ValueError) as e:
            raise StoreError(f"cannot open database {name}: {_reason(e)}") from e
        try:
            async with pool.acquire() as conn:
                await pg_migrate(conn, name)
        except _DB_ERRORS as e:
            await pool.close()
            raise StoreError(f"cannot open database {name}: {_reason(e)}") from e
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool)

    async def listen(self, handler: EventHandler) -> bool:
        """LISTEN on a connection of its own (vipr.store.pg_listen); returns once listening
        (or after CONNECT_TIMEOUT, going on in the background)."""
        if self._pool is None:
            raise StoreError(f"store {self.path} is closed")
        listener = Listener(self._url, self.path, handler)
        self._listeners.append(listener)
        listener.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.connected.wait(), CONNECT_TIMEOUT)
        return True

    async def close(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            await listener.close()
        members, self._members = self._members, None
        if members is not None:
            await members.close()
        kept, self._kept = self._kept, None
        if kept is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(kept.close(), CONNECT_TIMEOUT)
            kept.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
            except (TimeoutError, *_DB_ERRORS):
                pool.terminate()

    # ---------------------------------------------------------------- plumbing

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        """A pooled connection; the driver's errors become StoreError."""
        if self._pool is None:
            raise StoreError(f"store {self.path} is closed")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                try:
                    yield conn
                except (*_DB_ERRORS, asyncpg.InternalClientError) as e:
                    if not isinstance(e, asyncpg.PostgresError):
                        # The connection may be mid-statement (a lost server, a timeout):
                        # never hand it to the next task (the pool's reset is a no-op).
                        conn.terminate()
                    raise
        except (*_DB_ERRORS, asyncpg.InternalClientError) as e:
            raise StoreError(f"{self.path}: {_reason(e)}") from e

    @asynccontextmanager
    async def _quick(self) -> AsyncIterator[Any]:
        """For one statement: a connection of this store's own, outside the pool, when it is
        free (a pool hand-off costs about as much as the statement, bench/store.py), else a
        pooled one. After any driver error it is closed and made anew on the next use: it never
        goes through the pool's hands."""
        if self._pool is None:
            raise StoreError(f"store {self.path} is closed")
        if self._kept_busy:
            async with self._conn() as conn:
                yield conn
            return
        self._kept_busy = True
        try:
            if self._kept is None:
                self._kept = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT,
                                                   command_timeout=COMMAND_TIMEOUT)
            yield self._kept
        except (*_DB_ERRORS, asyncpg.InternalClientError) as e:
            if not isinstance(e, asyncpg.PostgresError) or _dead(self._kept):
                self._drop_kept()
            raise StoreError(f"{self.path}: {_reason(e)}") from e
        finally:
            self._kept_busy = False

    def _drop_kept(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.terminate()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        """A connection inside one transaction: COMMIT at the end, ROLLBACK on any error."""
        t0, ok = time.perf_counter(), False
        try:
            async with self._conn() as conn, conn.transaction():
                yield conn
            ok = True
        finally:
            _WRITE.done(t0, ok)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        t0, ok = time.perf_counter(), False
        try:
            async with self._quick() as conn:
                rows = list(await conn.fetch(sql, *args))
            ok = True
            return rows
        finally:
            _READ.done(t0, ok)

    async def _count(self, sql: str, *args: object) -> int:
        """Rows an UPDATE/DELETE touched (asyncpg's status text "UPDATE n")."""
        t0, ok = time.perf_counter(), False
        try:
            async with self._quick() as conn:
                status = await conn.execute(sql, *args)
            ok = True
        finally:
            _WRITE.done(t0, ok)
        return int(str(status).rsplit(" ", 1)[-1])

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            return await pg_version(conn)

    async def row_counts(self) -> dict[str, int]:
        async with self._conn() as conn:
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}

    # ---------------------------------------------------------------- whole tables

    async def export_rows(self, table: str, after: object | None, limit: int
                          ) -> list[tuple[object, ...]]:
        cols, key = ", ".join(TABLE_COLUMNS[table]), TABLE_KEY[table]
        if after is None:
            rows = await self._fetch(
                f"SELECT {cols} FROM {table} ORDER BY {key} LIMIT $1", int(limit))
        else:
            rows = await self._fetch(
                f"SELECT {cols} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2",
                after, int(limit))
        return [tuple(r) for r in rows]

    async def import_rows(self, table: str, rows: Sequence[tuple[object, ...]]) -> int:
        """COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING:
        binary COPY is the fast way in, and the INSERT skips what is already stored."""
        if not rows:
            return 0
        cols = TABLE_COLUMNS[table]
        names = ", ".join(cols)
        staging = f"vipr_import_{table}"
        async with self._tx() as c:
            await c.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging}"
                            f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            await c.copy_records_to_table(staging, records=rows, columns=list(cols))
            status = await c.execute(f"INSERT INTO {table} ({names}) SELECT {names}"
                                     f" FROM {staging} ON CONFLICT DO NOTHING")
            if TABLE_KEY[table] == "id":  # ids were given: later inserts start above them
                await c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
        return int(str(status).rsplit(" ", 1)[-1])

    async def max_key(self, table: str) -> object | None:
        async with self._conn() as conn:
            got: object = await conn.fetchval(f"SELECT max({TABLE_KEY[table]}) FROM {table}")
        return got

    # ---------------------------------------------------------------- VCRs

    async def add_vcr(self, v: Vcr) -> int | None:
        rows = await self._fetch(_INSERT_VCR_ID, *vcr_params(v))
        return int(rows[0][0]) if rows else None

    async def add_vcrs(self, vs: Iterable[Vcr]) -> int:
        return sum(i is not None for i in await self.add_vcrs_ids(list(vs)))

    async def add_vcrs_ids(self, vs: Sequence[Vcr]) -> list[int | None]:
        """One INSERT … SELECT FROM unnest(arrays) statement (atomic by itself); the ids come
        back with their (call_id, direction) and are put in input order."""
        params = [vcr_params(v) for v in vs]
        if not params:
            return []
        columns = [list(col) for col in zip(*params, strict=True)]
        rows = await self._fetch(_INSERT_VCRS, *columns)
        new = {(r[1], r[2]): int(r[0]) for r in rows}
        out: list[int | None] = []
        for p in params:   # a duplicate within the batch: only its first row was inserted
            out.append(new.pop((p[5], p[0]), None))
        return out

    async def apply_vcr_changes(self, changes: Sequence[VcrChange]) -> list[int | None]:
        steps = vcr_change_steps(changes)
        if not steps:
            return []
        # One change: each statement is atomic and the retry below covers the race, so no
        # transaction (and no BEGIN/COMMIT round trips) is needed; several: one transaction.
        async with self._quick() if len(steps) == 1 else self._tx() as c:
            out: list[int | None] = []
            for insert, complete in steps:
                got = await c.fetchval(_COMPLETE_VCR, *complete) if complete else None
                if got is None:
                    got = await c.fetchval(_INSERT_VCR_ID, *insert)
                    if got is None and complete:
                        # Its open VCR was inserted meanwhile by another host (the INSERT
                        # waited for that commit): the UPDATE now sees it.
                        got = await c.fetchval(_COMPLETE_VCR, *complete)
                out.append(None if got is None else int(got))
            return out

    async def find_open_vcrs(self, call_id: str | None = None) -> list[tuple[Vcr, str | None]]:
        where, params = ("call_id = $1 AND ", (call_id,)) if call_id is not None else ("", ())
        rows = await self._fetch(
            f"SELECT {VCR_COLS}, dialog FROM vcr WHERE {where}state = 'open'"
            " ORDER BY start, id", *params)
        return [(vcr_from_row(r), r[12]) for r in rows]

    async def close_unterminated(self, started_before: float) -> int:
        return await self._count(
            "UPDATE vcr SET state = 'unterminated', dialog = NULL"
            " WHERE state = 'open' AND start < $1", float(started_before))

    async def get_vcr(self, id: int) -> Vcr | None:
        rows = await self._fetch(f"SELECT {VCR_COLS} FROM vcr WHERE id = $1", int(id))
        return vcr_from_row(rows[0]) if rows else None

    async def list_vcrs(
        self, since: float | None = None, direction: Direction | None = None,
        limit: int | None = 100,
    ) -> list[Vcr]:
        where, params = ["TRUE"], []  # type: list[str], list[object]
        if since is not None:
            params.append(float(since))
            where.append(f"start >= ${len(params)}")
        if direction is not None:
            if direction not in DIRECTIONS:
                raise StoreError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
            params.append(direction)
            where.append(f"direction = ${len(params)}")
        params.append(None if limit is None else max(0, int(limit)))  # LIMIT NULL: no limit
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE {' AND '.join(where)}"
            f" ORDER BY start DESC, id DESC LIMIT ${len(params)}", *params)
        return [vcr_from_row(r) for r in rows]

    async def find_terminating_candidates(
        self, callee: str, caller: str, start_from: float, start_to: float, now: float,
        max_age: float,
    ) -> list[Vcr]:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE callee = $1 AND start >= $2 AND start < $3"
            " AND start >= $4 AND direction = 'terminating' AND burned = 0"
            " AND state = 'complete'"   # DESIGN §7: only a real stop time validates
            " AND (caller = $5 OR caller = $6) ORDER BY start DESC, id DESC",
            callee, float(start_from), float(start_to), float(now) - float(max_age), caller,
            UNKNOWN_CALLER)
        return [vcr_from_row(r) for r in rows]

    async def pending_originating_vcrs(self, min_duration: float) -> list[Vcr]:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE direction = 'originating'"
            " AND validated IS NULL AND burned = 0 AND state = 'complete' AND stop - start >= $1"
            " ORDER BY start, id", float(min_duration))
        return [vcr_from_row(r) for r in rows]

    async def latest_originating_vcr(self, callee: str) -> Vcr | None:
        rows = await self._fetch(
            f"SELECT {VCR_COLS} FROM vcr WHERE callee = $1 AND direction = 'originating'"
            " AND state = 'complete' ORDER BY start DESC, id DESC LIMIT 1", callee)
        return vcr_from_row(rows[0]) if rows else None

    async def record_vcr_failure(self, id: int, max_failures: int) -> Vcr:
        rows = await self._fetch(_RECORD_FAILURE, int(max_failures), int(id))
        if not rows:
            raise NotFoundError(f"no VCR with id {id}")
        return vcr_from_row(rows[0])

    async def record_decoy_failure(self, max_failures: int) -> None:
        await self._fetch(_RECORD_FAILURE, int(max_failures), 0)

    async def mark_vcr_validated(self, id: int, when: float) -> bool:
        return await self._count(
            "UPDATE vcr SET validated = $1 WHERE id = $2", float(when), int(id)) > 0

    async def delete_vcr(self, id: int) -> bool:
        return await self._count("DELETE FROM vcr WHERE id = $1", int(id)) > 0

    async def purge_vcrs(self, older_than: float) -> int:
        return await self._count("DELETE FROM vcr WHERE start < $1", float(older_than))

    # ---------------------------------------------------------------- routes

    async def upsert_route(self, r: Route) -> None:
        params = route_params(r)
        async with self._tx() as c:
            await c.execute(_UPSERT_ROUTE, *params)
            await _notify(c, [StoreEvent("route_learned", number=r.number)])

    async def learn_route(self, r: Route, vcr_id: int | None) -> None:
        params = route_params(r)
        async with self._tx() as c:
            await c.execute(_UPSERT_ROUTE, *params)
            if vcr_id is not None:
                await c.execute("UPDATE vcr SET validated = $1 WHERE id = $2",
                                float(r.validated_at), int(vcr_id))
            await _notify(c, [StoreEvent("route_learned", number=r.number)])

    async def get_route(self, number: str) -> Route | None:
        rows = await self._fetch(f"SELECT {ROUTE_COLS} FROM route WHERE number = $1", number)
        return route_from_row(rows[0]) if rows else None

    async def list_routes(self) -> list[Route]:
        rows = await self._fetch(f"SELECT {ROUTE_COLS} FROM route ORDER BY number")
        return [route_from_row(r) for r in rows]

    async def record_route_failure(self, number: str, max_failures: int) -> bool:
        async with self._tx() as c:
            failures = await c.fetchval(
                "UPDATE route SET failures = failures + 1 WHERE number = $1 RETURNING failures",
                number)
            if failures is None or int(failures) < max_failures:
                return False
            await c.execute("DELETE FROM route WHERE number = $1", number)
            await _notify(c, [StoreEvent("route_learned", number=number)])
            return True

    async def touch_route(self, number: str, when: float) -> bool:
        return await self._count(
            "UPDATE route SET last_used = $1 WHERE number = $2", float(when), number) > 0

    async def delete_route(self, number: str) -> bool:
        async with self._tx() as c:
            status = await c.execute("DELETE FROM route WHERE number = $1", number)
            gone = str(status) != "DELETE 0"
            if gone:
                await _notify(c, [StoreEvent("route_learned", number=number)])
        return gone

    # ---------------------------------------------------------------- published numbers

    async def set_published(self, p: PublishedNumber) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO published_number (number, vservice, stored_at, expires)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (number) DO UPDATE SET"
                " vservice = excluded.vservice, stored_at = excluded.stored_at,"
                " expires = excluded.expires",
                p.number, p.vservice, float(p.stored_at), float(p.expires))

    async def list_published(self) -> list[PublishedNumber]:
        rows = await self._fetch(
            "SELECT number, vservice, stored_at, expires FROM published_number ORDER BY number")
        return [PublishedNumber(number=r[0], vservice=r[1], stored_at=r[2], expires=r[3])
                for r in rows]

    async def delete_published(self, number: str) -> bool:
        return await self._count("DELETE FROM published_number WHERE number = $1", number) > 0

    async def join_overlay_members(self, member: int) -> int:
        if self._pool is None:
            raise StoreError(f"store {self.path} is closed")
        self._members = self._members or MemberLock(self._url, self.path)
        return await self._members.join(member)

    async def overlay_members(self) -> list[int]:
        if self._members is None:
            return []
        return await self._members.members()

    # ---------------------------------------------------------------- ticket keys

    async def create_ticket_key(self, now: float, *,
                                unless_created_since: float | None = None) -> TicketKey:
        secret = secrets.token_bytes(32)
        async with self._tx() as c:
            # Self-exclusive, readers unaffected: a second rotation (another host) waits.
            await c.execute("LOCK TABLE ticket_key IN SHARE ROW EXCLUSIVE MODE")
            rows = [tuple(r) for r in await c.fetch(
                "SELECT epoch, secret, created, retired, serial FROM ticket_key")]
            keep = recent_key(rows, unless_created_since)
            if keep is not None:
                return keep
            epoch, serial = next_epoch((int(r[0]), r[3] is not None, int(r[4])) for r in rows)
            await c.execute(
                "INSERT INTO ticket_key (epoch, secret, created, retired, serial)"
                " VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (epoch) DO UPDATE SET"
                " secret = excluded.secret, created = excluded.created, retired = NULL,"
                " serial = excluded.serial",
                epoch, secret, float(now), serial)
            await _notify(c, [StoreEvent("key_rotated", epoch=epoch)])
        return TicketKey(epoch=epoch, secret=secret, created=float(now), retired=None)

    async def current_ticket_key(self) -> TicketKey | None:
        rows = await self._fetch(
            f"SELECT {KEY_COLS} FROM ticket_key WHERE retired IS NULL"
            " ORDER BY serial DESC LIMIT 1")
        return key_from_row(rows[0]) if rows else None

    async def ticket_key(self, epoch: int) -> TicketKey | None:
        rows = await self._fetch(f"SELECT {KEY_COLS} FROM ticket_key WHERE epoch = $1",
                                 int(epoch))
        return key_from_row(rows[0]) if rows else None

    async def ticket_keys(self) -> list[TicketKey]:
        rows = await self._fetch(f"SELECT {KEY_COLS} FROM ticket_key ORDER BY serial")
        return [key_from_row(r) for r in rows]

    async def retire_ticket_key(self, epoch: int, now: float) -> bool:
        return await self._count(
            "UPDATE ticket_key SET retired = $1 WHERE epoch = $2 AND retired IS NULL",
            float(now), int(epoch)) > 0

    # ---------------------------------------------------------------- validation log

    async def log_validation(self, rec: ValidationRecord) -> int:
        params = validation_params(rec)
        rows = await self._fetch(_INSERT_VALIDATION + " RETURNING id", *params)
        return int(rows[0][0])

    async def log_validations(self, recs: Iterable[ValidationRecord]) -> int:
        params = [validation_params(rec) for rec in recs]
        if not params:
            return 0
        async with self._tx() as c:
            await c.executemany(_INSERT_VALIDATION, params)
        return len(params)

    async def list_validations(
        self, limit: int | None = 50, since: float | None = None
    ) -> list[ValidationRecord]:
        rows = await self._fetch(
            f"SELECT {VALIDATION_COLS} FROM validation WHERE at >= $1"
            " ORDER BY at DESC, id DESC LIMIT $2",
            float("-inf") if since is None else float(since),
            None if limit is None else max(0, int(limit)))
        return [validation_from_row(r) for r in rows]

    async def purge_validations(self, older_than: float) -> int:
        return await self._count("DELETE FROM validation WHERE at < $1", float(older_than))


def _dead(conn: Any) -> bool:
    return conn is None or bool(conn.is_closed())


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release, instead of asyncpg's default (UNLISTEN *, RESET ALL, …: a
    round trip per operation, which halved the rate of one-statement calls; bench/store.py).
    The store leaves nothing in a session: no SET, LISTEN (its own connection), cursors or
    session locks; an open transaction is still rolled back by the pool itself, and a
    connection that met a driver error is terminated before it goes back (`_conn`)."""
    del conn


def _reason(e: BaseException) -> str:
    """One line for an operator: the driver's message, or the exception's kind."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text
