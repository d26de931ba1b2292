"""20 real RELOAD nodes (TLS, one process): numbers published from several nodes are found from
every node; after 30 % are killed at once (no Leave) and the ring has repaired itself, 100 % of
the numbers are still found (COPY fallback allowed). Each phase awaits its event (ring
converged, hand-offs stored) with a generous bound; how fast repair is belongs to
bench/overlay.py."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import pytest
from reload_pki import OVERLAY, Pki

from tests.conftest import stop_all, until
from vipr.reload import ca
from vipr.reload.aio.node import ChordTimers, ReloadNode
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher, lookup
from vipr.reload.core.storage import DataStore
from vipr.reload.overlay_config import vipr_kind
from vipr.reload.wire.context import ReloadContext

# 20 real TLS nodes: the simulator covers mass failure deterministically (test_sim.py).
pytestmark = pytest.mark.slow

N = 20
UPDATE = 2.0
BOUND = 60.0  # generous bound on each awaited event
TIMERS = ChordTimers(update_interval=UPDATE, ping_interval=20.0, reliability_timer=0.5,
                     max_transmissions=4, attach_timeout=10.0, join_timeout=60.0,
                     link_dead_after=2.0, tombstone=10.0)


async def converge(nodes: list[ReloadNode], timeout: float = 30.0) -> float:
    """Wait (event-driven, bounded) until every node has its true successor/predecessor."""
    changed = asyncio.Event()
    for n in nodes:
        n.add_topology_listener(changed.set)

    def wrong() -> list[ReloadNode]:
        ids = sorted(n.node_id for n in nodes)
        out = []
        for n in nodes:
            k = ids.index(n.node_id)
            s, p = n.successors(), n.predecessors()
            if not s or s[0] != ids[(k + 1) % len(ids)] or not p or p[0] != ids[k - 1]:
                out.append(n)
        return out

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while wrong():
        left = timeout - (loop.time() - t0)
        assert left > 0, f"ring not converged after {timeout}s"
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, 0.5))
    return loop.time() - t0


async def test_publish_everywhere_then_kill_30_percent(pki: Pki, tmp_path: Path) -> None:
    # one certificate per node (same key, to keep RSA key generation out of the test)
    certs = [ca.issue_node_cert(pki.ca_cert, pki.ca_key, OVERLAY, f"n{i}@provider.example",
                                key=pki.node_a.key) for i in range(N)]
    nodes: list[ReloadNode] = []
    services: list[StorageService] = []
    try:
        t0 = time.monotonic()
        for i, cr in enumerate(certs):
            files = cr.write(tmp_path, f"n{i}")
            ctx = ReloadContext(OVERLAY, cr, pki.trust(), configuration_sequence=1)
            svc = StorageService(DataStore([vipr_kind()], pki.trust()), hold_down=UPDATE / 2)
            node = ReloadNode(context=ctx, creds_files=files, listen=("127.0.0.1", 0),
                              bootstrap=[nodes[0].address] if nodes else [], create=i == 0,
                              timers=TIMERS, storage=svc)
            await node.start()
            svc.attach(node)
            nodes.append(node)
            services.append(svc)
        print(f"{N} nodes joined in {time.monotonic() - t0:.1f} s")
        await converge(nodes, BOUND)  # every node has its true neighbours
        nums = [f"+1408555{i:04d}" for i in range(30)]
        for i, num in enumerate(nums):
            vs = f"{i % 4 + 1:016x}"
            assert await ViprPublisher(nodes[(i * 7) % N], vs).publish(num) == 3, num
        for k, node in enumerate(nodes):  # every number found from every node
            for num in nums[k % 3::3]:
                assert (await lookup(node, num)).claims, (k, num)
        dead = random.Random(5).sample(nodes[1:], 6)
        for d in dead:
            await d.stop(leave=False)
        t_kill = time.monotonic()
        alive = [n for n in nodes if n not in dead]
        await converge(alive, BOUND)  # the event: the ring has repaired itself
        found = 0
        for i, num in enumerate(nums):
            r = await asyncio.wait_for(lookup(alive[i % len(alive)], num), 60)
            found += bool(r.claims)
        print(f"after the kill: {found}/{len(nums)} found, "
              f"{time.monotonic() - t_kill:.1f} s after it")
        assert found == len(nums)
    finally:
        await stop_all((n.stop(leave=False) for n in nodes), timeout=10, what="nodes")
        await stop_all((svc.close() for svc in services), timeout=10, what="storage services")


async def test_handoff_on_join_and_leave_real_nodes(pki: Pki, tmp_path: Path) -> None:
    """Numbers stored on 4 nodes; 4 more join: each newcomer holds what it is responsible
    for; then two nodes Leave (after handing off): every number is still found under `N`."""
    certs = [ca.issue_node_cert(pki.ca_cert, pki.ca_key, OVERLAY, f"j{i}@provider.example",
                                key=pki.node_a.key) for i in range(8)]
    nodes: list[ReloadNode] = []
    services: list[StorageService] = []

    async def add(i: int) -> None:
        cr = certs[i]
        ctx = ReloadContext(OVERLAY, cr, pki.trust(), configuration_sequence=1)
        svc = StorageService(DataStore([vipr_kind()], pki.trust()), hold_down=UPDATE / 2)
        node = ReloadNode(context=ctx, creds_files=cr.write(tmp_path, f"j{i}"),
                          listen=("127.0.0.1", 0),
                          bootstrap=[nodes[0].address] if nodes else [], create=i == 0,
                          timers=TIMERS, storage=svc)
        await node.start()
        svc.attach(node)
        nodes.append(node)
        services.append(svc)

    try:
        for i in range(4):
            await add(i)
        await converge(nodes)
        nums = [f"+1650555{i:04d}" for i in range(24)]
        for i, num in enumerate(nums):
            assert await ViprPublisher(nodes[i % 4], "00000000000000c1").publish(num) == 3
        for i in range(4, 8):
            await add(i)
        await converge(nodes)
        from vipr.reload.wire.vipr_kind import KIND_VIPR, resource_ids

        def missing() -> list[tuple[str, str, str]]:
            """(number, newcomer, Resource-ID) for each record a newcomer is responsible for
            but does not hold yet."""
            return [(num, node.node_id.hex()[:6], rid.hex()[:6])
                    for node, svc in zip(nodes[4:], services[4:], strict=True)
                    for num in nums for rid in resource_ids(num)
                    if node.is_responsible(rid) and svc.store.record(rid, KIND_VIPR) is None]

        # the hand-offs (after the hold-down, UPDATE / 2) reach every newcomer
        await until("hand-offs stored", lambda: not missing(), timeout=BOUND,
                    detail=lambda: (missing(), sorted(n.node_id.hex()[:6] for n in nodes)))
        for k in (1, 2):
            await services[k].handoff()
            await nodes[k].stop(leave=True)
        alive = [n for k, n in enumerate(nodes) if k not in (1, 2)]
        await converge(alive, BOUND)  # both Leaves processed: the ring closed over them
        for i, num in enumerate(nums):
            r = await lookup(alive[i % len(alive)], num)
            assert r.claims and r.resource == "N", num
    finally:
        await stop_all((n.stop(leave=False) for n in nodes), timeout=10, what="nodes")
        await stop_all((svc.close() for svc in services), timeout=10, what="storage services")
