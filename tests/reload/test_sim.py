"""The real CHORD-RELOAD core (`ChordProtocol`) run by the simulator: deterministic protocol
tests in simulated time (join, lookups, failures, Leave, loss). The same core runs in the
daemons (tests/reload/test_node*.py keep the real-TLS end-to-end checks)."""

from __future__ import annotations

import math

from vipr.reload.core.chord_protocol import JoinPhase
from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.topology import to_int
from vipr.reload.sim.network import NetConfig, Simulation, load_skew

TIMERS = ChordTimers(update_interval=30.0, ping_interval=120.0)


def ring_of(n: int, seed: int = 7, net: NetConfig | None = None) -> Simulation:
    sim = Simulation(timers=TIMERS, seed=seed, net=net or NetConfig())
    for _ in range(n):
        sim.add_node()
        sim.run(sim.now + 0.3)
    sim.run(sim.now + 10.0)
    return sim


def land_on_owner(sim: Simulation, count: int = 200) -> tuple[float, float]:
    ring = sorted(to_int(x) for x in sim.alive_ids())
    alive = sim.alive_ids()
    probes = [sim.lookup(sim.rng.choice(alive), sim.rng.getrandbits(128)) for _ in range(count)]
    sim.run(sim.now + 10.0)
    ok = [p for p in probes if p.node is not None and to_int(p.node) == sim.owner(p.key, ring)]
    return len(ok) / count, sum(p.hops for p in ok) / max(1, len(ok))


def test_every_node_joins_and_the_ring_is_correct() -> None:
    sim = ring_of(64)
    assert all(n.join_done is not None for n in sim.nodes.values())
    assert all(n.protocol.phase is JoinPhase.JOINED for n in sim.nodes.values())
    assert sim.ring_correct() == 1.0
    ok, hops = land_on_owner(sim)
    assert ok == 1.0
    assert hops <= 0.5 * math.log2(64) + 0.2  # Chord's ½·log2 N (issue 17 target)


def test_same_seed_same_run() -> None:
    a, b = ring_of(24, seed=3), ring_of(24, seed=3)
    assert (a.messages, a.events, a.now) == (b.messages, b.events, b.now)


def test_ring_repairs_after_30_percent_fail_at_once() -> None:
    sim = ring_of(64)
    for v in sim.rng.sample(sim.alive_ids(), 19):
        sim.kill(v)
    sim.run(sim.now + 60.0)
    assert sim.ring_correct() == 1.0
    assert land_on_owner(sim)[0] == 1.0


def test_leave_hands_the_neighbors_over() -> None:
    sim = ring_of(32)
    leaver = sim.nodes[sim.alive_ids()[5]]
    leaves = leaver.protocol.leave()
    assert leaves  # §10.9: to its predecessors and successors
    sim._exec(leaver, list(leaves))
    sim.run(sim.now + 2.0)  # the Leaves are answered, the links still up
    me = to_int(leaver.node_id)
    told = [sim.nodes[d.node_id] for a in leaves for d in a.dests]  # type: ignore[attr-defined]
    assert all(me not in n.protocol.topo.neighbors() for n in told)
    sim.kill(leaver.node_id)
    sim.run(sim.now + 30.0)
    assert sim.ring_correct() == 1.0


def test_lossy_network_still_joins_and_routes() -> None:
    sim = ring_of(32, net=NetConfig(loss=0.05))
    sim.run(sim.now + 2 * TIMERS.update_interval)
    assert all(n.join_done is not None for n in sim.nodes.values())
    assert sim.ring_correct() == 1.0
    assert land_on_owner(sim)[0] >= 0.8  # a lookup probe is not retransmitted


def test_partition_cuts_lookups_across() -> None:
    sim = ring_of(32)
    ids = sim.alive_ids()
    for x in ids[:16]:
        sim.group[x] = 1
    src = ids[20]
    probes = [sim.lookup(src, sim.rng.getrandbits(128)) for _ in range(50)]
    sim.run(sim.now + 5.0)
    assert all(p.node is None or p.node not in ids[:16] for p in probes)
    assert any(p.node is None for p in probes)


def test_load_skew_from_the_ring() -> None:
    ids = [i * (1 << 128) // 4 for i in range(4)]
    s = load_skew(ids, 1000)
    assert s["records_per_node_mean"] == 1000 * 3 * 3 // 4
    assert s["skew_max_over_mean"] == 1.0
