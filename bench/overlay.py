"""Overlay benchmark: CHORD-RELOAD hops, Store/Fetch latency, Fetch after killing 30 % of nodes.

For N = 16 and 64 RELOAD nodes in one process (real TLS links, RSA-2048 signatures, the VIPR
Kind): mean/max overlay hops of a Fetch (via list) and the hops the same keys and 2,000 random
keys take over the nodes' tables as they stand (vipr/reload/sim/tables.py, the code the
simulator measures with), table state (links, ready peers, true fingers), Store and Fetch
p50/p95 (every Fetch answer checked for the claim), then 30 % of the nodes are stopped without
a Leave and every number is looked up at once and again after one update interval counted from
the kill (COPY fallback allowed): success rate and p50/p95 of each pass.
Baseline in the same run: the PyPI `kademlia` package (k=20, α=3) with the same N:
set/get p50/p95 (every get checked), get at once and after the same window after 30 % stopped.

    python bench/overlay.py --quick        # prints one JSON line last
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vipr.reload import ca
from vipr.reload.aio.node import ChordTimers, ReloadJoinError, ReloadNode
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher, lookup, verified_values
from vipr.reload.core.storage import DataStore
from vipr.reload.core.topology import to_int
from vipr.reload.errors import ReloadError
from vipr.reload.overlay_config import vipr_kind
from vipr.reload.sim.tables import table_stats, walk_hops
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.security import TrustStore
from vipr.reload.wire.storage_bodies import (
    DictionarySpecifier,
    FetchReq,
    StoredDataSpecifier,
)
from vipr.reload.wire.vipr_kind import KIND_VIPR, claims_from, resource_ids

OVERLAY = "bench-overlay.example.org"
KILL_FRACTION = 0.3
TIMERS = ChordTimers(update_interval=3.0, ping_interval=6.0, reliability_timer=0.5,
                     max_transmissions=4, attach_timeout=10.0, join_timeout=60.0,
                     link_dead_after=3.0, tombstone=10.0)
# after the last join: two update intervals and one finger refresh (chord-ping-interval)
SETTLE_S = max(TIMERS.update_interval * 2, TIMERS.ping_interval * 1.5)
REPAIR_S = TIMERS.update_interval  # the repair window both overlays get after the kill
WALK_KEYS = 2000
JOIN_ATTEMPTS = 8  # under CPU load a join can miss its 2 s transaction deadline


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def ms(x: float) -> float:
    return round(x * 1000, 2)


def ideal_hops(n: int) -> float:
    return 0.5 * math.log2(n) - 0.6


# ----------------------------------------------------------------------------- RELOAD


async def reload_run(n: int, k: int, tmp: Path, timers: ChordTimers) -> dict[str, Any]:
    ca_cert, ca_key = ca.create_ca(OVERLAY)
    key = ca.generate_key()
    trust = TrustStore([ca_cert], overlay=OVERLAY)
    nodes: list[ReloadNode] = []
    services: list[StorageService] = []
    t0 = time.perf_counter()
    c0 = time.process_time()  # CPU: on a shared machine the wall time is mostly waiting
    boot: tuple[str, int] | None = None
    join_failures = 0
    for i in range(n):
        svc = StorageService(DataStore([vipr_kind()], trust), hold_down=timers.update_interval)
        for attempt in range(JOIN_ATTEMPTS):  # a failed join: retried via another bootstrap
            # with a new certificate (a new Node-ID), so that no peer's state about the first
            # attempt can matter (under load, retries under the same Node-ID failed 4 of 4)
            creds = ca.issue_node_cert(ca_cert, ca_key, OVERLAY, f"n{i}@bench.example", key=key)
            files = creds.write(tmp, f"n{n}-{i}-{attempt}")
            ctx = ReloadContext(OVERLAY, creds, trust, configuration_sequence=1)
            via = [nodes[(i * 7 + attempt) % len(nodes)].address] if attempt and nodes else (
                [boot] if boot else [])
            node = ReloadNode(context=ctx, creds_files=files, listen=("127.0.0.1", 0),
                              bootstrap=via, create=i == 0, timers=timers, storage=svc)
            try:
                await node.start()
                break
            except ReloadJoinError as e:
                join_failures += 1
                print(f"join of node {i} failed ({e}); attempt {attempt + 2}", file=sys.stderr)
                await node.stop(leave=False)
                await asyncio.sleep(timers.update_interval)
        else:
            raise RuntimeError(f"node {i} could not join")
        svc.attach(node)
        if boot is None:
            boot = node.address
        nodes.append(node)
        services.append(svc)
    join_s = time.perf_counter() - t0
    join_cpu_s = time.process_time() - c0
    # let the ring settle and every node refresh its fingers once (chord-ping-interval)
    await asyncio.sleep(SETTLE_S)
    peers = {x.node_id: x.protocol for x in nodes}
    state = table_stats(peers)
    rnd = random.Random(n)
    numbers = [f"+1408{rnd.randrange(10**7):07d}" for _ in range(k)]
    # hops over the tables as they stand (no messages): the same numbers' N resources from
    # the nodes the Fetches below start at, and 2,000 random Resource-IDs (less noise)
    srcs = [rnd.choice(nodes) for _ in numbers]
    walk_same = [walk_hops(peers, s.node_id, to_int(resource_ids(num)[0]))
                 for s, num in zip(srcs, numbers, strict=True)]
    walk_rand = [walk_hops(peers, rnd.choice(nodes).node_id, rnd.getrandbits(128))
                 for _ in range(WALK_KEYS)]
    store_t, fetch_t, hops = [], [], []
    store_failed = fetch_failed = 0  # no answer within the transaction (2 s): counted, not fatal
    for i, num in enumerate(numbers):
        pub = ViprPublisher(nodes[i % n], "00000000000000b1", lifetime=3600)
        for j, r in enumerate(resource_ids(num)):
            t = time.perf_counter()
            try:
                await nodes[i % n].request(r, pub._request(r, _claim(pub)))
            except ReloadError as e:
                store_failed += 1
                print(f"store {num} #{j} failed: {e}", file=sys.stderr)
                continue
            if j == 0:
                store_t.append(time.perf_counter() - t)
    spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier())
    fetched = 0
    for num, src in zip(numbers, srcs, strict=True):
        res = resource_ids(num)[0]
        t = time.perf_counter()
        before = sum((s.fetch_hops for s in services), Counter())
        try:
            ans = await src.request(res, FetchReq(res, (spec,)))
        except ReloadError as e:
            fetch_failed += 1
            print(f"fetch {num} failed: {e}", file=sys.stderr)
            continue
        fetch_t.append(time.perf_counter() - t)
        fetched += bool(claims_from(verified_values(ans, res, trust)))  # the claim came back
        diff = sum((s.fetch_hops for s in services), Counter()) - before
        hops.extend(diff.elements())
    # kill 30 % without Leave; look every number up at once and, in parallel, again once the
    # repair window (one update interval from the kill) has passed: both passes start at the
    # same times after the kill for both overlays, whatever the first pass costs
    victims = rnd.sample(nodes[1:], int(n * KILL_FRACTION))
    for v in victims:
        await v.stop(leave=False)
    killed_at = time.perf_counter()
    alive = [x for x in nodes if x not in victims]

    async def one(src: ReloadNode, num: str) -> bool:
        try:
            r = await asyncio.wait_for(lookup(src, num), 60)
        except (TimeoutError, ReloadError) as e:
            print(f"lookup {num} failed: {e!r}", file=sys.stderr)
            return False
        return bool(r.claims)

    passes = dict(await asyncio.gather(*(
        after_kill_pass(label, wait, killed_at, [(rnd.choice(alive), x) for x in numbers], one)
        for label, wait in (("at_once", 0.0), ("after_repair", REPAIR_S)))))
    for x, s in zip(nodes, services, strict=True):
        if x not in victims:
            await x.stop(leave=False)
        await s.close()
    valid = hops
    return {
        "n": n, "join_s": round(join_s, 2), "join_cpu_s": round(join_cpu_s, 2),
        "join_retries": join_failures,
        "hops_mean": round(statistics.mean(valid), 2) if valid else None,
        "hops_max": max(valid) if valid else None,
        "hops_walk_same_keys": _mean(walk_same),
        "hops_walk_random_keys": _mean(walk_rand), "walk_dropped": walk_rand.count(None),
        "hops_ideal": round(ideal_hops(n), 2), "half_log2_n": round(0.5 * math.log2(n), 3),
        **state,
        "store_p50_ms": ms(pct(store_t, 50)), "store_p95_ms": ms(pct(store_t, 95)),
        "fetch_p50_ms": ms(pct(fetch_t, 50)), "fetch_p95_ms": ms(pct(fetch_t, 95)),
        "fetch_found_before_kill": round(fetched / len(numbers), 3),
        "store_failed": store_failed, "fetch_failed": fetch_failed,
        "killed": len(victims), "after_kill": passes,
    }


async def after_kill_pass(label: str, wait: float, killed_at: float, asks: list[tuple[Any, str]],
                          one: Callable[[Any, str], Awaitable[bool]]
                          ) -> tuple[str, dict[str, float]]:
    """Look every number up (`one(source, number)` says whether its claim came back),
    starting `wait` seconds after the kill."""
    await asyncio.sleep(max(0.0, wait - (time.perf_counter() - killed_at)))
    since = time.perf_counter() - killed_at
    took, ok = [], 0
    for src, num in asks:
        t = time.perf_counter()
        ok += await one(src, num)
        took.append(time.perf_counter() - t)
    return label, {"since_kill_s": round(since, 2), "found": round(ok / len(asks), 3),
                   "p50_ms": ms(pct(took, 50)), "p95_ms": ms(pct(took, 95))}


def _mean(xs: list[int | None]) -> float | None:
    ok = [x for x in xs if x is not None]
    return round(statistics.mean(ok), 3) if ok else None


def _claim(pub: ViprPublisher) -> Any:
    from vipr.reload.wire.vipr_kind import claim_entry

    return claim_entry(pub.node.node_id, pub.vservice, pub.peer_id)


# ----------------------------------------------------------------------------- kademlia


async def kademlia_run(n: int, k: int, base_port: int) -> dict[str, Any]:
    from kademlia.network import Server

    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)
    servers = []
    for i in range(n):
        s = Server()
        await s.listen(base_port + i, interface="127.0.0.1")
        if i:
            await s.bootstrap([("127.0.0.1", base_port)])
        servers.append(s)
    rnd = random.Random(n)
    numbers = [f"+1408{rnd.randrange(10**7):07d}" for _ in range(k)]
    set_t, get_t = [], []
    for i, num in enumerate(numbers):
        t = time.perf_counter()
        await servers[i % n].set(num, "claim")
        set_t.append(time.perf_counter() - t)
    found_before = 0
    for num in numbers:
        t = time.perf_counter()
        found_before += await rnd.choice(servers).get(num) == "claim"
        get_t.append(time.perf_counter() - t)
    victims = rnd.sample(servers[1:], int(n * KILL_FRACTION))
    for v in victims:
        v.stop()
    killed_at = time.perf_counter()
    alive = [s for s in servers if s not in victims]

    async def one(src: Any, num: str) -> bool:
        return bool(await src.get(num) == "claim")

    passes = dict(await asyncio.gather(*(
        after_kill_pass(label, wait, killed_at, [(rnd.choice(alive), x) for x in numbers], one)
        for label, wait in (("at_once", 0.0), ("after_repair", REPAIR_S)))))
    for s in alive:
        s.stop()
    return {"n": n, "set_p50_ms": ms(pct(set_t, 50)), "set_p95_ms": ms(pct(set_t, 95)),
            "get_p50_ms": ms(pct(get_t, 50)), "get_p95_ms": ms(pct(get_t, 95)),
            "get_found_before_kill": round(found_before / len(numbers), 3),
            "after_kill": passes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer numbers (CI)")
    ap.add_argument("--sizes", default="16,64")
    args = ap.parse_args()
    k = 30 if args.quick else 200
    sizes = [int(x) for x in args.sizes.split(",")]
    timers = TIMERS
    out: dict[str, Any] = {"bench": "overlay", "numbers": k, "reload": [], "kademlia": []}
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            r = asyncio.run(reload_run(n, k, Path(d), timers))
            print(f"RELOAD   N={n}: {r}", file=sys.stderr)
            out["reload"].append(r)
            kd = asyncio.run(kademlia_run(n, k, 40000 + n * 2))
            print(f"kademlia N={n}: {kd}", file=sys.stderr)
            out["kademlia"].append(kd)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
