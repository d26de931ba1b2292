"""ReloadNode under failures: crash without Leave, graceful Leave, repair (RFC 6940 §10.7.4)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
from node_harness import FAST, Overlay, make_overlay, true_owner

from vipr.reload.wire import bodies as m

# Real TLS, many nodes: the same repair runs deterministically in test_sim.py (issue 17).
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
# Repair is awaited as an event (every live node has its true neighbours) with a generous bound;
# how fast it happens (about two update intervals) is a figure for bench/overlay.py.
REPAIR_BOUND = 60.0


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    return make_overlay(tmp_path_factory.mktemp("churn"), 20)


@pytest.fixture
def overlay(pool: Overlay, tmp_path: Path) -> Overlay:
    return Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)


async def _routes_to_owner(overlay: Overlay, live: list, n: int = 30) -> None:
    rnd = random.Random(11)
    for _ in range(n):
        key = os.urandom(16)
        ans = await rnd.choice(live).request(key, m.PingReq(), timeout=15)
        assert ans.signer is not None and ans.signer.node_id == true_owner(live, key).node_id


@pytest.mark.parametrize("seed", [1, 2])
async def test_kill_30_percent_ring_repaired(overlay: Overlay, seed: int) -> None:
    try:
        await overlay.start(20)
        await overlay.converge(REPAIR_BOUND)
        if seed == 1:  # let the overlay age: unused links get pruned, tables are sparse
            await asyncio.sleep(2.5 * FAST.update_interval)
        links = sum(len(n.status()["links"]) for n in overlay.nodes) / 20
        rnd = random.Random(seed)
        ids = sorted(overlay.nodes, key=lambda n: n.node_id)
        if seed == 2:  # worst case: six consecutive nodes, so some lose every successor
            k = rnd.randrange(20)
            victims = [ids[(k + j) % 20] for j in range(6)]
        else:
            victims = rnd.sample(overlay.nodes, 6)
        await asyncio.gather(*(v.stop(leave=False) for v in victims))  # crash: no Leave
        live = [n for n in overlay.nodes if n not in victims]
        took = await overlay.converge(REPAIR_BOUND, live)
        print(f"\nkilled 6/20 ({'consecutive' if seed == 2 else 'random'}, {links:.1f} links "
              f"per node): ring repaired in {took:.2f}s (update interval "
              f"{FAST.update_interval:.1f}s)")
        await _routes_to_owner(overlay, live)
    finally:
        await overlay.stop_all()


async def test_graceful_leave_and_rejoin(overlay: Overlay) -> None:
    try:
        await overlay.start(8)
        await overlay.converge(REPAIR_BOUND)
        leaver = overlay.nodes[5]
        await leaver.stop()  # §10.9 Leave to every neighbor
        live = [n for n in overlay.nodes if n is not leaver]
        await overlay.converge(REPAIR_BOUND, live)
        for n in live:
            assert leaver.node_id not in n.successors() + n.predecessors()
        # the same identity comes back (a fresh process would do this) and is re-admitted
        back = overlay.make_node(overlay.creds[5])
        overlay.nodes[5] = back
        await back.start()
        await overlay.converge(REPAIR_BOUND)
        await _routes_to_owner(overlay, overlay.nodes, 10)
    finally:
        await overlay.stop_all()


async def test_node_that_loses_every_link_rejoins(overlay: Overlay) -> None:
    """§10.7.4.1: a peer that has lost all its successors re-joins through a bootstrap node."""
    try:
        await overlay.start(7)
        await overlay.converge(REPAIR_BOUND)
        lonely = overlay.nodes[4]
        await overlay.nodes[0].stop(leave=False)  # its bootstrap node is gone too: it must use
        del overlay.nodes[0]                       # the peers it was attached to (§11.4)
        for links in list(lonely._links.values()):  # cut it off (as a network failure would)
            for link in list(links):
                await link.close("test: cut off")
        assert not lonely.successors()
        took = await overlay.converge(REPAIR_BOUND, overlay.nodes)
        print(f"\nre-joined and ring correct {took:.2f}s after losing every link")
        assert lonely.joined
    finally:
        await overlay.stop_all()


async def test_hung_peer_detected_by_missing_acks(overlay: Overlay) -> None:
    """§6.6.3.2: a peer whose links stay open but never ACK is declared failed and replaced."""
    timers = replace(FAST, link_dead_after=1.5, update_interval=1.0)
    try:
        await overlay.start(6, timers=timers)
        await overlay.converge(REPAIR_BOUND)
        hung = overlay.nodes[3]
        hung._stopping = True  # its maintenance stops; then it stops reading its sockets
        for links in hung._links.values():
            for link in links:
                link._writer.transport.pause_reading()  # type: ignore[attr-defined]
        live = [n for n in overlay.nodes if n is not hung]
        took = await overlay.converge(REPAIR_BOUND, live)
        print(f"\nhung peer dropped and ring repaired {took:.2f}s later "
              f"(dead-link timer {timers.link_dead_after}s)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPAIR_BOUND
        while any(hung.node_id in n.successors() + n.predecessors() for n in live):
            assert loop.time() < deadline, "hung peer still in a neighbor table"
            assert overlay.changed is not None
            overlay.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(overlay.changed.wait(), 0.5)
    finally:
        for n in overlay.nodes:
            n._stopping = False  # let stop() close the hung node too
        await overlay.stop_all()


async def test_restarted_creator_rejoins_instead_of_forking(overlay: Overlay) -> None:
    """The node allowed to create the overlay joins it when a bootstrap node answers."""
    try:
        await overlay.start(5)
        await overlay.converge(REPAIR_BOUND)
        first = overlay.nodes[0]
        await first.stop()
        again = overlay.make_node(overlay.creds[0], create=True)
        again.bootstrap = (overlay.nodes[2].address,)
        overlay.nodes[0] = again
        await again.start()
        await overlay.converge(REPAIR_BOUND)  # one ring of 5, not a ring of 1 plus a ring of 4
        assert len(again.successors()) == 3
    finally:
        await overlay.stop_all()
