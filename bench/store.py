"""Store benchmark: the vipr.store API against the raw driver doing the same work, for SQLite
(stdlib sqlite3) and PostgreSQL (asyncpg), in the same run.

  python bench/store.py [--quick] [--batch N] [--postgresql URL | --no-postgresql]

PostgreSQL: a throw-away cluster (tests/pg_cluster.py: Debian's initdb/pg_ctl, loopback, as
`nobody` when run as root, fsync off) unless --postgresql names a database to use (its tables
are created by the store; the raw side works on a second, identical database named URL_raw,
which must exist); skipped when PostgreSQL is not installed. Raw PostgreSQL baseline: one
asyncpg connection; single = one autocommit INSERT … RETURNING id; batched = executemany in a
transaction; lookup = fetchrow. A second raw baseline sends the store's own SQL text through
the same raw connection (`*_same_sql`: the single-row INSERT with its event CTE, the batch as
one INSERT … SELECT FROM unnest(arrays)): the API's cost over the driver doing the same
statements, apart from the choice of statement.

Three workloads, each timed for the API (vipr.store.Store over aiosqlite) and for raw sqlite3
on a file with the same schema and pragmas (WAL, synchronous=NORMAL, busy_timeout), in the same
run, interleaved, median of several repetitions:

  single   one VCR per BEGIN IMMEDIATE … COMMIT transaction   (Store.add_vcr)
  batched  N VCRs per transaction with executemany          (Store.add_vcrs)
  lookup   route by number, primary-key SELECT              (Store.get_route)

Prints a table, then one JSON line with rates and API/raw ratios per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from vipr.store import Store
from vipr.store.models import Route, Vcr
from vipr.store.postgres import _INSERT_VCR_ID, _INSERT_VCRS
from vipr.store.rows import vcr_params
from vipr.store.schema import PRAGMAS

INSERT = (
    "INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created, validated,"
    " failures, burned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_id, direction) DO NOTHING"
)
SELECT_ROUTE = (
    "SELECT number, routes, ticket, ticket_expires, expires, learned_from_node,"
    " learned_from_domain, validated_at, last_used, failures FROM route WHERE number = ?"
)


class Ids:
    def __init__(self, prefix: str) -> None:
        self.prefix, self.n = prefix, 0

    def vcrs(self, count: int) -> list[Vcr]:
        now = time.time()
        out = []
        for _ in range(count):
            self.n += 1
            out.append(Vcr(None, "terminating", "+14085550001", f"+1408555{self.n % 10000:04d}",
                           now, now + 60, f"{self.prefix}-{self.n}@pbx.example", now))
        return out


def as_row(v: Vcr) -> tuple[object, ...]:
    return (v.direction, v.caller, v.callee, v.start, v.stop, v.call_id, v.created, v.validated,
            v.failures, int(v.burned))


def raw_connect(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None)
    for p in PRAGMAS:
        c.execute(p)
    return c


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def run(quick: bool, batch: int) -> dict[str, object]:
    reps = 5 if quick else 9
    n_single = 500 if quick else 3000
    n_batches = 40 if quick else 200
    n_lookups = 3000 if quick else 20000
    n_routes = 1000

    with tempfile.TemporaryDirectory(prefix="vipr-bench-") as d:
        api_path, raw_path = Path(d) / "api.db", Path(d) / "raw.db"
        async with Store.open(raw_path):
            pass  # the raw side gets the identical schema
        raw = raw_connect(raw_path)
        store = await Store.open(api_path)
        api_ids, raw_ids = Ids("api"), Ids("raw")
        numbers = [f"+1650555{i:04d}" for i in range(n_routes)]
        now = time.time()
        for num in numbers:
            r = Route(num, ("sip:192.0.2.1:5061;transport=tls",), "t" * 120, now + 86400,
                      now + 86400, "ab" * 16, "b.example.net", now)
            await store.upsert_route(r)
            raw.execute(
                "INSERT INTO route VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (num, json.dumps(list(r.routes)), r.ticket, r.ticket_expires, r.expires,
                 r.learned_from_node, r.learned_from_domain, r.validated_at, None, 0),
            )
        keys = [random.choice(numbers) for _ in range(n_lookups)]

        # -- workloads: each gets its input prepared outside the timed part
        async def api_single() -> None:
            for v in pending:
                await store.add_vcr(v)

        async def raw_single() -> None:
            for row in pending_rows:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute(INSERT, row)
                raw.execute("COMMIT")

        async def api_batched() -> None:
            for b in pending_batches:
                await store.add_vcrs(b)

        async def raw_batched() -> None:
            for rows in pending_batch_rows:
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany(INSERT, rows)
                raw.execute("COMMIT")

        async def api_lookup() -> None:
            for k in keys:
                await store.get_route(k)

        async def raw_lookup() -> None:
            for k in keys:
                raw.execute(SELECT_ROUTE, (k,)).fetchone()

        times: dict[str, list[float]] = {k: [] for k in (
            "single_api", "single_raw", "batched_api", "batched_raw", "lookup_api", "lookup_raw")}
        for _ in range(reps):
            pending = api_ids.vcrs(n_single)
            pending_rows = [as_row(v) for v in raw_ids.vcrs(n_single)]
            pending_batches = [api_ids.vcrs(batch) for _ in range(n_batches)]
            pending_batch_rows = [[as_row(v) for v in raw_ids.vcrs(batch)]
                                  for _ in range(n_batches)]
            times["single_api"].append(await timed(api_single))
            times["single_raw"].append(await timed(raw_single))
            times["batched_raw"].append(await timed(raw_batched))
            times["batched_api"].append(await timed(api_batched))
            times["lookup_api"].append(await timed(api_lookup))
            times["lookup_raw"].append(await timed(raw_lookup))
        # sanity: both sides did the same work
        n_api = len(await store.list_vcrs(limit=None))
        n_raw = raw.execute("SELECT count(*) FROM vcr").fetchone()[0]
        assert n_api == n_raw == reps * (n_single + n_batches * batch), (n_api, n_raw)
        await store.close()
        raw.close()

    def rate(key: str, count: int) -> float:
        return count / statistics.median(times[key])

    out: dict[str, object] = {"bench": "store", "quick": quick, "batch": batch, "reps": reps,
                              "sqlite": sqlite3.sqlite_version}
    for name, count in (("single", n_single), ("batched", n_batches * batch),
                        ("lookup", n_lookups)):
        api, rawr = rate(f"{name}_api", count), rate(f"{name}_raw", count)
        out[name] = {"api_per_s": round(api), "raw_per_s": round(rawr),
                     "ratio": round(api / rawr, 3)}
    return out


PG_INSERT = (
    "INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created, validated,"
    " failures, burned) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    " ON CONFLICT (call_id, direction) DO NOTHING"
)
PG_SELECT_ROUTE = SELECT_ROUTE.replace("?", "$1")


async def run_pg(quick: bool, batch: int, api_url: str, raw_url: str) -> dict[str, object]:
    """The same three workloads: Store over PostgreSQL vs one raw asyncpg connection."""
    reps = 5 if quick else 9
    n_single = 300 if quick else 2000
    n_batches = 20 if quick else 100
    n_lookups = 2000 if quick else 10000
    n_routes = 1000
    async with Store.open(raw_url):
        pass  # the raw side gets the identical schema
    raw: Any = await asyncpg.connect(raw_url)
    store = await Store.open(api_url)
    api_ids, raw_ids = Ids("api"), Ids("raw")
    numbers = [f"+1650555{i:04d}" for i in range(n_routes)]
    now = time.time()
    for num in numbers:
        r = Route(num, ("sip:192.0.2.1:5061;transport=tls",), "t" * 120, now + 86400,
                  now + 86400, "ab" * 16, "b.example.net", now)
        await store.upsert_route(r)
        await raw.execute(
            "INSERT INTO route VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            num, json.dumps(list(r.routes)), r.ticket, r.ticket_expires, r.expires,
            r.learned_from_node, r.learned_from_domain, r.validated_at, None, 0)
    keys = [random.choice(numbers) for _ in range(n_lookups)]
    insert_returning = PG_INSERT + " RETURNING id"

    async def api_single() -> None:
        for v in pending:
            await store.add_vcr(v)

    async def raw_single() -> None:
        for row in pending_rows:
            await raw.fetchval(insert_returning, *row)

    async def api_batched() -> None:
        for b in pending_batches:
            await store.add_vcrs(b)

    async def raw_batched() -> None:
        for rows in pending_batch_rows:
            async with raw.transaction():
                await raw.executemany(PG_INSERT, rows)

    async def raw_single_same_sql() -> None:
        for params in pending_same:
            await raw.fetch(_INSERT_VCR_ID, *params)

    async def raw_batched_same_sql() -> None:
        for columns in pending_same_batches:
            await raw.fetch(_INSERT_VCRS, *columns)

    async def api_lookup() -> None:
        for k in keys:
            await store.get_route(k)

    async def raw_lookup() -> None:
        for k in keys:
            await raw.fetchrow(PG_SELECT_ROUTE, k)

    times: dict[str, list[float]] = {k: [] for k in (
        "single_api", "single_raw", "batched_api", "batched_raw", "lookup_api", "lookup_raw",
        "single_same_sql", "batched_same_sql")}
    try:
        for _ in range(reps):
            pending = api_ids.vcrs(n_single)
            pending_rows = [as_row(v) for v in raw_ids.vcrs(n_single)]
            pending_batches = [api_ids.vcrs(batch) for _ in range(n_batches)]
            pending_batch_rows = [[as_row(v) for v in raw_ids.vcrs(batch)]
                                  for _ in range(n_batches)]
            pending_same = [vcr_params(v) for v in raw_ids.vcrs(n_single)]
            pending_same_batches = [
                [list(c) for c in zip(*(vcr_params(v) for v in raw_ids.vcrs(batch)),
                                      strict=True)] for _ in range(n_batches)]
            times["single_api"].append(await timed(api_single))
            times["single_raw"].append(await timed(raw_single))
            times["single_same_sql"].append(await timed(raw_single_same_sql))
            times["batched_raw"].append(await timed(raw_batched))
            times["batched_api"].append(await timed(api_batched))
            times["batched_same_sql"].append(await timed(raw_batched_same_sql))
            times["lookup_api"].append(await timed(api_lookup))
            times["lookup_raw"].append(await timed(raw_lookup))
        n_api = (await store.row_counts())["vcr"]
        n_raw = await raw.fetchval("SELECT count(*) FROM vcr")
        assert n_api * 2 == n_raw == 2 * reps * (n_single + n_batches * batch), (n_api, n_raw)
    finally:
        await store.close()
        await raw.close()

    def rate(key: str, count: int) -> float:
        return count / statistics.median(times[key])

    out: dict[str, object] = {"reps": reps, "asyncpg": asyncpg.__version__}
    for name, count in (("single", n_single), ("batched", n_batches * batch),
                        ("lookup", n_lookups)):
        api, rawr = rate(f"{name}_api", count), rate(f"{name}_raw", count)
        out[name] = {"api_per_s": round(api), "raw_per_s": round(rawr),
                     "ratio": round(api / rawr, 3)}
        if f"{name}_same_sql" in times:
            same = rate(f"{name}_same_sql", count)
            out[name].update(same_sql_per_s=round(same), ratio_same_sql=round(api / same, 3))
    return out


def throwaway_postgresql() -> tuple[Any, str, str] | None:
    """A throw-away cluster with two databases (API, raw); None when not installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg_cluster import Cluster, pg_bin, psql

    bin_dir = pg_bin()
    if bin_dir is None:
        return None
    cluster = Cluster(bin_dir)
    for name in ("bench_api", "bench_raw"):
        psql(cluster, f"CREATE DATABASE {name}")
    return cluster, cluster.url("bench_api"), cluster.url("bench_raw")


