"""vipr.store: every API method against a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from vipr.store import NotFoundError, Store, StoreError
from vipr.store.models import PublishedNumber, Route, TicketKey, ValidationRecord, Vcr
from vipr.store.schema import SCHEMA_VERSION

T0 = 1_700_000_000.0


def vcr(call_id: str = "c1", direction: str = "terminating", *, caller: str = "+14085550001",
        callee: str = "+14085551234", start: float = T0, dur: float = 60.0) -> Vcr:
    return Vcr(id=None, direction=direction, caller=caller, callee=callee,  # type: ignore[arg-type]
               start=start, stop=start + dur, call_id=call_id, created=start + dur)


def route(number: str = "+14085551234", **kw: object) -> Route:
    base = Route(number=number, routes=("sip:10.0.0.1:5061;transport=tls",), ticket="tkt",
                 ticket_expires=T0 + 90 * 86400, expires=T0 + 90 * 86400,
                 learned_from_node="ab" * 16, learned_from_domain="b.example.net",
                 validated_at=T0)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(db_target: str | Path) -> AsyncIterator[Store]:
    """A fresh store on each backend (tests/conftest.py db_target)."""
    async with Store.open(db_target) as s:
        yield s


async def set_schema_version(target: str | Path, version: int) -> None:
    """What a newer vipr would have left behind: the stored schema version bumped."""
    if isinstance(target, str):
        conn = await asyncpg.connect(target)
        try:
            await conn.execute("UPDATE vipr_schema SET version = $1", version)
        finally:
            await conn.close()
    else:
        c = sqlite3.connect(target)
        c.execute(f"PRAGMA user_version = {version}")
        c.close()


async def test_open_sets_wal_pragmas_and_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "vipr.db"
    s = await Store.open(path)
    await s.close()
    await s.close()  # idempotent
    c = sqlite3.connect(path)
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"vcr_callee_start", "vcr_start", "vcr_pending"} <= names
    finally:
        c.close()
    with pytest.raises(StoreError, match="closed"):
        await s.list_routes()


async def test_migrations_idempotent_on_reopen(db_target: str | Path) -> None:
    async with Store.open(db_target) as s:
        assert await s.add_vcr(vcr("x")) == 1
    for _ in range(3):
        async with Store.open(db_target) as s:
            assert [v.call_id for v in await s.list_vcrs()] == ["x"]
            assert await s.schema_version() == SCHEMA_VERSION
            assert (await s.row_counts())["vcr"] == 1


async def test_newer_schema_refused(db_target: str | Path) -> None:
    async with Store.open(db_target):
        pass
    await set_schema_version(db_target, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer"):
        await Store.open(db_target)


async def test_garbage_file_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "vipr.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        await Store.open(path)


async def test_await_and_memory(tmp_path: Path) -> None:
    s = await Store.open(":memory:")
    async with s:
        assert await s.add_vcr(vcr()) == 1


async def test_add_get_vcr_and_duplicate(store: Store) -> None:
    vid = await store.add_vcr(vcr("c1"))
    assert vid is not None
    assert await store.add_vcr(vcr("c1")) is None  # same call_id + direction
    other = await store.add_vcr(vcr("c1", "originating"))  # other direction is another record
    assert other is not None and other != vid
    got = await store.get_vcr(vid)
    assert got == dataclasses.replace(vcr("c1"), id=vid)
    assert got.duration == 60.0
    assert await store.get_vcr(9999) is None


async def test_add_vcr_bad_direction(store: Store) -> None:
    with pytest.raises(StoreError, match="direction"):
        await store.add_vcr(vcr("c1", "sideways"))
    assert await store.list_vcrs() == []


async def test_add_vcrs_batch_counts_new_only(store: Store) -> None:
    assert await store.add_vcrs([]) == 0
    assert await store.add_vcrs([vcr(f"c{i}") for i in range(50)]) == 50
    assert await store.add_vcrs([vcr(f"c{i}") for i in range(40, 60)]) == 10
    assert len(await store.list_vcrs(limit=None)) == 60


async def test_add_vcrs_is_one_transaction(store: Store) -> None:
    good = [vcr(f"g{i}") for i in range(5)]
    with pytest.raises(StoreError):
        await store.add_vcrs([*good, vcr("bad", "sideways")])
    assert await store.list_vcrs() == []  # nothing of the failed batch is kept


async def test_list_vcrs_filters_and_order(store: Store) -> None:
    await store.add_vcrs([
        vcr("a", start=T0), vcr("b", "originating", start=T0 + 10), vcr("c", start=T0 + 20),
    ])
    assert [v.call_id for v in await store.list_vcrs()] == ["c", "b", "a"]
    assert [v.call_id for v in await store.list_vcrs(since=T0 + 10)] == ["c", "b"]
    assert [v.call_id for v in await store.list_vcrs(direction="originating")] == ["b"]
    assert [v.call_id for v in await store.list_vcrs(limit=1)] == ["c"]
    with pytest.raises(StoreError):
        await store.list_vcrs(direction="up")  # type: ignore[arg-type]


async def test_find_terminating_candidates_windows(store: Store) -> None:
    w0 = 600 * int(T0 // 600)
    me, other = "+14085550001", "+14085550002"
    await store.add_vcrs([
        vcr("before", start=w0 - 601, caller=me),  # just outside the window
        vcr("lo", start=w0 - 600, caller=me),  # first second of window w-1
        vcr("mid", start=w0 + 300, caller=me),
        vcr("unknown", start=w0 + 400, caller=""),  # caller unknown on our side: matches
        vcr("hi", start=w0 + 1199.999, caller=me),
        vcr("after", start=w0 + 1200, caller=me),  # start_to is exclusive
        vcr("othercaller", start=w0 + 300, caller=other),
        vcr("othercallee", start=w0 + 300, caller=me, callee="+14085559999"),
        vcr("orig", "originating", start=w0 + 300, caller=me),
    ])
    now = w0 + 1300

    async def ids(**kw: float) -> list[str]:
        args: dict[str, float] = {"start_from": w0 - 600, "start_to": w0 + 1200, "now": now,
                                  "max_age": 86400.0}
        args.update(kw)
        found = await store.find_terminating_candidates("+14085551234", me, **args)
        return [v.call_id for v in found]

    assert await ids() == ["hi", "unknown", "mid", "lo"]  # newest first
    # max_age: only calls that started within the last 1000 s
    assert await ids(max_age=1000.0) == ["hi", "unknown", "mid"]
    burned = (await store.find_terminating_candidates(
        "+14085551234", me, w0 + 300, w0 + 301, now, 86400.0))[0]
    assert burned.call_id == "mid"
    for _ in range(3):
        await store.record_vcr_failure(burned.id or 0, 3)
    assert await ids() == ["hi", "unknown", "lo"]


async def test_record_vcr_failure_burns_at_max(store: Store) -> None:
    vid = await store.add_vcr(vcr())
    assert vid is not None
    v1 = await store.record_vcr_failure(vid, 3)
    assert (v1.failures, v1.burned) == (1, False)
    v2 = await store.record_vcr_failure(vid, 3)
    assert (v2.failures, v2.burned) == (2, False)
    v3 = await store.record_vcr_failure(vid, 3)
    assert (v3.failures, v3.burned) == (3, True)
    assert (await store.get_vcr(vid)) == v3
    with pytest.raises(NotFoundError):
        await store.record_vcr_failure(4242, 3)


async def test_pending_originating_and_validated(store: Store) -> None:
    await store.add_vcrs([
        vcr("long", "originating", start=T0, dur=60),
        vcr("short", "originating", start=T0 + 1, dur=2),
        vcr("term", "terminating", start=T0 + 2, dur=60),
        vcr("long2", "originating", start=T0 + 3, dur=5),
    ])
    pending = await store.pending_originating_vcrs(5.0)
    assert [v.call_id for v in pending] == ["long", "long2"]  # oldest first
    assert await store.mark_vcr_validated(pending[0].id or 0, T0 + 100)
    assert not await store.mark_vcr_validated(9999, T0)
    got = await store.get_vcr(pending[0].id or 0)
    assert got is not None and got.validated == T0 + 100
    assert [v.call_id for v in await store.pending_originating_vcrs(5.0)] == ["long2"]
    v = await store.record_vcr_failure(pending[1].id or 0, 1)
    assert v.burned
    assert await store.pending_originating_vcrs(5.0) == []


async def test_latest_originating_vcr(store: Store) -> None:
    assert await store.latest_originating_vcr("+14085551234") is None
    await store.add_vcrs([
        vcr("o1", "originating", start=T0), vcr("o2", "originating", start=T0 + 50),
        vcr("t3", "terminating", start=T0 + 99),
        vcr("x", "originating", start=T0 + 99, callee="+14085550000"),
    ])
    latest = await store.latest_originating_vcr("+14085551234")
    assert latest is not None and latest.call_id == "o2"


async def test_delete_and_purge_vcrs(store: Store) -> None:
    await store.add_vcrs([vcr(f"c{i}", start=T0 + i * 100) for i in range(10)])
    vs = await store.list_vcrs()
    assert await store.delete_vcr(vs[0].id or 0)
    assert not await store.delete_vcr(vs[0].id or 0)
    assert await store.purge_vcrs(T0 + 500) == 5  # starts T0 .. T0+400
    left = sorted(v.call_id for v in await store.list_vcrs())
    assert left == ["c5", "c6", "c7", "c8"]
    assert await store.purge_vcrs(T0) == 0


async def test_routes_crud(store: Store) -> None:
    assert await store.get_route("+1") is None
    await store.upsert_route(route("+14085551234"))
    await store.upsert_route(route("+14085550000", routes=("sip:a;transport=tls", "sip:b")))
    got = await store.get_route("+14085550000")
    assert got is not None and got.routes == ("sip:a;transport=tls", "sip:b")
    assert [r.number for r in await store.list_routes()] == ["+14085550000", "+14085551234"]
    # upsert replaces every field
    new = route("+14085551234", ticket="t2", failures=1, last_used=T0 + 5)
    await store.upsert_route(new)
    assert await store.get_route("+14085551234") == new
    assert await store.touch_route("+14085551234", T0 + 9)
    assert not await store.touch_route("+1999", T0)
    got = await store.get_route("+14085551234")
    assert got is not None and got.last_used == T0 + 9
    assert await store.delete_route("+14085550000")
    assert not await store.delete_route("+14085550000")
    with pytest.raises(StoreError):
        await store.upsert_route(route(routes="sip:not-a-tuple"))  # type: ignore[arg-type]


async def test_route_failure_drops_at_max(store: Store) -> None:
    await store.upsert_route(route())
    assert not await store.record_route_failure("+14085551234", 3)
    assert not await store.record_route_failure("+14085551234", 3)
    got = await store.get_route("+14085551234")
    assert got is not None and got.failures == 2
    assert await store.record_route_failure("+14085551234", 3)
    assert await store.get_route("+14085551234") is None
    assert not await store.record_route_failure("+14085551234", 3)  # gone: nothing to drop


async def test_published_numbers(store: Store) -> None:
    p1 = PublishedNumber("+14085551234", "0000000000000001", T0, T0 + 86400)
    p2 = PublishedNumber("+14085550000", "0000000000000001", T0, T0 + 86400)
    await store.set_published(p1)
    await store.set_published(p2)
    assert await store.list_published() == [p2, p1]
    p1b = dataclasses.replace(p1, stored_at=T0 + 1, expires=T0 + 2)
    await store.set_published(p1b)
    assert await store.list_published() == [p2, p1b]
    assert await store.delete_published(p2.number)
    assert not await store.delete_published(p2.number)
    assert await store.list_published() == [p1b]


async def test_ticket_keys_basic(store: Store) -> None:
    assert await store.current_ticket_key() is None
    k1 = await store.create_ticket_key(T0)
    assert (k1.epoch, k1.retired, len(k1.secret)) == (1, None, 32)
    assert "secret" not in repr(k1)
    k2 = await store.create_ticket_key(T0 + 1)
    assert k2.epoch == 2 and k2.secret != k1.secret
    assert await store.current_ticket_key() == k2
    assert await store.ticket_key(1) == k1
    assert await store.ticket_key(77) is None
    assert await store.retire_ticket_key(2, T0 + 2)
    assert not await store.retire_ticket_key(2, T0 + 3)  # already retired
    assert await store.current_ticket_key() == k1
    keys = await store.ticket_keys()
    assert [k.epoch for k in keys] == [1, 2]
    assert keys[1] == TicketKey(2, k2.secret, T0 + 1, T0 + 2)


async def test_ticket_key_epochs_wrap_over_retired(store: Store) -> None:
    keys = [await store.create_ticket_key(T0 + i) for i in range(255)]
    assert [k.epoch for k in keys] == list(range(1, 256))
    with pytest.raises(StoreError, match="in use"):
        await store.create_ticket_key(T0 + 300)
    assert await store.retire_ticket_key(3, T0 + 301)
    assert await store.retire_ticket_key(1, T0 + 301)
    k = await store.create_ticket_key(T0 + 302)  # after 255 comes 1 (retired: reused)
    assert k.epoch == 1
    assert (await store.ticket_key(1)) == k
    k = await store.create_ticket_key(T0 + 303)  # 2 is in use, 3 is retired
    assert k.epoch == 3
    assert await store.current_ticket_key() == k
    with pytest.raises(StoreError):
        await store.create_ticket_key(T0 + 304)
    assert len(await store.ticket_keys()) == 255


async def test_validation_log(store: Store) -> None:
    recs = [
        ValidationRecord(None, T0 + i, "client" if i % 2 else "server", "+14085551234", i or None,
                         "127.0.0.1:7061", "ok" if i % 3 else "failed", f"r{i}")
        for i in range(6)
    ]
    ids = [await store.log_validation(r) for r in recs]
    assert len(set(ids)) == 6
    got = await store.list_validations()
    assert [r.reason for r in got] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert got[-1] == dataclasses.replace(recs[0], id=ids[0])
    assert [r.reason for r in await store.list_validations(limit=2)] == ["r5", "r4"]
    assert [r.reason for r in await store.list_validations(since=T0 + 4)] == ["r5", "r4"]
    assert await store.purge_validations(T0 + 3) == 3
    assert len(await store.list_validations()) == 3
    with pytest.raises(StoreError):
        await store.log_validation(dataclasses.replace(recs[0], role="nobody"))  # type: ignore


async def test_concurrent_tasks_share_one_store(store: Store) -> None:
    """Many tasks writing through one connection: transactions never interleave."""

    async def writer(n: int) -> None:
        for i in range(20):
            await store.add_vcr(vcr(f"t{n}-{i}"))
            await store.record_vcr_failure(1, 1000)

    await store.add_vcr(vcr("first"))
    await asyncio.gather(*(writer(n) for n in range(5)))
    assert len(await store.list_vcrs(limit=None)) == 101
    first = await store.get_vcr(1)
    assert first is not None and first.failures == 100


async def test_cancelled_write_leaves_connection_usable(store: Store) -> None:
    task = asyncio.create_task(store.add_vcrs([vcr(f"c{i}") for i in range(2000)]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # whatever happened to that batch, the connection is not stuck inside a transaction
    assert await store.add_vcr(vcr("after")) is not None
    n = len(await store.list_vcrs(limit=None))
    assert n in (1, 2001)


async def test_new_migration_applies_once_on_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vipr.store.opening as store_mod

    path = tmp_path / "vipr.db"
    async with Store.open(path) as s:
        await s.add_vcr(vcr("kept"))
    v2 = ("CREATE TABLE extra (k TEXT PRIMARY KEY)", "INSERT INTO extra VALUES ('once')")
    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, v2))
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    for _ in range(2):  # the second open finds the schema current and changes nothing
        async with Store.open(path) as s:
            assert [v.call_id for v in await s.list_vcrs()] == ["kept"]
    c = sqlite3.connect(path)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert c.execute("SELECT k FROM extra").fetchall() == [("once",)]
    finally:
        c.close()


async def test_failed_migration_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vipr.store.opening as store_mod

    path = tmp_path / "vipr.db"
    async with Store.open(path):
        pass
    bad = ("CREATE TABLE half (x)", "THIS IS NOT SQL")
    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, bad))
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError):
        await Store.open(path)
    c = sqlite3.connect(path)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchall() == []
    finally:
        c.close()


async def test_concurrent_opens_of_fresh_file(db_target: str | Path) -> None:
    stores = await asyncio.gather(*(Store.open(db_target) for _ in range(4)))
    try:
        ids = await asyncio.gather(*(s.add_vcr(vcr(f"c{i}")) for i, s in enumerate(stores)))
        assert sorted(i for i in ids if i is not None) == [1, 2, 3, 4]
    finally:
        for s in stores:
            await s.close()


async def test_create_ticket_key_unless_a_recent_one_exists(db_target: str | Path) -> None:
    """Hosts (or processes) that find the key due at the same moment add one key between
    them, not one each: the check is inside the rotation's transaction."""
    stores = await asyncio.gather(*(Store.open(db_target) for _ in range(4)))
    try:
        old = await stores[0].create_ticket_key(T0)
        keys = await asyncio.gather(*(s.create_ticket_key(T0 + 100, unless_created_since=T0 + 50)
                                      for s in stores))
        assert len({k.epoch for k in keys}) == 1 and keys[0].epoch != old.epoch
        assert len(await stores[0].ticket_keys()) == 2
        same = await stores[1].create_ticket_key(T0 + 101, unless_created_since=T0 + 100)
        assert same == keys[0]
    finally:
        for s in stores:
            await s.close()
