"""`vipr store migrate` and `vipr store check` (issue 15 item 4): an SQLite store copied into
PostgreSQL whole, ids kept, counts verified; a rerun copies nothing; an interrupted copy goes
on where it stopped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import requires_postgresql
from tests.ports import free_port
from vipr.cli import main
from vipr.store import PublishedNumber, Route, Store, ValidationRecord, Vcr

T0 = 1_700_000_000.0
N_VCRS = 2_345
BATCH = 1_000


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


async def _seed(path: Path) -> None:
    async with Store.open(path) as s:
        await s.add_vcrs([
            Vcr(None, "terminating" if i % 3 else "originating", f"+1408555{i % 97:04d}",
                "+14085551234", T0 + i, T0 + i + 60, f"call-{i}", T0 + i + 60)
            for i in range(N_VCRS)])
        await s.open_vcr(Vcr(None, "originating", "+1", "+2", T0, T0, "open-1", T0,
                             state="open"), '{"legs": 2}')
        await s.delete_vcr(17)   # a gap in the ids
        for n in ("+14085550001", "+14085550002"):
            await s.upsert_route(Route(n, ("sip:a;transport=tls",), "tkt", T0, T0, "ab" * 16,
                                       "b.example", T0, last_used=T0 + 1, failures=1))
        await s.set_published(PublishedNumber("+16505550100", "0000000000000001", T0, T0 + 9))
        for i in range(3):
            await s.create_ticket_key(T0 + i)
        await s.retire_ticket_key(1, T0 + 5)
        await s.log_validations([ValidationRecord(None, T0 + i, "client", "+1", i, "p", "ok",
                                                  "r") for i in range(7)])


async def _everything(target: Path | str) -> tuple[object, ...]:
    async with Store.open(target) as s:
        return (await s.list_vcrs(limit=None), await s.find_open_vcrs(),
                await s.list_routes(), await s.list_published(), await s.ticket_keys(),
                await s.list_validations(limit=None), await s.current_ticket_key())


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Path:
    path = tmp_path / "vipr.db"
    asyncio.run(_seed(path))
    return path


@requires_postgresql
def test_migrate_copies_everything_and_rerun_is_a_no_op(sqlite_store: Path, pg_url: str) -> None:
    r = run("store", "migrate", "--from", f"sqlite:{sqlite_store}", "--to", pg_url,
            "--batch", str(BATCH), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verified"] and out["copied"]["vcr"] == N_VCRS   # N + 1 open − 1 deleted
    assert out["source_rows"] == out["target_rows"]
    assert asyncio.run(_everything(pg_url)) == asyncio.run(_everything(sqlite_store))

    again = run("store", "migrate", "--from", f"sqlite:{sqlite_store}", "--to", pg_url, "--json")
    assert again.exit_code == 0, again.output
    assert set(json.loads(again.stdout)["copied"].values()) == {0}

    async def new_row() -> int | None:   # ids given by the copy: new ones start above them
        async with Store.open(pg_url) as s:
            return await s.add_vcr(Vcr(None, "originating", "+1", "+2", T0, T0 + 9, "new", T0))

    assert asyncio.run(new_row()) == N_VCRS + 2   # the open VCR had id N + 1


@requires_postgresql
def test_interrupted_migrate_resumes(sqlite_store: Path, pg_url: str) -> None:
    async def first_batch_only() -> None:   # what a run stopped after one batch left
        async with Store.open(sqlite_store) as s, Store.open(pg_url) as d:
            assert await d.import_rows("vcr", await s.export_rows("vcr", None, BATCH)) == BATCH

    asyncio.run(first_batch_only())
    r = run("store", "migrate", "--from", str(sqlite_store), "--to", pg_url, "--json",
            "--batch", str(BATCH))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verified"] and out["copied"]["vcr"] == N_VCRS - BATCH
    assert asyncio.run(_everything(pg_url)) == asyncio.run(_everything(sqlite_store))


@requires_postgresql
def test_migrate_into_a_used_database_fails_verification(sqlite_store: Path,
                                                         pg_url: str) -> None:
    async def used() -> None:
        async with Store.open(pg_url) as d:
            await d.upsert_route(Route("+19995550000", ("sip:x",), "t", T0, T0, "cd" * 16,
                                       "c.example", T0))

    asyncio.run(used())
    r = run("store", "migrate", "--from", f"sqlite:{sqlite_store}", "--to", pg_url)
    assert r.exit_code == 1
    assert "counts differ in: route" in r.stdout


def test_migrate_bad_arguments(tmp_path: Path) -> None:
    r = run("store", "migrate", "--from", f"sqlite:{tmp_path / 'absent.db'}",
            "--to", "postgresql://127.0.0.1/x")
    assert r.exit_code == 1 and "no database at" in r.stderr
    r = run("store", "migrate", "--from", "mysql://h/db", "--to", "postgresql://127.0.0.1/x")
    assert r.exit_code == 2 and "sqlite:PATH" in r.stderr


def test_check_both_backends(db_target: Path | str) -> None:
    async def seed() -> None:
        async with Store.open(db_target) as s:
            await s.add_vcr(Vcr(None, "originating", "+1", "+2", T0, T0 + 9, "c", T0))

    asyncio.run(seed())
    r = run("store", "check", "--db", str(db_target), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ok"] and out["schema_version"] == out["expected_version"]
    assert out["rows"]["vcr"] == 1 and out["rows"]["route"] == 0
    assert out["backend"] == ("postgresql" if isinstance(db_target, str) else "sqlite")
    r = run("store", "check", "--db", str(db_target))
    assert r.exit_code == 0 and "connected, schema version" in r.stdout


def test_check_unreachable_postgresql_is_one_line() -> None:
    r = run("store", "check", "--db", f"postgresql://u:pw@127.0.0.1:{free_port()}/x")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: cannot open database") and "pw" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
