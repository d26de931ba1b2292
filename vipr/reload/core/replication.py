"""Replication planner (RFC 6940 §10.4, §10.6, §10.7.3), sans-I/O.

CHORD-RELOAD keeps every resource on its responsible peer and the next two successors
(replica_number 1 and 2). The planner decides, from what this peer holds and the current
neighbor table, which Store requests to send:

- a resource we are responsible for goes to each of the first two successors it was not yet
  sent to (a new successor after a join or a failure gets a copy);
- a resource we were responsible for and no longer are (a peer joined between our predecessor
  and us) is handed off to its new responsible peer (routed to the Resource-ID).

Topology changes are damped by a hold-down (default 30 s): the plan is due only once the
neighbor table has been quiet that long, so a burst of Updates produces one round of Stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_HOLD_DOWN = 30.0
REPLICAS = 2  # §10.4: the two successors


@dataclass(frozen=True, slots=True)
class ReplicaAction:
    """Send everything held at `resource` to `target` (None: route to the Resource-ID)."""

    resource: bytes
    target: bytes | None
    replica_number: int


_ROUTED = b""  # marker: handed off by routing to the Resource-ID


def _between(x: bytes, lo: bytes, hi: bytes) -> bool:
    """x in the ring interval (lo, hi] (mod 2^128)."""
    a, b, c = (int.from_bytes(v, "big") for v in (x, lo, hi))
    m = 1 << 128
    return 0 < (a - b) % m <= (c - b) % m


@dataclass
class ReplicationPlanner:
    """Decides replica Stores from what is held and the current neighbor table only, so a
    wrong transient view is corrected by the next plan (nothing is "owned" for good):

    - responsible for r: r goes to each of the first two successors not yet sent to;
    - r in our predecessor's range (p1, p0]: p0 is responsible (it may have just joined):
      r goes to p0 once (for a replica p0 sent us this is skipped);
    - r neither ours nor in (p2, p1] (a second replica): misplaced, routed to its owner once.
    """

    hold_down: float = DEFAULT_HOLD_DOWN
    _sent: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    _changed_at: float | None = None

    def topology_changed(self, now: float) -> None:
        self._changed_at = now

    def due_at(self) -> float | None:
        """When the pending plan may run (None: nothing pending)."""
        return None if self._changed_at is None else self._changed_at + self.hold_down

    def due(self, now: float) -> bool:
        t = self.due_at()
        return t is not None and now >= t

    def stored(self, resource: bytes, targets: Iterable[bytes]) -> None:
        """`resource` was just sent to `targets` (original Store replicated at once)."""
        self._sent[resource] = tuple(targets)

    def received_from(self, resource: bytes, sender: bytes) -> None:
        """A replica came from `sender` (it holds it: never push it back there)."""
        self._sent[resource] = (sender,)

    def retry(self, resource: bytes, now: float) -> None:
        """A Store failed: send again on the next plan."""
        self._sent.pop(resource, None)
        self._changed_at = now if self._changed_at is None else min(self._changed_at, now)

    def plan(self, resources: Iterable[bytes], is_responsible: Callable[[bytes], bool],
             successors: list[bytes], predecessors: list[bytes], self_id: bytes, *,
             replicate: bool = True) -> list[ReplicaAction]:
        """The Stores to send now, recorded as sent. `replicate=False`: only the hand-offs
        (sent at once on a topology change; re-replication waits for the hold-down)."""
        if replicate:
            self._changed_at = None
        targets = tuple(s for s in successors if s != self_id)[:REPLICAS]
        preds = [p for p in predecessors if p != self_id]
        out: list[ReplicaAction] = []
        held = set(resources)
        for r in held:
            done = self._sent.get(r, ())
            if is_responsible(r):
                if replicate:
                    out.extend(ReplicaAction(r, t, i + 1) for i, t in enumerate(targets)
                               if t not in done)
                    self._sent[r] = targets
            elif len(preds) >= 2 and _between(r, preds[1], preds[0]):
                if done != (preds[0],):
                    out.append(ReplicaAction(r, preds[0], 1))
                    self._sent[r] = (preds[0],)
            elif len(preds) >= 3 and _between(r, preds[2], preds[1]):
                continue  # our second-replica range
            elif len(preds) >= 2 and done != (_ROUTED,):
                out.append(ReplicaAction(r, None, 1))
                self._sent[r] = (_ROUTED,)
        for r in set(self._sent) - held:
            del self._sent[r]
        return out

    def handoff_all(self, resources: Iterable[bytes], is_responsible: Callable[[bytes], bool],
                    successors: list[bytes], self_id: bytes) -> list[ReplicaAction]:
        """Before a Leave (§10.7.2): everything we are responsible for goes to our successor,
        which becomes responsible for it."""
        succ = [s for s in successors if s != self_id]
        if not succ:
            return []
        return [ReplicaAction(r, succ[0], 1) for r in resources if is_responsible(r)]
