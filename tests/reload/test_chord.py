"""Sans-I/O CHORD-RELOAD topology: tables, responsibility, next hop (RFC 6940 §10)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from vipr.reload.core.topology import (
    MASK,
    RING,
    ChordTopology,
    dist,
    finger_target,
    in_interval,
    to_id,
    to_int,
)
from vipr.reload.wire.bodies import CHORD_FULL, ChordUpdate

ids_st = st.integers(min_value=0, max_value=MASK)


def full_ring(ids: list[int]) -> dict[int, ChordTopology]:
    """Every node with ideal tables: it knows every other node (like a converged small ring)."""
    ring = {}
    for n in ids:
        t = ChordTopology(to_id(n))
        for p in ids:
            t.add_ready(p)
        ring[n] = t
    return ring


def ideal_ring(ids: list[int]) -> dict[int, ChordTopology]:
    """Each node knows only its true neighbors and true fingers (what the protocol builds)."""
    s = sorted(ids)
    ring = {}
    for n in ids:
        t = ChordTopology(to_id(n))
        k = s.index(n)
        want = {s[(k + j) % len(s)] for j in range(1, 4)} | {s[(k - j) % len(s)]
                                                             for j in range(1, 4)}
        for i in range(1, 17):
            tgt = finger_target(n, i)
            want.add(min(s, key=lambda p, tgt=tgt: dist(tgt, p)))
        for p in want:
            t.add_ready(p)
        ring[n] = t
    return ring


def true_owner(ids: list[int], key: int) -> int:
    return min(ids, key=lambda p: dist(key, p))


def test_ring_arithmetic() -> None:
    assert dist(5, 7) == 2 and dist(7, 5) == RING - 2
    assert in_interval(6, 5, 7) and in_interval(7, 5, 7) and not in_interval(5, 5, 7)
    assert in_interval(1, MASK - 1, 2)  # wraps
    assert in_interval(123, 9, 9)  # (a, a] is the whole ring
    assert finger_target(0, 1) == 1 << 127 and finger_target(MASK, 128) == 0
    assert to_int(to_id(12345)) == 12345 and len(to_id(0)) == 16


def test_tables_three_each_side_and_fingers() -> None:
    ids = [i << 120 for i in range(1, 41)]
    t = ChordTopology(to_id(ids[0]))
    for p in ids[1:]:
        t.add_ready(p)
    assert t.successors() == ids[1:4]
    assert t.predecessors() == [ids[-1], ids[-2], ids[-3]]
    assert len(t.finger_table()) == 16
    # finger 1 targets half-way round: 1<<120 + 1<<127 = 129 << 120 → first id at/after: none
    # in range (ids go to 40<<120), so it wraps to the first successor.
    assert t.finger_table()[0] == ids[1]
    assert t.finger_table()[3] == (17 << 120)  # n + 2^124 = 17<<120
    assert t.responsible(ids[0]) and not t.responsible(ids[1])
    assert t.responsible(ids[-1] + 1)


def test_alone_owns_everything_and_add_remove() -> None:
    t = ChordTopology(to_id(100))
    assert t.responsible(5) and t.next_hop(5) is None and t.responsible_ppb() == 10**9
    ch = t.add_ready(200)
    assert ch.neighbors_changed and t.successors() == [200] and t.predecessors() == [200]
    assert t.responsible(150) is False and t.responsible(100) and t.responsible(250)
    assert t.next_hop(150) == 200
    assert not t.add_ready(200).neighbors_changed  # idempotent
    ch = t.remove(200, now=0.0)
    assert ch.neighbors_changed and t.successors() == []
    assert t.recently_failed(200, 1.0) and not t.recently_failed(200, 1000.0)


def test_update_candidates_and_tombstones() -> None:
    ids = [i << 120 for i in range(1, 11)]
    t = ChordTopology(to_id(ids[0]), tombstone=10.0)
    for p in ids[4:]:
        t.add_ready(p)
    upd = ChordUpdate(1, CHORD_FULL, (), tuple(to_id(p) for p in ids[1:4]), ())
    assert t.candidates_from_update(upd, 0.0) == ids[1:4]  # closer successors wanted
    t.remove(ids[1], now=0.0)
    assert t.candidates_from_update(upd, 1.0) == ids[2:4]  # failed peer ignored for a while
    assert t.candidates_from_update(upd, 11.0) == ids[1:4]
    assert t.candidates([ids[0]], 0.0) == []  # never ourselves
    mk = t.make_update(7)
    assert mk.type == CHORD_FULL and mk.successors[0] == to_id(ids[4])


def test_invalid_fingers_listed() -> None:
    t = ChordTopology(to_id(0))
    t.add_ready(1 << 127)
    bad = t.invalid_fingers()
    assert 1 not in bad and 2 in bad


@settings(max_examples=60, deadline=None)
@given(st.lists(ids_st, min_size=2, max_size=60, unique=True), ids_st)
def test_responsible_node_unique_on_full_ring(ids: list[int], key: int) -> None:
    ring = full_ring(ids)
    owners = [n for n, t in ring.items() if t.responsible(key)]
    assert owners == [true_owner(ids, key)]


@settings(max_examples=60, deadline=None)
@given(st.lists(ids_st, min_size=2, max_size=80, unique=True), ids_st, st.data())
def test_next_hop_strictly_closer_and_reaches_owner(ids: list[int], key: int,
                                                    data: st.DataObject) -> None:
    ring = ideal_ring(ids)
    owner = true_owner(ids, key)
    cur = data.draw(st.sampled_from(ids))
    hops = 0
    while True:
        nh = ring[cur].next_hop(key)
        if nh is None:
            break
        # every hop either lands on the owner or gets strictly closer (clockwise) to the key
        assert nh == owner or dist(nh, key) < dist(cur, key)
        cur = nh
        hops += 1
        assert hops <= len(ids)
    assert cur == owner


def test_mean_hops_near_ideal() -> None:
    """Ideal tables give ≈ ½·log2 N − 0.6 hops (an idealised Chord simulation)."""
    rnd = random.Random(7)
    ids = [rnd.getrandbits(128) for _ in range(64)]
    ring = ideal_ring(ids)
    total = 0
    for _ in range(500):
        key = rnd.getrandbits(128)
        cur = rnd.choice(ids)
        while (nh := ring[cur].next_hop(key)) is not None:
            cur = nh
            total += 1
    assert total / 500 < 3.0  # ½·log2 64 = 3, simulated 2.28


def test_timers_from_overlay_configuration() -> None:
    from vipr.reload.aio.node import ChordTimers
    from vipr.reload.overlay_config import vipr_overlay_configuration

    conf = vipr_overlay_configuration("o.example", [])
    t = ChordTimers.from_config(conf, attach_timeout=2.0)
    assert t.update_interval == 400 and t.ping_interval == conf.chord_ping_interval
    assert t.reliability_timer == 3.0 and t.attach_timeout == 2.0
