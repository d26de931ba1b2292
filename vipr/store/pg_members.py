"""The live overlay publishers of one provider, by PostgreSQL advisory locks (DESIGN §12).

Each overlay daemon holds a session advisory lock (MEMBER_CLASS, its member key) on a
connection of its own; the live members are the keys locked in this database. A daemon that
dies loses its connection and with it the lock at once (a crashed host: once the server's TCP
keepalive, set short on this connection, gives up on it), so no lease has to expire. After the
connection is lost, the next `members()` reconnects and locks again; a key another session
holds (two daemons of one provider with the same first Node-ID, or a hash collision) makes
it take the next free key.
"""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg

from vipr.store.errors import StoreError

__all__ = ["MEMBER_CLASS", "MemberLock"]

MEMBER_CLASS = 0x56495052   # "VIPR": the advisory locks' first key, one per database
KEY_MASK = 0x7FFFFFFF
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
TRIES = 16   # next keys tried when ours is held by another session
# The server drops a connection whose client vanished after ~10 + 3 × 5 s (not the 2 h default).
KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
             "tcp_keepalives_count": "3"}
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_MEMBERS = """SELECT objid::bigint FROM pg_locks
    WHERE locktype = 'advisory' AND classid = $1::oid AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY 1"""


class MemberLock:
    def __init__(self, url: str, name: str) -> None:
        self._url, self._name = url, name
        self._conn: Any = None
        self._want: int | None = None
        self.key: int | None = None

    async def join(self, member: int) -> int:
        self._want = member & KEY_MASK
        await self._ensure()
        assert self.key is not None
        return self.key

    async def _ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        self._drop()
        assert self._want is not None
        try:
            conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT,
                                         command_timeout=COMMAND_TIMEOUT,
                                         server_settings=KEEPALIVE)
        except (*_ERRORS, ValueError) as e:
            raise StoreError(f"{self._name}: {e}") from e
        try:
            for i in range(TRIES):
                key = (self._want + i) & KEY_MASK
                if await conn.fetchval("SELECT pg_try_advisory_lock($1::int4, $2::int4)",
                                       _int4(MEMBER_CLASS), key):
                    self._conn, self.key = conn, key
                    return
        except _ERRORS as e:
            conn.terminate()
            raise StoreError(f"{self._name}: {e}") from e
        conn.terminate()
        raise StoreError(f"{self._name}: overlay member keys {self._want}+{TRIES} all held")

    async def members(self) -> list[int]:
        """Every live member key (ours included); StoreError when the database cannot say."""
        await self._ensure()
        try:
            rows = await self._conn.fetch(_MEMBERS, MEMBER_CLASS)
        except _ERRORS as e:
            self._drop()
            raise StoreError(f"{self._name}: {e}") from e
        return [int(r[0]) for r in rows]

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        """Leave: the others take our share at their next look."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=CONNECT_TIMEOUT)
            except Exception:
                conn.terminate()


def _int4(v: int) -> int:
    """An unsigned 32-bit value as the signed int4 PostgreSQL takes (pg_locks shows the oid)."""
    return v - (1 << 32) if v >= 1 << 31 else v
