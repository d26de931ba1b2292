"""The PostgreSQL backend's own guarantees (issue 15): migrations once, and the transactions
the roles rely on when several hosts (here: several stores, each its own pool of connections)
write to one database at the same moment. The API itself is tested on both backends by
tests/test_store.py and tests/test_store_open_vcr.py."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import vipr.store.pg_schema as pg_schema
from tests.conftest import requires_postgresql
from vipr.store import Route, Store, StoreError, Vcr
from vipr.store.api import redact_url
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
