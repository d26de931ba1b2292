"""The store's API, the same for every backend (DESIGN §8, §12): `Store.open(target)` picks
SQLite for a file path (or ":memory:") and PostgreSQL for a `postgresql://` URL. Callers see
only this class, the dataclasses in `vipr.store.models` and `StoreError`; no SQL dialect crosses
it. The pure decisions both backends share (which epoch a new ticket key takes, what a batch
of VCR changes does) live here too, so the backends differ only in how they talk to the engine.
"""

from __future__ import annotations

import abc
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from vipr.store.errors import StoreError
from vipr.store.events import EventHandler
from vipr.store.models import (
    CompleteVcr,
    Direction,
    OpenVcr,
    PublishedNumber,
    Route,
    TicketKey,
    ValidationRecord,
    Vcr,
    VcrChange,
)
from vipr.store.rows import vcr_params

__all__ = ["MAX_EPOCH", "Store", "is_postgres_url", "next_epoch", "recent_key", "redact_url",
           "vcr_change_steps"]

MAX_EPOCH = 255  # ticket epochs are one byte, 0 unused (DESIGN §6)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# One step of apply_vcr_changes: the INSERT's parameters, and the completion's (stop, call_id,
# direction) when the change is a BYE.
VcrStep = tuple[tuple[object, ...], tuple[float, str, str] | None]


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    cred, at, host = rest.rpartition("@")
    if not at or ":" not in cred:
        return url
    return f"{scheme}{sep}{cred.split(':', 1)[0]}:***@{host}"


def next_epoch(keys: Iterable[tuple[int, bool, int]]) -> tuple[int, int]:
    """The epoch and serial of a new ticket key, given every stored key's (epoch, retired,
    serial): the epoch after the newest one's (1..255, wrapping), skipping epochs still in use
    (not retired); a retired one is overwritten. StoreError when all 255 are in use."""
    rows = list(keys)
    in_use = {e for e, retired, _ in rows if not retired}
    newest = max(rows, key=lambda r: r[2], default=None)
    first = newest[0] % MAX_EPOCH + 1 if newest is not None else 1
    serial = newest[2] + 1 if newest is not None else 1
    for i in range(MAX_EPOCH):
        epoch = (first - 1 + i) % MAX_EPOCH + 1
        if epoch not in in_use:
            return epoch, serial
    raise StoreError(f"all {MAX_EPOCH} ticket key epochs are in use; retire one")


def recent_key(rows: Iterable[tuple[int, bytes, float, float | None, int]],
               since: float | None) -> TicketKey | None:
    """Of stored keys (epoch, secret, created, retired, serial): the current one (newest not
    retired) when it was created at or after `since`."""
    if since is None:
        return None
    live = [r for r in rows if r[3] is None]
    if not live:
        return None
    e, secret, created, _, _ = max(live, key=lambda r: r[4])
    if created < since:
        return None
    return TicketKey(epoch=e, secret=bytes(secret), created=created, retired=None)


def vcr_change_steps(changes: Sequence[VcrChange]) -> list[VcrStep]:
    """Check a batch of VCR changes (DESIGN §7) and turn each into a VcrStep."""
    steps: list[VcrStep] = []
    for ch in changes:
        v = ch.vcr
        if isinstance(ch, OpenVcr):
            if v.state != "open":
                raise StoreError(f"an opened VCR has state 'open', not {v.state!r}")
            steps.append((vcr_params(v, ch.dialog), None))
        else:
            if v.state != "complete":
                raise StoreError(f"a completed VCR has state 'complete', not {v.state!r}")
            steps.append((vcr_params(v), (float(v.stop), v.call_id, v.direction)))
    return steps


class _Opening:
    """What `Store.open` returns: await it, or use it as `async with Store.open(p) as s`."""

    def __init__(self, target: str | Path) -> None:
        self._target = target
        self._store: Store | None = None

    def __await__(self) -> Generator[Any, None, Store]:
        return Store._open_backend(self._target).__await__()

    async def __aenter__(self) -> Store:
        self._store = await Store._open_backend(self._target)
        return self._store

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.close()


