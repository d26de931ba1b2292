"""`vipr store migrate` at the acceptance's size (issue 15): a 48 h SQLite store with 1,000,000
VCRs copied into PostgreSQL by the real CLI (a child process), killed part way, run again: it
goes on where it stopped and the counts match exactly (ids and Call-IDs checked in the
database); a third run copies nothing. Slow (about a minute here); its timing goes to
docs/benchmarks.md, not into an assertion."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requires_postgresql
from vipr.store import Store

pytestmark = [requires_postgresql, pytest.mark.slow, pytest.mark.timeout(300)]

VIPR = str(Path(sys.executable).parent / "vipr")
N_VCRS = 1_000_000
SPAN = 48 * 3600.0          # the store holds 48 h of calls
T0 = 1_700_000_000.0
KILL_AFTER = 200_000        # rows the first run reports copied before it is killed
BOUND = 240.0               # seconds: a bound for each run, not a figure the test relies on


def _build(path: Path) -> None:
    """The real schema (Store.open creates it), then 1,000,000 rows in one transaction, made
    by one INSERT … SELECT over a recursive counter inside SQLite (about 5× faster here than
    executemany over Python tuples: 19 s against 97 s on the loaded test machine)."""
    async def create() -> None:
        async with Store.open(path):
            pass

    asyncio.run(create())
    step = SPAN / N_VCRS
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("PRAGMA synchronous=OFF")   # a fixture: a crash while building is a rerun
        c.execute("BEGIN")
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created,"
            " validated)"
            " SELECT CASE i % 2 WHEN 0 THEN 'originating' ELSE 'terminating' END,"
            " printf('+1408%07d', i % 9000000), printf('+4420%07d', (i * 7919) % 9000000),"
            " ? + i * ?, ? + i * ? + 60, i || '-48h@pbx.example', ? + i * ? + 60,"
            " CASE WHEN i % 3 THEN ? + i * ? + 90 END FROM n",
            (N_VCRS - 1, *(T0, step) * 4))
        c.execute("COMMIT")
        assert c.execute("SELECT count(*), max(id) FROM vcr").fetchone() == (N_VCRS, N_VCRS)
    finally:
        c.close()


async def _migrate(src: Path, url: str, *, kill_after: int | None = None
                   ) -> tuple[int, dict[str, object] | None]:
    """Run the CLI; with `kill_after`, SIGKILL it once it has reported that many VCRs copied
    (its progress lines on stderr). Returns (exit code, its JSON report or None)."""
    args = [VIPR, "store", "migrate", "--from", f"sqlite:{src}", "--to", url]
    if kill_after is None:
        args.append("--json")
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    if kill_after is not None:
        async def watch() -> None:
            assert proc.stderr is not None
            async for line in proc.stderr:
                text = line.decode()
                if text.startswith("vcr: ") and int(text.split()[1]) >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    return
        await asyncio.wait_for(watch(), BOUND)
        return await asyncio.wait_for(proc.wait(), BOUND), None
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return proc.returncode, json.loads(out)


async def _pg_counts(url: str) -> tuple[int, int, int, object]:
    """(rows, distinct ids, distinct Call-IDs, max id) of vcr in PostgreSQL."""
    import asyncpg
    c = await asyncpg.connect(url)
    try:
        r = await c.fetchrow("SELECT count(*), count(DISTINCT id), count(DISTINCT call_id),"
                             " max(id) FROM vcr")
    finally:
        await c.close()
    assert r is not None
    return int(r[0]), int(r[1]), int(r[2]), r[3]


async def test_migrate_a_million_vcrs_resumes_and_reruns_as_no_op(tmp_path: Path,
                                                                    pg_url: str) -> None:
    src = tmp_path / "vipr.db"
    t0 = time.monotonic()
    await asyncio.to_thread(_build, src)
    t1 = time.monotonic()

    rc, _ = await _migrate(src, pg_url, kill_after=KILL_AFTER)
    assert rc == -signal.SIGKILL
    part = (await _pg_counts(pg_url))[0]
    assert KILL_AFTER <= part < N_VCRS   # stopped part way, its batches committed

    t2 = time.monotonic()
    rc, out = await _migrate(src, pg_url)
    t3 = time.monotonic()
    assert out is not None and out["verified"] is True
    assert out["copied"] == {"vcr": N_VCRS - part, "route": 0, "published_number": 0,
                             "ticket_key": 0, "validation": 0}
    assert out["source_rows"] == out["target_rows"]
    assert out["target_rows"]["vcr"] == N_VCRS   # type: ignore[index]
    assert await _pg_counts(pg_url) == (N_VCRS, N_VCRS, N_VCRS, N_VCRS)

    t4 = time.monotonic()
    rc, again = await _migrate(src, pg_url)
    t5 = time.monotonic()
    assert again is not None and again["verified"] is True
    assert set(again["copied"].values()) == {0}   # type: ignore[attr-defined]
    assert await _pg_counts(pg_url) == (N_VCRS, N_VCRS, N_VCRS, N_VCRS)
    # figures for docs/benchmarks.md (printed with -s, never asserted)
    print(f"build {t1 - t0:.1f} s; killed run {t2 - t1:.1f} s ({part} rows); resumed run"
          f" {t3 - t2:.1f} s ({N_VCRS - part} rows); no-op rerun {t5 - t4:.1f} s")
