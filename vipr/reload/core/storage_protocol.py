"""RELOAD storage and replication of one peer (RFC 6940 §7, §10.4, §10.7.3), sans-I/O.

`StorageProtocol` answers the Store/Fetch/Stat/Find requests delivered to this peer from its
`DataStore` and decides the replica Stores: after an original Store, copies to the next two
successors (replica_number 1 and 2, §10.4); after a topology change, the hand-offs at once and,
once the neighbor table has been quiet for the hold-down, re-replication (`ReplicationPlanner`);
before a Leave, everything it is responsible for to its successor.

Inputs: `on_request`, `topology_changed`, `on_timer`, `on_answer`, `on_request_failed`,
`handoff`, each with `now` (monotonic seconds, for the hold-down timer) and `wall` (UNIX
seconds, for lifetimes and certificate validity). Outputs: the answer body and `Action`s of
core/chord_protocol.py: `SendRequest` (purpose REPLICA; report the outcome with its token) and
`SetTimer` (kind REPLICATION). The ring is read through a `RingView` (a `ChordProtocol`, or
the asyncio node). No clock, socket, task or store database here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from vipr.reload.core.chord_protocol import Action, Purpose, SendRequest, SetTimer, TimerKind
from vipr.reload.core.replication import DEFAULT_HOLD_DOWN, ReplicaAction, ReplicationPlanner
from vipr.reload.core.storage import DataStore, StorageError
from vipr.reload.wire import bodies as m
from vipr.reload.wire.forwarding import Destination, NodeDestination, ResourceDestination
from vipr.reload.wire.security import VerifiedSigner
from vipr.reload.wire.storage_bodies import FetchReq, FindReq, StatReq, StoreReq

__all__ = ["ReplicaOutcome", "RingView", "StorageProtocol"]

DEFAULT_REQUEST_TIMEOUT = 15.0  # s for one replica Store


class RingView(Protocol):
    """What the storage reads of the ring (`ChordProtocol` and `ReloadNode` provide it)."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def joined(self) -> bool: ...

    def is_responsible(self, resource_id: bytes) -> bool: ...

    def successors(self) -> list[bytes]: ...

    def predecessors(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class ReplicaOutcome:
    """How a replica Store ended (for the carrier's log): `error` empty when it was stored."""

    resource: bytes
    target: bytes | None
    error: str = ""


@dataclass
class StorageProtocol:
    """One peer's stored data, its answers and its replication; see the module docstring."""

    store: DataStore
    view: RingView
    hold_down: float = DEFAULT_HOLD_DOWN
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    planner: ReplicationPlanner = field(init=False)
    replicas_sent: int = 0
    replica_failures: int = 0
    fetch_hops: Counter[int] = field(default_factory=Counter)  # overlay hops of Fetches
    outcomes: list[ReplicaOutcome] = field(default_factory=list)  # drained by the carrier
    _next_token: int = 1
    _inflight: dict[int, ReplicaAction] = field(default_factory=dict)
    _timer_at: float | None = None  # when the armed REPLICATION timer fires
    _timer_key: int = 0

    def __post_init__(self) -> None:
        self.planner = ReplicationPlanner(self.hold_down)

    @property
    def resource_count(self) -> int:
        """For Probe (§6.4.2.5.1 num-resources)."""
        return len(self.store)

    # --- requests for this node (§7.4) --------------------------------------------------------

    def on_request(self, body: m.Body, *, signer: VerifiedSigner | None,
                   certs: Sequence[x509.Certificate], via: int, now: float,
                   wall: float) -> tuple[m.OutgoingBody, list[Action]]:
        """Answer a Store/Fetch/Stat/Find request. `signer`: who signed it (None: unknown,
        the simulator's stand-in); `certs`: the certificates of its security block; `via`:
        the length of its via list (§6.3.2.1)."""
        try:
            if isinstance(body, StoreReq):
                return self._store(body, signer, certs, now, wall)
            if isinstance(body, FetchReq):
                self.fetch_hops[self._hops(signer, via)] += 1
                ans, der = self.store.fetch(body, wall)
                return m.WithCertificates(ans, tuple(der)), []
            if isinstance(body, StatReq):
                return self.store.stat(body, wall), []
            if isinstance(body, FindReq):
                return self.store.find(body, wall), []
        except StorageError as e:  # the requester hears why (§6.3.3.1)
            return e.response(), []
        return m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "not a storage request"), []

    def _hops(self, signer: VerifiedSigner | None, via: int) -> int:
        """Links the request crossed: forwarders add the previous hop to the via list
        (§6.3.2.1), so a request from a direct neighbour has none; 0 = our own request."""
        if via == 0 and signer is not None and signer.node_id == self.view.node_id:
            return 0
        return via + 1

    def _plausible(self, signer: VerifiedSigner | None) -> bool:
        """§7.4.1.1: a replica (or hand-off) Store must come from a peer of our neighbor
        table (the responsible peer before us, or the old owner after us)."""
        if signer is None:
            return True
        neighbors = set(self.view.predecessors()) | set(self.view.successors())
        return not neighbors or signer.node_id in neighbors

    def _store(self, req: StoreReq, signer: VerifiedSigner | None,
               certs: Sequence[x509.Certificate], now: float,
               wall: float) -> tuple[m.OutgoingBody, list[Action]]:
        view = self.view
        responsible = view.is_responsible(req.resource)
        succ = [s for s in view.successors() if s != view.node_id][:2]
        if req.replica_number > 0 and not self._plausible(signer):
            raise StorageError(m.ErrorCode.FORBIDDEN, "replica store from a non-neighbor")
        ans = self.store.store(req, certs, wall, request_signer=signer,
                               responsible=responsible, replicas=tuple(succ))
        out: list[Action] = []
        if req.replica_number == 0:  # §10.4: the successors get a copy at once
            self.planner.stored(req.resource, succ)
            for i, t in enumerate(succ):
                out += self._send(ReplicaAction(req.resource, t, i + 1), wall)
        elif signer is not None:
            if responsible:  # a hand-off to us: replicate it onwards after the hold-down
                self.planner.retry(req.resource, now)
                out += self._arm()
            else:
                self.planner.received_from(req.resource, signer.node_id)
        return ans, out

    # --- replication (§10.7.3) ----------------------------------------------------------------

    def _send(self, a: ReplicaAction, wall: float) -> list[Action]:
        built = self.store.replica_request(a.resource, a.replica_number, wall)
        if built is None:
            return []
        req, der = built
        token = self._next_token
        self._next_token += 1
        self._inflight[token] = a
        dests: tuple[Destination, ...] = (
            (NodeDestination(a.target),) if a.target is not None
            else (ResourceDestination(a.resource),))
        return [SendRequest(token, dests, m.WithCertificates(req, tuple(der)),
                            self.request_timeout, Purpose.REPLICA)]

    def _arm(self) -> list[Action]:
        """A REPLICATION timer at the planner's due time, unless one fires by then."""
        due = self.planner.due_at()
        if due is None or (self._timer_at is not None and self._timer_at <= due):
            return []
        self._timer_at = due
        self._timer_key += 1  # an earlier, later timer is stale now
        return [SetTimer(TimerKind.REPLICATION, self._timer_key, due)]

    def _plan(self, *, replicate: bool, wall: float) -> list[Action]:
        if not self.view.joined:
            return []
        self.store.expire(wall)
        v = self.view
        plan = self.planner.plan(self.store.resources(), v.is_responsible, v.successors(),
                                 v.predecessors(), v.node_id, replicate=replicate)
        return [a for r in plan for a in self._send(r, wall)]

    def topology_changed(self, now: float, wall: float) -> list[Action]:
        """The neighbor table changed: hand-offs to a joining peer at once, re-replication
        after the hold-down (a burst of Updates gives one round of Stores)."""
        self.planner.topology_changed(now)
        return self._plan(replicate=False, wall=wall) + self._arm()

    def on_timer(self, key: int, now: float, wall: float) -> list[Action]:
        if key != self._timer_key:
            return []
        self._timer_at = None
        out: list[Action] = []
        if self.planner.due(now):
            out = self._plan(replicate=True, wall=wall)
        return out + self._arm()

    def rearm(self) -> list[Action]:
        """The REPLICATION timer again (a carrier that dropped it: just attached, restarted)."""
        self._timer_at = None
        return self._arm()

    def run_plan(self, now: float, wall: float) -> list[Action]:
        """Re-replicate now, whatever the hold-down (tools, tests)."""
        return self._plan(replicate=True, wall=wall) + self._arm()

    def on_answer(self, token: int, signer: bytes | None, body: m.OutgoingBody,
                  now: float) -> list[Action]:
        """The answer to replica Store `token`; `signer` is the answerer's Node-ID."""
        a = self._inflight.pop(token, None)
        if a is None:
            return []
        if a.target is None and (signer is None or signer == self.view.node_id):
            # routed back to us: the owner is not reachable yet; retry later
            self.planner.retry(a.resource, now)
            self.outcomes.append(ReplicaOutcome(a.resource, None, "routed back to us"))
            return self._arm()
        self.replicas_sent += 1
        self.outcomes.append(ReplicaOutcome(a.resource, a.target))
        return []

    def on_request_failed(self, token: int, error_code: int, info: str,
                          now: float) -> list[Action]:
        """Replica Store `token` got an Error or no answer: sent again on the next plan."""
        a = self._inflight.pop(token, None)
        if a is None:
            return []
        self.replica_failures += 1
        self.planner.retry(a.resource, now)
        self.outcomes.append(ReplicaOutcome(a.resource, a.target,
                                            f"RELOAD error {error_code}: {info}"))
        return self._arm()

    def handoff(self, wall: float) -> list[SendRequest]:
        """Before a Leave (§10.7.2): the Stores of everything we are responsible for to our
        successor, which becomes responsible for it."""
        v = self.view
        plan = self.planner.handoff_all(self.store.resources(), v.is_responsible,
                                        v.successors(), v.node_id)
        return [a for r in plan for a in self._send(r, wall) if isinstance(a, SendRequest)]