class Store(abc.ABC):
    """The provider's database. Safe to share between tasks of one process; several processes
    (and, with PostgreSQL, several hosts) may each open their own Store on the same database.
    Always close it (or use `async with`)."""

    path: str  # the file, or the URL without its password

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, target: str | Path) -> _Opening:
        """Open (creating and migrating as needed) the database: a file path (":memory:"
        works) or a `postgresql://` URL."""
        return _Opening(target)

    @staticmethod
    async def _open_backend(target: str | Path) -> Store:
        if is_postgres_url(target):
            from vipr.store.postgres import PostgresStore
            return await PostgresStore.connect(str(target))
        if isinstance(target, str) and "://" in target:
            raise StoreError(f"unknown database URL scheme in {redact_url(target)!r}"
                             " (postgresql://… or a file path)")
        from vipr.store.sqlite import SqliteStore
        return await SqliteStore.connect(target)

    @property
    @abc.abstractmethod
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection(s); later calls raise StoreError. Closing twice is fine."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def listen(self, handler: EventHandler) -> bool:
        """Call `handler` for every change other hosts make (vipr.store.events) until close;
        True when this backend has such events. SQLite: False; one host, the local sockets
        carry them."""
        del handler
        return False

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at (vipr.store.schema)."""

    @abc.abstractmethod
    async def row_counts(self) -> dict[str, int]:
        """Rows per table (`vipr store check`)."""

    # ---------------------------------------------------------------- whole tables

    @abc.abstractmethod
    async def export_rows(self, table: str, after: object | None, limit: int
                          ) -> list[tuple[object, ...]]:
        """Up to `limit` rows of `table` (vipr.store.schema.TABLES), every column of
        TABLE_COLUMNS, in key order, keys after `after` (None: from the first). For
        `vipr store migrate`."""

    @abc.abstractmethod
    async def import_rows(self, table: str, rows: Sequence[tuple[object, ...]]) -> int:
        """Insert exported rows as they are (ids kept) in one transaction, skipping any that
        conflict with a stored row; how many were inserted. Later inserts get ids above."""

    @abc.abstractmethod
    async def max_key(self, table: str) -> object | None:
        """The greatest key stored in `table`; None when it is empty."""

    # ---------------------------------------------------------------- VCRs

    @abc.abstractmethod
    async def add_vcr(self, v: Vcr) -> int | None:
        """Insert one VCR; its id, or None when a VCR with that call_id and direction exists."""

    @abc.abstractmethod
    async def add_vcrs(self, vs: Iterable[Vcr]) -> int:
        """Insert many VCRs in one transaction; the number inserted (duplicates are skipped)."""

    @abc.abstractmethod
    async def add_vcrs_ids(self, vs: Sequence[Vcr]) -> list[int | None]:
        """Insert many VCRs in one transaction; each one's id, None for a duplicate."""

    @abc.abstractmethod
    async def apply_vcr_changes(self, changes: Sequence[VcrChange]) -> list[int | None]:
        """Open and complete VCRs in one transaction, in order (DESIGN §7; the proxy's
        `VcrWriter` batches them); each change's VCR id, None when it changed nothing.

        OpenVcr: insert the answered call (state 'open'); None when that Call-ID and direction
        already has a VCR. CompleteVcr: set the stop time of the open or unterminated VCR of
        that Call-ID and direction (found in the store, so after a restart too); when there is
        none, insert the VCR whole; None when it was already complete.
        """

    async def open_vcr(self, v: Vcr, dialog: str | None = None) -> int | None:
        """Insert the VCR of an answered call (state 'open'); see apply_vcr_changes."""
        return (await self.apply_vcr_changes([OpenVcr(v, dialog)]))[0]

    async def complete_vcr(self, v: Vcr) -> int | None:
        """Record the BYE of `v.call_id` at `v.stop`; see apply_vcr_changes."""
        return (await self.apply_vcr_changes([CompleteVcr(v)]))[0]

    @abc.abstractmethod
    async def find_open_vcrs(self, call_id: str | None = None) -> list[tuple[Vcr, str | None]]:
        """Open VCRs with their dialog text, oldest first: those of one Call-ID, or all (the
        proxy loads them when it starts, so a BYE after a restart completes its VCR)."""

    @abc.abstractmethod
    async def close_unterminated(self, started_before: float) -> int:
        """DESIGN §7: open VCRs of calls answered before `started_before` (now − the
        proxy's max_call_duration) that never saw a BYE become 'unterminated'. Their stop stays
        equal to their start: the hang-up time is unknown, so PVP never uses them. The count."""

    @abc.abstractmethod
    async def get_vcr(self, id: int) -> Vcr | None: ...

    @abc.abstractmethod
    async def list_vcrs(
        self, since: float | None = None, direction: Direction | None = None,
        limit: int | None = 100,
    ) -> list[Vcr]:
        """VCRs whose call started at or after `since`, newest first."""

    @abc.abstractmethod
    async def find_terminating_candidates(
        self, callee: str, caller: str, start_from: float, start_to: float, now: float,
        max_age: float,
    ) -> list[Vcr]:
        """Terminating VCRs a PVP server may validate against (DESIGN §5), newest first.

        callee equal; caller equal or unknown ("") on our side; start_from <= start < start_to;
        not older than `max_age` (start >= now - max_age); not burned; complete (DESIGN §7).
        """

    @abc.abstractmethod
    async def pending_originating_vcrs(self, min_duration: float) -> list[Vcr]:
        """Complete originating VCRs not yet validated nor burned, lasting ≥ min_duration;
        oldest first."""

    @abc.abstractmethod
    async def latest_originating_vcr(self, callee: str) -> Vcr | None: ...

    @abc.abstractmethod
    async def record_vcr_failure(self, id: int, max_failures: int) -> Vcr:
        """Count one failed handshake against a VCR; at `max_failures` it is burned (DESIGN §5)."""

    @abc.abstractmethod
    async def record_decoy_failure(self, max_failures: int) -> None:
        """The PVP decoy's counterpart of `record_vcr_failure` (DESIGN §10: decoy and real VCRs
        do the same work in the database): the same statement in the same kind of
        transaction, on a row id that never exists (ids start at 1), so nothing changes."""

    @abc.abstractmethod
    async def mark_vcr_validated(self, id: int, when: float) -> bool:
        """Set the validated time; False when the VCR no longer exists."""

    @abc.abstractmethod
    async def delete_vcr(self, id: int) -> bool: ...

    @abc.abstractmethod
    async def purge_vcrs(self, older_than: float) -> int:
        """Delete VCRs of calls that started before `older_than` (retention); the count."""

    # ---------------------------------------------------------------- routes

    @abc.abstractmethod
    async def upsert_route(self, r: Route) -> None: ...

    @abc.abstractmethod
    async def learn_route(self, r: Route, vcr_id: int | None) -> None:
        """Store a learned route and mark the originating VCR it was validated with, in one
        transaction (the PVP client's step after a successful validation)."""

    @abc.abstractmethod
    async def get_route(self, number: str) -> Route | None: ...

    @abc.abstractmethod
    async def list_routes(self) -> list[Route]: ...

    @abc.abstractmethod
    async def record_route_failure(self, number: str, max_failures: int) -> bool:
        """Count one failed call over the route; True when that dropped it (DESIGN §6)."""

    @abc.abstractmethod
    async def touch_route(self, number: str, when: float) -> bool:
        """Record a use of the route; False when there is no such route."""

    @abc.abstractmethod
    async def delete_route(self, number: str) -> bool: ...

    # ---------------------------------------------------------------- published numbers

    @abc.abstractmethod
    async def set_published(self, p: PublishedNumber) -> None: ...

    @abc.abstractmethod
    async def list_published(self) -> list[PublishedNumber]: ...

    @abc.abstractmethod
    async def delete_published(self, number: str) -> bool: ...

    async def join_overlay_members(self, member: int) -> int:
        """Register this process as a live overlay publisher of the provider (DESIGN §12)
        until close; returns its member key (`member`, or the next free one when another
        process holds it). SQLite: one host, so the process is the only member."""
        self._overlay_member = member
        return member

    async def overlay_members(self) -> list[int]:
        """The member keys of every live overlay publisher of the provider, sorted;
        StoreError when the database cannot say."""
        m: int | None = getattr(self, "_overlay_member", None)
        return [] if m is None else [m]

    # ---------------------------------------------------------------- ticket keys

    @abc.abstractmethod
    async def create_ticket_key(self, now: float, *,
                                unless_created_since: float | None = None) -> TicketKey:
        """Add a fresh random key under the next epoch (`next_epoch`), atomically: two hosts
        rotating at once never take the same epoch. `unless_created_since`: when the current
        key was created at or after that time, return it instead (decided in the same
        transaction, so hosts that start or rotate together add one key, not one each)."""

    @abc.abstractmethod
    async def current_ticket_key(self) -> TicketKey | None:
        """The newest key not retired: the one to mint tickets with."""

    @abc.abstractmethod
    async def ticket_key(self, epoch: int) -> TicketKey | None: ...

    @abc.abstractmethod
    async def ticket_keys(self) -> list[TicketKey]:
        """Every stored key, retired ones included, oldest first."""

    @abc.abstractmethod
    async def retire_ticket_key(self, epoch: int, now: float) -> bool:
        """Mark a key retired; False when it does not exist or was already retired."""

    # ---------------------------------------------------------------- validation log

    @abc.abstractmethod
    async def log_validation(self, rec: ValidationRecord) -> int: ...

    @abc.abstractmethod
    async def log_validations(self, recs: Iterable[ValidationRecord]) -> int:
        """Insert many validation records in one transaction; how many."""

    @abc.abstractmethod
    async def list_validations(
        self, limit: int | None = 50, since: float | None = None
    ) -> list[ValidationRecord]:
        """Validation attempts, newest first."""

    @abc.abstractmethod
    async def purge_validations(self, older_than: float) -> int: ...