def print_rows(res: dict[str, Any], batch: int) -> None:
    print(f"{'workload':<10} {'API/s':>10} {'raw/s':>10} {'ratio':>7}")
    labels = {"single": "insert 1", "batched": f"insert {batch}", "lookup": "lookup"}
    for name, label in labels.items():
        r = res[name]
        print(f"{label:<10} {r['api_per_s']:>10} {r['raw_per_s']:>10} {r['ratio']:>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (CI)")
    ap.add_argument("--batch", type=int, default=100, help="VCRs per batched transaction")
    ap.add_argument("--postgresql", metavar="URL", help="use this database (and URL_raw)")
    ap.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = ap.parse_args()
    res: dict[str, Any] = asyncio.run(run(args.quick, args.batch))
    print("SQLite")
    print_rows(res, args.batch)
    res["batched_target_0.5x_met"] = res["batched"]["ratio"] >= 0.5
    if not args.no_postgresql:
        cluster = None
        if args.postgresql:
            urls: tuple[str, str] | None = (args.postgresql, args.postgresql + "_raw")
        else:
            made = throwaway_postgresql()
            cluster, urls = (made[0], made[1:]) if made else (None, None)
        try:
            if urls is None:
                res["postgresql"] = "skipped: PostgreSQL not installed (Debian postgresql)"
            else:
                pg = asyncio.run(run_pg(args.quick, args.batch, urls[0], urls[1]))
                pg["target_0.8x_met"] = all(
                    pg[k]["ratio"] >= 0.8 for k in ("single", "batched", "lookup"))
                pg["target_0.8x_same_sql_met"] = all(
                    pg[k].get("ratio_same_sql", pg[k]["ratio"]) >= 0.8
                    for k in ("single", "batched", "lookup"))
                print("PostgreSQL")
                print_rows(pg, args.batch)
                res["postgresql"] = pg
        finally:
            if cluster is not None:
                cluster.remove()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
