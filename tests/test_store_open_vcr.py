"""VCRs opened at the answer and completed at the BYE (issue 13 defect 6, DESIGN §7/§8)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import requires_postgresql
from vipr.store import Store, StoreError
from vipr.store.models import CompleteVcr, OpenVcr, Vcr
from vipr.store.pg_schema import PG_MIGRATIONS, PG_SCHEMA_VERSION
from vipr.store.schema import MIGRATIONS, SCHEMA_VERSION

T0 = 1_700_000_000.0


def opened(call_id: str, start: float = T0, direction: str = "originating") -> Vcr:
    return Vcr(id=None, direction=direction, caller="+14085551234",  # type: ignore[arg-type]
               callee="+442071234567", start=start, stop=start, call_id=call_id,
               created=start, state="open")


def completed(call_id: str, start: float, stop: float) -> Vcr:
    return Vcr(id=None, direction="originating", caller="+14085551234",
               callee="+442071234567", start=start, stop=stop, call_id=call_id, created=stop)


async def test_open_then_complete_by_call_id(db_target: str | Path) -> None:
    async with Store.open(db_target) as s:
        vid = await s.open_vcr(opened("c1"), '{"up": 1}')
        assert vid is not None
        assert await s.open_vcr(opened("c1")) is None          # answered twice: one row
        [(v, dialog)] = await s.find_open_vcrs("c1")
        assert (v.id, v.state, v.stop, dialog) == (vid, "open", T0, '{"up": 1}')
        # the BYE's record carries a different (in-memory) start: the stored one wins
        assert await s.complete_vcr(completed("c1", T0 + 1, T0 + 30)) == vid
        v2 = await s.get_vcr(vid)
        assert v2 is not None and (v2.state, v2.start, v2.stop) == ("complete", T0, T0 + 30)
        assert await s.find_open_vcrs("c1") == []
        assert await s.complete_vcr(completed("c1", T0, T0 + 40)) is None   # BYE retransmitted
        v3 = await s.get_vcr(vid)
        assert v3 is not None and v3.stop == T0 + 30
        assert len(await s.list_vcrs()) == 1


async def test_complete_after_reopening_the_store(db_target: str | Path) -> None:
    db = db_target
    async with Store.open(db) as s:
        vid = await s.open_vcr(opened("c2"), "legs")
    async with Store.open(db) as s:   # a restarted proxy
        assert [(v.id, d) for v, d in await s.find_open_vcrs()] == [(vid, "legs")]
        assert await s.complete_vcr(completed("c2", T0, T0 + 12.5)) == vid
    async with Store.open(db) as s:
        [v] = await s.list_vcrs()
        assert (v.id, v.state, v.duration) == (vid, "complete", 12.5)


async def test_complete_without_open_row_inserts_it_whole(db_target: str | Path) -> None:
    async with Store.open(db_target) as s:
        vid = await s.complete_vcr(completed("c3", T0, T0 + 9))
        v = await s.get_vcr(vid or -1)
        assert v is not None and (v.state, v.start, v.stop) == ("complete", T0, T0 + 9)


async def test_open_and_complete_in_one_batch_keep_order(db_target: str | Path) -> None:
    async with Store.open(db_target) as s:
        ids = await s.apply_vcr_changes([OpenVcr(opened("c4")), CompleteVcr(
            completed("c4", T0, T0 + 7)), OpenVcr(opened("c5"))])
        assert ids[0] == ids[1] and ids[2] is not None
        assert {v.call_id: v.state for v in await s.list_vcrs()} == {
            "c4": "complete", "c5": "open"}
        with pytest.raises(StoreError):
            await s.apply_vcr_changes([OpenVcr(completed("c6", T0, T0 + 1))])


async def test_open_and_unterminated_vcrs_are_never_offered_to_pvp(db_target: str | Path) -> None:
    async with Store.open(db_target) as s:
        await s.open_vcr(opened("old", T0))
        await s.open_vcr(opened("new", T0 + 3600))
        await s.open_vcr(opened("t-open", T0 + 100, "terminating"))
        assert await s.close_unterminated(T0 + 60) == 1
        states = {v.call_id: v.state for v in await s.list_vcrs()}
        assert states == {"old": "unterminated", "new": "open", "t-open": "open"}
        assert await s.find_open_vcrs("old") == []
        assert await s.pending_originating_vcrs(0) == []
        assert await s.latest_originating_vcr("+442071234567") is None
        assert await s.find_terminating_candidates(
            "+442071234567", "+14085551234", T0 - 600, T0 + 600, T0 + 200, 86400) == []
        # a late BYE still completes an unterminated call with its real stop time
        assert await s.complete_vcr(completed("old", T0, T0 + 7200)) is not None
        [v] = await s.pending_originating_vcrs(0)
        assert (v.call_id, v.state, v.duration) == ("old", "complete", 7200)


def _v1_database(path: Path) -> None:
    """A file as the previous vipr release left it: schema v1 with one VCR."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    for stmt in MIGRATIONS[0]:
        c.execute(stmt)
    c.execute("INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created)"
              " VALUES ('originating', '+1', '+2', ?, ?, 'v1-call', ?)", (T0, T0 + 20, T0 + 20))
    c.execute("PRAGMA user_version = 1")
    c.commit()
    c.close()


async def test_migration_from_v1_keeps_vcrs_as_complete(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    _v1_database(db)
    async with Store.open(db) as s:
        [v] = await s.list_vcrs()
        assert (v.call_id, v.state, v.start, v.stop) == ("v1-call", "complete", T0, T0 + 20)
        assert [x.call_id for x in await s.pending_originating_vcrs(5)] == ["v1-call"]
        assert await s.open_vcr(opened("after")) is not None
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    c.close()


@requires_postgresql
async def test_postgres_migration_from_v1_keeps_vcrs_as_complete(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for stmt in PG_MIGRATIONS[0]:
            await conn.execute(stmt)
        await conn.execute("CREATE TABLE vipr_schema (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO vipr_schema VALUES (1)")
        await conn.execute(
            "INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created)"
            " VALUES ('originating', '+1', '+2', $1, $2, 'v1-call', $2)", T0, T0 + 20)
    finally:
        await conn.close()
    async with Store.open(pg_url) as s:
        [v] = await s.list_vcrs()
        assert (v.call_id, v.state, v.start, v.stop) == ("v1-call", "complete", T0, T0 + 20)
        assert await s.open_vcr(opened("after")) is not None
        assert await s.schema_version() == PG_SCHEMA_VERSION == SCHEMA_VERSION
