"""The PostgreSQL backend's own guarantees (issue 15): migrations once, and the transactions
the roles rely on when several hosts (here: several stores, each its own pool of connections)
write to one database at the same moment. The API itself is tested on both backends by
tests/test_store.py and tests/test_store_open_vcr.py."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

import vipr.store.pg_schema as pg_schema
from tests.conftest import requires_postgresql
from vipr.store import Route, Store, StoreError, Vcr
from vipr.store.api import redact_url
from vipr.store.events import EventError, StoreEvent, decode_event, encode_event
from vipr.store.models import CompleteVcr, OpenVcr

pytestmark = requires_postgresql

T0 = 1_700_000_000.0
HOSTS = 4


def opened(call_id: str) -> Vcr:
    return Vcr(id=None, direction="originating", caller="+14085551234", callee="+4420712345",
               start=T0, stop=T0, call_id=call_id, created=T0, state="open")


def completed(call_id: str, stop: float) -> Vcr:
    return Vcr(id=None, direction="originating", caller="+14085551234", callee="+4420712345",
               start=T0, stop=stop, call_id=call_id, created=stop)


async def _hosts(url: str, n: int = HOSTS) -> list[Store]:
    return list(await asyncio.gather(*(Store.open(url) for _ in range(n))))


async def _close(stores: list[Store]) -> None:
    for s in stores:
        await s.close()


async def test_new_migration_applies_once(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Store.open(pg_url) as s:
        await s.add_vcr(completed("kept", T0 + 5))
    step = ("CREATE TABLE extra (k TEXT PRIMARY KEY)", "INSERT INTO extra VALUES ('once')")
    monkeypatch.setattr(pg_schema, "PG_MIGRATIONS", (*pg_schema.PG_MIGRATIONS, step))
    monkeypatch.setattr(pg_schema, "PG_SCHEMA_VERSION", pg_schema.PG_SCHEMA_VERSION + 1)
    stores = await _hosts(pg_url)   # every host opens at once: one of them migrates
    try:
        assert {await s.schema_version() for s in stores} == {pg_schema.PG_SCHEMA_VERSION}
    finally:
        await _close(stores)
    conn = await asyncpg.connect(pg_url)
    try:
        assert [r[0] for r in await conn.fetch("SELECT k FROM extra")] == ["once"]
    finally:
        await conn.close()


async def test_failed_migration_rolls_back(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Store.open(pg_url):
        pass
    bad = ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL")
    monkeypatch.setattr(pg_schema, "PG_MIGRATIONS", (*pg_schema.PG_MIGRATIONS, bad))
    monkeypatch.setattr(pg_schema, "PG_SCHEMA_VERSION", pg_schema.PG_SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="syntax"):
        await Store.open(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT version FROM vipr_schema") == 2
    finally:
        await conn.close()


async def test_concurrent_key_rotations_never_share_an_epoch(pg_url: str) -> None:
    """Ticket key rotation is atomic across hosts: no epoch (nor serial) taken twice, no key
    overwritten by another host's rotation."""
    stores = await _hosts(pg_url)
    try:
        keys = await asyncio.gather(*(s.create_ticket_key(T0 + i)
                                      for i in range(5) for s in stores))
        assert len({k.epoch for k in keys}) == len(keys)
        stored = {k.epoch: k.secret for k in await stores[0].ticket_keys()}
        assert stored == {k.epoch: k.secret for k in keys}
        newest = await stores[1].current_ticket_key()
        assert newest is not None and newest.epoch in stored
    finally:
        await _close(stores)


async def test_open_and_bye_on_different_hosts_lose_nothing(pg_url: str) -> None:
    """Each call's answer is recorded by one host and its BYE by another, concurrently: every
    call ends with exactly one complete VCR carrying the BYE's stop time."""
    a, b = await _hosts(pg_url, 2)
    try:
        calls = [f"x{i}" for i in range(60)]
        await asyncio.gather(
            *(a.apply_vcr_changes([OpenVcr(opened(c), "legs")]) for c in calls),
            *(b.apply_vcr_changes([CompleteVcr(completed(c, T0 + 30))]) for c in calls))
        vs = await a.list_vcrs(limit=None)
        assert sorted(v.call_id for v in vs) == sorted(calls)
        assert {(v.state, v.stop) for v in vs} == {("complete", T0 + 30)}
        assert await b.find_open_vcrs() == []
    finally:
        await _close([a, b])


