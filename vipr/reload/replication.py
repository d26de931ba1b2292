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


@dataclass
class ReplicationPlanner:
    hold_down: float = DEFAULT_HOLD_DOWN
    _sent: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    _owned: set[bytes] = field(default_factory=set)
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
        """An original Store was just replicated to `targets` by the storing path."""
        self._owned.add(resource)
        self._sent[resource] = tuple(targets)

    def owns(self, resource: bytes) -> bool:
        return resource in self._owned

    def forget(self, resource: bytes) -> None:
        self._sent.pop(resource, None)
        self._owned.discard(resource)

    def plan(self, resources: Iterable[bytes], is_responsible: Callable[[bytes], bool],
             successors: list[bytes], self_id: bytes) -> list[ReplicaAction]:
        """The Stores to send now; also records them as sent (clears the pending change)."""
        self._changed_at = None
        targets = tuple(s for s in successors if s != self_id)[:REPLICAS]
        out: list[ReplicaAction] = []
        held = set(resources)
        for r in held:
            if is_responsible(r):
                done = self._sent.get(r, ())
                out.extend(ReplicaAction(r, t, i + 1) for i, t in enumerate(targets)
                           if t not in done)
                self._sent[r] = targets
                self._owned.add(r)
            elif r in self._owned:
                out.append(ReplicaAction(r, None, 1))
                self.forget(r)
        for r in set(self._sent) - held:
            self.forget(r)
        return out

    def handoffs(self, resources: Iterable[bytes], is_responsible: Callable[[bytes], bool]
                 ) -> list[ReplicaAction]:
        """Hand-offs only, without waiting for the hold-down (§10.6: the joining peer gets
        its data at once; re-replication can wait)."""
        out = []
        for r in set(resources):
            if r in self._owned and not is_responsible(r):
                out.append(ReplicaAction(r, None, 1))
                self.forget(r)
        return out

    def handoff_all(self, resources: Iterable[bytes], is_responsible: Callable[[bytes], bool],
                    successors: list[bytes], self_id: bytes) -> list[ReplicaAction]:
        """Before a Leave (§10.7.2): everything we are responsible for goes to our successor,
        which becomes responsible for it."""
        succ = [s for s in successors if s != self_id]
        if not succ:
            return []
        return [ReplicaAction(r, succ[0], 1) for r in resources if is_responsible(r)]
