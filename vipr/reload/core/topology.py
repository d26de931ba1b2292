"""CHORD-RELOAD topology (RFC 6940 §10), sans-I/O: ids and `now` in, decisions out.

The table is derived from the set of *ready* peers (peers with a live link that sent us an Update,
or that we admitted with Join): the Neighbor Table is the `n_succ` closest of them clockwise and the
`n_pred` closest counter-clockwise (§10.3), finger i is the first ready peer at or after
n + 2^(128-i) (§10.3, i = 1 is half-way round). The asyncio shell (node.py) feeds link events and
Updates and carries out what comes back (attach to candidates, send Updates).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from vipr.reload.wire.bodies import CHORD_FULL, CHORD_NEIGHBORS, ChordUpdate

ID_BITS = 128
RING = 1 << ID_BITS
MASK = RING - 1
N_SUCC = 3  # §10.3: at least three successors …
N_PRED = 3  # … and three predecessors
N_FINGERS = 16  # §10.3: grow to at least 16 entries


def to_int(node_id: bytes) -> int:
    return int.from_bytes(node_id, "big")


def to_id(value: int) -> bytes:
    return (value & MASK).to_bytes(ID_BITS // 8, "big")


def dist(a: int, b: int) -> int:
    """Clockwise distance from a to b on the ring (0 when equal)."""
    return (b - a) & MASK


def in_interval(x: int, a: int, b: int) -> bool:
    """x in the half-open ring interval (a, b]; (a, a] is the whole ring."""
    if a == b:
        return True
    return 0 < dist(a, x) <= dist(a, b)


def finger_target(n: int, i: int) -> int:
    """§10.3: finger i (1-based) targets n + 2^(128-i)."""
    return (n + (1 << (ID_BITS - i))) & MASK


@dataclass
class TableChange:
    """What a table mutation did; `neighbors_changed` ⇒ reactive Update (§10.7.2)."""

    neighbors_changed: bool = False
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()


@dataclass
class ChordTopology:
    """Neighbor + Finger tables of one peer over 128-bit ids (ints internally)."""

    node_id: bytes
    n_succ: int = N_SUCC
    n_pred: int = N_PRED
    n_fingers: int = N_FINGERS
    tombstone: float = 60.0
    ready: set[int] = field(default_factory=set)
    _failed: dict[int, float] = field(default_factory=dict)
    _succ: list[int] = field(default_factory=list)
    _pred: list[int] = field(default_factory=list)
    _fingers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.me = to_int(self.node_id)

    # --- tables ---------------------------------------------------------------------------

    def _recompute(self) -> None:
        by_succ = self._by_succ(self.ready)
        self._succ = by_succ[: self.n_succ]
        self._pred = by_succ[::-1][: self.n_pred]  # dist(p, me) = RING - dist(me, p)
        self._fingers = self._finger_entries(by_succ)

    def _by_succ(self, pool: Iterable[int]) -> list[int]:
        """`pool` in ascending clockwise distance from us."""
        me = self.me
        return sorted(pool, key=lambda p: (p - me) & MASK)

    def _finger_entries(self, by_succ: list[int]) -> list[int]:
        """Finger i = the first peer at or after n + 2^(128-i), wrapping round (§10.3)."""
        if not by_succ:
            return []
        me = self.me
        ds = [(p - me) & MASK for p in by_succ]
        out = []
        for i in range(1, self.n_fingers + 1):
            j = bisect_left(ds, 1 << (ID_BITS - i))
            out.append(by_succ[j] if j < len(ds) else by_succ[0])
        return out

    def successors(self) -> list[int]:
        return list(self._succ)

    def predecessors(self) -> list[int]:
        return list(self._pred)

    def fingers(self) -> list[int]:
        """Distinct finger entries in ascending distance (the `fingers` list of a full Update)."""
        return sorted(set(self._fingers), key=lambda p: dist(self.me, p))

    def finger_table(self) -> list[int]:
        """Entry per index i = 1..n (may repeat a peer)."""
        return list(self._fingers)

    def neighbors(self) -> set[int]:
        return set(self._succ) | set(self._pred)

    def routing_table(self) -> set[int]:
        return self.neighbors() | set(self._fingers)

    def _snapshot(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return tuple(self._succ), tuple(self._pred)

    # --- events ----------------------------------------------------------------------------

    def add_ready(self, peer: int) -> TableChange:
        """A peer with a live link sent an Update / was admitted: it joins the routing table."""
        if peer == self.me or peer in self.ready:
            return TableChange()
        before = self._snapshot()
        self.ready.add(peer)
        self._failed.pop(peer, None)
        self._recompute()
        return TableChange(self._snapshot() != before, added=(peer,))

    def remove(self, peer: int, now: float, *, failed: bool = True) -> TableChange:
        """The peer's last link closed, or it left (§10.7.4.1, §10.9)."""
        if failed:
            self._failed[peer] = now + self.tombstone
        if peer not in self.ready:
            return TableChange()
        before = self._snapshot()
        self.ready.discard(peer)
        self._recompute()
        return TableChange(self._snapshot() != before, removed=(peer,))

    def forget_failures(self) -> None:
        """Drop the tombstones (on re-join: our own link loss made every peer look failed)."""
        self._failed.clear()

    def recently_failed(self, peer: int, now: float) -> bool:
        until = self._failed.get(peer)
        if until is None:
            return False
        if until <= now:
            del self._failed[peer]
            return False
        return True

    def candidates(self, ids: Iterable[bytes | int], now: float) -> list[int]:
        """Peers named by an Update/Leave that we should Attach to (§10.7.3), in given order:
        those that would sit in our Neighbor or Finger Table if all of them were ready."""
        new: list[int] = []
        for x in ids:
            p = to_int(x) if isinstance(x, bytes) else x
            if p == self.me or p in self.ready or p in new or self.recently_failed(p, now):
                continue
            new.append(p)
        if not new:
            return []
        by_succ = self._by_succ(self.ready | set(new))
        keep = set(by_succ[: self.n_succ]) | set(by_succ[::-1][: self.n_pred])
        keep.update(self._finger_entries(by_succ))
        return [p for p in new if p in keep]

    def candidates_from_update(self, upd: ChordUpdate, now: float) -> list[int]:
        return self.candidates([*upd.successors, *upd.predecessors, *upd.fingers], now)

    def make_update(self, uptime: int, *, full: bool = True) -> ChordUpdate:
        """§10.7.1 Update carrying our tables."""
        preds = tuple(to_id(p) for p in self._pred)
        succs = tuple(to_id(p) for p in self._succ)
        if full:
            fingers = tuple(to_id(p) for p in self.fingers())
            return ChordUpdate(uptime, CHORD_FULL, preds, succs, fingers)
        return ChordUpdate(uptime, CHORD_NEIGHBORS, preds, succs)

    # --- routing ---------------------------------------------------------------------------

    def responsible(self, key: int) -> bool:
        """§10.3: responsible for keys in (predecessor, self]; alone ⇒ the whole ring."""
        if not self._pred:
            return True
        return in_interval(key, self._pred[0], self.me)

    def next_hop(self, key: int, connected: Iterable[int] = ()) -> int | None:
        """§10.3 next hop toward `key`; None when this node is the destination/responsible.

        A directly connected node with id = key wins; else the owner when key falls inside our
        contiguous neighbor run; else the ready peer with the largest id in (self, key]; else
        the peer with the smallest id after key.
        """
        me = self.me
        if key == me:
            return None
        if key in self.ready or key in set(connected):
            return key
        if self.responsible(key):
            return None
        # The neighbor table is a contiguous run pred[-1] … pred[0], self, succ[0] … succ[-1]:
        # for a key inside it the owner is known exactly, so go straight there (saves the
        # last hops; ideal ≈ ½·log2 N − 0.6, digest C.1).
        if self._pred:
            start = self._pred[-1]
            dk0 = dist(start, key)
            for p in [*reversed(self._pred[:-1]), me, *self._succ]:
                if dist(start, p) >= dk0:
                    return None if p == me else p
        dk = dist(me, key)
        # Candidates: every ready peer (Connection Table members that sent an Update), a superset
        # of Neighbor ∪ Finger Table. The greedy step can only get closer than with the RFC's
        # minimum table; measured +0.1 hop over ½·log2 N − 0.6 at N = 16 and 64 instead of +0.5.
        table = self.ready
        best: int | None = None
        best_d = -1
        for p in table:
            d = dist(me, p)
            if d <= dk and d > best_d:
                best, best_d = p, d
        if best is not None:
            return best
        after = min(table, key=lambda p: dist(key, p), default=None)
        return after

    def responsible_ppb(self) -> int:
        """§6.4.2.5.1 responsible_set: share of the ring owned, in parts per billion."""
        if not self._pred:
            return 1_000_000_000
        return dist(self._pred[0], self.me) * 1_000_000_000 // RING

    def invalid_fingers(self) -> list[int]:
        """Indices i whose entry is not in [target_i, target_{i-1}) (§10.7.4.3)."""
        me = self.me
        out = []
        for i in range(1, self.n_fingers + 1):
            t = finger_target(me, i)
            hi = dist(me, finger_target(me, i - 1)) if i > 1 else RING
            f = self._fingers[i - 1] if i - 1 < len(self._fingers) else None
            if f is None or not dist(me, t) <= dist(me, f) < hi:
                out.append(i)
        return out