async def test_route_learned_by_racing_hosts_is_one_row(pg_url: str) -> None:
    stores = await _hosts(pg_url)
    try:
        base = Route(number="+14085551234", routes=("sip:10.0.0.1:5061;transport=tls",),
                     ticket="t", ticket_expires=T0 + 1, expires=T0 + 1,
                     learned_from_node="ab" * 16, learned_from_domain="b.example.net",
                     validated_at=T0)
        await asyncio.gather(*(s.learn_route(base, None) for s in stores))
        assert await stores[0].list_routes() == [base]
    finally:
        await _close(stores)


async def test_unreachable_server_is_one_store_error() -> None:
    from tests.ports import free_port
    url = f"postgresql://vipr:secret@127.0.0.1:{free_port()}/none"
    with pytest.raises(StoreError) as exc:
        await Store.open(url)
    assert "secret" not in str(exc.value) and "cannot open database" in str(exc.value)
    assert redact_url(url) in str(exc.value)


async def test_closed_store_raises(pg_url: str) -> None:
    s = await Store.open(pg_url)
    assert s.backend == "postgresql"
    await s.close()
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.list_routes()


# ---------------------------------------------------------------- cross-host events (item 2)

EVENT_BOUND = 5.0   # seconds: a bound for a lost event, not a figure the test relies on


async def _listening(store: Store) -> asyncio.Queue[StoreEvent]:
    got: asyncio.Queue[StoreEvent] = asyncio.Queue()

    async def handler(e: StoreEvent) -> None:
        await got.put(e)

    assert await store.listen(handler)
    return got


async def _next(q: asyncio.Queue[StoreEvent]) -> StoreEvent:
    return await asyncio.wait_for(q.get(), EVENT_BOUND)


async def test_changes_on_one_host_reach_the_other(pg_url: str) -> None:
    a, b = await _hosts(pg_url, 2)
    try:
        events = await _listening(b)
        r = Route(number="+14085551234", routes=("sip:x",), ticket="t", ticket_expires=T0,
                  expires=T0, learned_from_node="ab" * 16, learned_from_domain="b.example",
                  validated_at=T0)
        await a.learn_route(r, None)
        assert await _next(events) == StoreEvent("route_learned", number="+14085551234")
        key = await a.create_ticket_key(T0)
        assert await _next(events) == StoreEvent("key_rotated", epoch=key.epoch)
        # an opened VCR is not for pvp yet; its completion is
        [vid] = await a.apply_vcr_changes([OpenVcr(opened("c1"), None)])
        await a.apply_vcr_changes([CompleteVcr(completed("c1", T0 + 30))])
        assert await _next(events) == StoreEvent("vcr_added", id=vid or -1)
        # imported in a batch (vipr vcrs import), and one by one
        ids = await a.add_vcrs_ids([completed("i1", T0 + 3), completed("i2", T0 + 4)])
        assert [await _next(events), await _next(events)] == [
            StoreEvent("vcr_added", id=i or -1) for i in ids]
        vid = await a.add_vcr(completed("i3", T0 + 5))
        assert await _next(events) == StoreEvent("vcr_added", id=vid or -1)
        # a rolled-back transaction sends nothing
        null_caller = dataclasses.replace(completed("bad", T0 + 9), caller=None)
        with pytest.raises(StoreError, match="null"):   # the database refuses the 2nd row
            await a.add_vcrs([completed("c2", T0 + 9), null_caller])
        assert "c2" not in {v.call_id for v in await a.list_vcrs(limit=None)}
        await a.delete_route("+14085551234")
        assert await _next(events) == StoreEvent("route_learned", number="+14085551234")
        assert events.empty()
    finally:
        await _close([a, b])


async def test_listener_reconnects_and_asks_for_a_resync(pg_url: str) -> None:
    a, b = await _hosts(pg_url, 2)
    try:
        events = await _listening(b)
        conn = await asyncpg.connect(pg_url)
        try:   # what a failover or a restarted server does to the listening connection
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
        finally:
            await conn.close()
        assert await _next(events) == StoreEvent("resync")
        await a.create_ticket_key(T0)
        assert (await _next(events)).kind == "key_rotated"
    finally:
        await _close([a, b])


def test_event_payloads_are_checked() -> None:
    for e in (StoreEvent("route_learned", number="+1"), StoreEvent("vcr_added", id=7),
              StoreEvent("key_rotated", epoch=3)):
        assert decode_event(encode_event(e)) == e
    for bad in ("", "[]", '{"k": "resync"}', '{"k": "vcr_added", "id": true}',
                '{"k": "route_learned"}', "x" * 2000):
        with pytest.raises(EventError):
            decode_event(bad)
