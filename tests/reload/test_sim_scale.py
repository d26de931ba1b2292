"""The simulator's scale aids: a warm-started ring (Simulation.warm_start) and the table walk
shared with bench/overlay.py (sim/tables.py). The warm ring must be a ring the real core runs
correctly, and the walk must count hops as the messages do."""

from __future__ import annotations

from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.topology import to_int
from vipr.reload.sim.network import Simulation
from vipr.reload.sim.tables import table_stats, walk_hops

TIMERS = ChordTimers(update_interval=30.0, ping_interval=120.0)


def warm(n: int, seed: int = 5) -> Simulation:
    sim = Simulation(timers=TIMERS, seed=seed)
    sim.warm_start(n)
    return sim


def test_warm_ring_is_correct_and_routes_to_the_owner() -> None:
    sim = warm(200)
    assert sim.ring_correct() == 1.0
    peers = {x: sim.nodes[x].protocol for x in sim.alive_ids()}
    stats = table_stats(peers)
    assert stats["fingers_true"] == 1.0 and stats["successor_true"] == 1.0
    ring = sorted(to_int(x) for x in peers)
    alive = list(peers)
    probes = [sim.lookup(sim.rng.choice(alive), sim.rng.getrandbits(128)) for _ in range(100)]
    sim.run(sim.now + 5.0)
    assert all(p.node is not None and to_int(p.node) == sim.owner(p.key, ring) for p in probes)


def test_warm_ring_keeps_running_joins_and_repairs() -> None:
    sim = warm(100)
    sim.run(sim.now + 2.5 * TIMERS.update_interval)  # maintenance rounds: nothing breaks
    assert sim.ring_correct() == 1.0
    for _ in range(5):
        sim.add_node()
        sim.run(sim.now + 0.5)
    for v in sim.rng.sample(sim.alive_ids(), 20):
        sim.kill(v)
    sim.run(sim.now + 60.0)
    assert all(n.join_done is not None for n in sim.nodes.values())
    assert sim.ring_correct() == 1.0


def test_walk_counts_hops_as_the_messages_do() -> None:
    sim = warm(300)
    peers = {x: sim.nodes[x].protocol for x in sim.alive_ids()}
    alive = list(peers)
    asks = [(sim.rng.choice(alive), sim.rng.getrandbits(128)) for _ in range(100)]
    walks = [walk_hops(peers, src, key) for src, key in asks]  # before anything moves
    probes = [sim.lookup(src, key) for src, key in asks]
    sim.run(sim.now + 5.0)
    assert walks == [p.hops for p in probes]
    assert max(walks) >= 3  # real multi-hop routes, not only the 0/1-hop cases
