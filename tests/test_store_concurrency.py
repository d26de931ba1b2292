"""Three real processes share one database file (DESIGN §2, §8; issue 2 acceptance)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from vipr.store import Store, Vcr

ROUNDS = 40   # each process's own minimum of write rounds (about 220 rows)
PROCS = 3

WRITER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from vipr.store import Store
    from vipr.store.models import Vcr

    async def writers_seen(store: Store) -> int:
        # how many processes have rows in the database
        return len({v.call_id.split("-")[0] for v in await store.list_vcrs(limit=None)})

    async def main(path: str, n: int, rounds: int, procs: int) -> None:
        # All processes open (and migrate) the fresh file at the same moment.
        async with Store.open(path) as store:
            print("ready", flush=True)
            assert sys.stdin.readline().strip() == "go"
            inserted, i, keys, seen = [], 0, 0, 0
            # An event, not a time window: write at least `rounds` rounds and go on until
            # every other process has written too, so the writers really overlapped.
            while i < rounds or seen < procs:
                if i % 10 == 9:
                    seen = await writers_seen(store)
                now = time.time()
                if i % 2:
                    batch = [Vcr(None, "terminating", "+1555000%04d" % n, "+14085551234",
                                 now, now + 30, f"p{n}-{i}-{k}", now) for k in range(10)]
                    assert await store.add_vcrs(batch) == 10
                    inserted += [v.call_id for v in batch]
                    # read-then-write in one transaction (the deferred-txn hazard)
                    key = await store.create_ticket_key(now)
                    assert await store.retire_ticket_key(key.epoch, now)
                    keys += 1
                else:
                    vid = await store.add_vcr(Vcr(None, "originating", "+1", "+14085551234",
                                                  now, now + 30, f"p{n}-{i}", now))
                    assert vid is not None
                    inserted.append(f"p{n}-{i}")
                    await store.record_vcr_failure(vid, 10**6)
                    await store.find_terminating_candidates(
                        "+14085551234", "+1", now - 600, now + 600, now, 3600)
                i += 1
        print(json.dumps({"n": n, "inserted": inserted, "keys": keys, "seen": seen}),
              flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_three_processes_write_one_database(tmp_path: Path, db_target: Path | str) -> None:
    """On SQLite: three processes on one file. On PostgreSQL: three hosts on one database."""
    db = db_target
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(n), str(ROUNDS), str(PROCS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=root,
        )
        for n in range(PROCS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.stderr else "")
        for p in procs:  # start together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=100)   # generous: a loaded machine is slow
            assert "locked" not in err and "busy" not in err, err
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)

    expected = {cid for r in results for cid in r["inserted"]}
    # every writer did its rounds and saw all the others writing before it stopped
    assert all(r["seen"] == PROCS for r in results), results
    assert all(len(r["inserted"]) >= ROUNDS // 2 * 11 for r in results), [
        len(r["inserted"]) for r in results]
    vcrs, max_serial = asyncio.run(_stored(db))
    stored = {v.call_id for v in vcrs}
    assert stored == expected  # no lost rows, nothing extra
    assert len(vcrs) == len(expected)
    # every read-modify-write landed exactly once
    assert sum(v.failures for v in vcrs if v.direction == "originating") == sum(
        sum(1 for cid in r["inserted"] if cid.count("-") == 1) for r in results
    )
    # every key creation read the newest serial and wrote the next: none lost
    assert max_serial == sum(r["keys"] for r in results)
    if isinstance(db, Path):
        c = sqlite3.connect(db)
        try:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            c.close()


async def _stored(db: Path | str) -> tuple[list[Vcr], int]:
    """Every VCR, and the newest ticket key's serial (not part of the API: read directly)."""
    async with Store.open(db) as s:
        vcrs = await s.list_vcrs(limit=None)
    if isinstance(db, Path):
        c = sqlite3.connect(db)
        try:
            return vcrs, int(c.execute("SELECT max(serial) FROM ticket_key").fetchone()[0])
        finally:
            c.close()
    conn = await asyncpg.connect(db)
    try:
        return vcrs, int(await conn.fetchval("SELECT max(serial) FROM ticket_key"))
    finally:
        await conn.close()
