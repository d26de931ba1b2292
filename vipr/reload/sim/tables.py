"""Measurements on a set of live `ChordProtocol`s, shared by the simulator and the real-process
bench (bench/overlay.py), so both report the same thing from the same code.

`walk_hops` follows the routing decisions (`ChordProtocol.route`, §6.2/§10.3) from peer to peer
without sending anything: the hops a request to `key` would take over the tables as they are
now, counted like the via list (§6.3.2.1): links crossed, 0 when the originator is
responsible. `table_stats` describes the state the hops depend on.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from vipr.reload.core.chord_protocol import ChordProtocol, Deliver, Forward
from vipr.reload.core.topology import finger_target, to_int
from vipr.reload.wire import bodies as m
from vipr.reload.wire.forwarding import ResourceDestination

MAX_WALK = 64  # more hops than this is a routing loop


def walk_hops(peers: Mapping[bytes, ChordProtocol], src: bytes, key: int,
              code: int = m.MessageCode.PING_REQ) -> int | None:
    """Links a request for Resource-ID `key` from `src` crosses; None: dropped or looping."""
    dest = ResourceDestination(key.to_bytes(16, "big"))
    here, hops = src, 0
    while hops <= MAX_WALK:
        p = peers.get(here)
        if p is None:
            return None
        d = p.route(dest, code)
        if isinstance(d, Deliver):
            return hops
        if not isinstance(d, Forward) or d.peer not in peers:
            return None
        here, hops = d.peer, hops + 1
    return None


def table_stats(peers: Mapping[bytes, ChordProtocol]) -> dict[str, float]:
    """Per live peer, means: links, ready peers (the next-hop candidates) and the share of the
    16 finger entries and of the first successor that are the true ones for the current ring."""
    ring = sorted(to_int(x) for x in peers)
    n = len(ring)
    if not n:
        return {}
    links = ready = fingers_ok = succ_ok = 0
    for nid, p in peers.items():
        me = to_int(nid)
        links += len(p.links)
        ready += len(p.topo.ready)
        table = p.topo.finger_table()
        for i, f in enumerate(table, start=1):
            j = bisect.bisect_left(ring, finger_target(me, i))
            true = ring[j % n]
            fingers_ok += f == true or (true == me and f == ring[(j + 1) % n])
        s = p.topo.successors()
        j = bisect.bisect_right(ring, me)
        succ_ok += bool(s) and s[0] == ring[j % n]
    nf = max(1, sum(len(p.topo.finger_table()) for p in peers.values()))
    return {"links_mean": round(links / n, 1), "ready_mean": round(ready / n, 1),
            "fingers_true": round(fingers_ok / nf, 3), "successor_true": round(succ_ok / n, 3)}
