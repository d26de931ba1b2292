"""20 real RELOAD nodes (TLS, one process): numbers published from several nodes are found from
every node; after 30 % are killed at once (no Leave), within 2 update intervals 100 % of the
numbers are still found (COPY fallback allowed)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

from reload_pki import OVERLAY, Pki

from vipr.reload import ca
from vipr.reload.api import ReloadContext
from vipr.reload.node import ChordTimers, ReloadNode
from vipr.reload.overlay_config import vipr_kind
from vipr.reload.storage import DataStore
from vipr.reload.storage_service import StorageService
from vipr.reload.usage import ViprPublisher, lookup

N = 20
UPDATE = 2.0
TIMERS = ChordTimers(update_interval=UPDATE, ping_interval=20.0, reliability_timer=0.5,
                     max_transmissions=4, attach_timeout=10.0, join_timeout=60.0,
                     link_dead_after=2.0, tombstone=10.0)


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
        await asyncio.sleep(2 * UPDATE)  # periodic updates fill the tables
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
        await asyncio.sleep(2 * UPDATE)
        alive = [n for n in nodes if n not in dead]
        found = 0
        for i, num in enumerate(nums):
            r = await asyncio.wait_for(lookup(alive[i % len(alive)], num), 60)
            found += bool(r.claims)
        print(f"after the kill: {found}/{len(nums)} found, "
              f"{time.monotonic() - t_kill:.1f} s after it")
        assert found == len(nums)
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.stop(leave=False), 10)
        for svc in services:
            await svc.close()
