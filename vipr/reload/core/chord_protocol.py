"""CHORD-RELOAD (RFC 6940 §10) as a sans-I/O state machine: events and `now` in, actions out.

`ChordProtocol` owns the `ChordTopology` of one peer and decides everything the overlay
protocol does: the join sequence (§10.5, §11.4), reactive and periodic Updates (§10.7.1-2),
Leave (§10.9), failure repair and finger refresh (§10.7.4), the Attach exchange (§6.5.1,
No-ICE), Probe/Ping/RouteQuery answers and the routing decision (§6.2, §10.3).

Inputs are method calls (`on_request`, `on_answer`, `on_request_failed`, `on_link_up`,
`on_link_down`, `on_connected`, `on_connect_failed`, `on_timer`, `start_join`, `leave`), each
taking `now` (a monotonic clock in seconds). Outputs are `Action`s: requests to send (by
token; the carrier reports the answer back with the same token), connections to open or close,
timers to arm, and notices (topology changed, join finished). Randomness comes from an
injected `Rng`; nothing here reads a clock, sleeps or touches a socket. The asyncio node
(aio/node.py) and the simulator (sim/) are two carriers of the same actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol

from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.topology import ChordTopology, TableChange, finger_target, to_id, to_int
from vipr.reload.wire import bodies as m
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.forwarding import Destination, NodeDestination, ResourceDestination

HostPort = tuple[str, int]
RING = 1 << 128
ATTACH_LINK_WAIT = 2.0  # s: after an Attach answer, wait this long for the answerer's link


class Rng(Protocol):
    """The randomness the protocol needs (a `random.Random` fits)."""

    def uniform(self, a: float, b: float) -> float: ...

    def getrandbits(self, k: int) -> int: ...

    def shuffle(self, x: list[int]) -> None: ...


class Purpose(Enum):
    """Why a request or connection was made (what its answer advances)."""

    ATTACH = auto()
    UPDATE = auto()
    JOIN = auto()
    LEAVE = auto()
    BOOTSTRAP = auto()
    ATTACH_FALLBACK = auto()
    ATTACH_BACK = auto()
    REPLICA = auto()  # a replica or hand-off Store (core/storage_protocol.py)
    CLIENT = auto()  # a request of the node's user (the VIPR usage, tools, the simulator)


class TimerKind(Enum):
    REACTIVE_UPDATE = auto()  # §10.7.2: coalesce the changes of one instant
    MAINTENANCE = auto()  # §10.7.1 periodic Update, prune, finger refresh
    ATTACH_FALLBACK = auto()  # the answerer's link did not come: connect ourselves
    JOIN_WAIT_UPDATE = auto()  # the admitting peer's Update did not come
    JOIN_DEADLINE = auto()  # the whole join
    REPLICATION = auto()  # the replication hold-down ended (core/storage_protocol.py)


class JoinPhase(Enum):
    IDLE = auto()
    BOOTSTRAP = auto()  # opening a link to a bootstrap node (§11.4)
    ADMIT = auto()  # Attach to n+1 reaches the admitting peer (§10.5)
    WAIT_UPDATE = auto()  # its Update makes it ready
    SETTLE = auto()  # Attaches to the peers it named
    FINGERS = auto()  # Attaches toward finger targets (§10.7.4.3)
    JOIN_REQ = auto()  # Join to the successor
    JOINED = auto()


# --- actions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send `body` to `dests` as a new transaction; report the outcome with `token`."""

    token: int
    dests: tuple[Destination, ...]
    body: m.OutgoingBody  # WithCertificates: extra certificates for the security block
    timeout: float | None
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a TLS link to `host`:`port` (expecting `peer` when known); report with `token`."""

    token: int
    host: str
    port: int
    peer: bytes | None
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class CloseLinks:
    peer: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `on_timer(kind, key, now)` at `at` (same clock as `now`)."""

    kind: TimerKind
    key: int
    at: float


@dataclass(frozen=True, slots=True)
class TopologyChanged:
    """The Neighbor Table (so the responsible range) changed."""


@dataclass(frozen=True, slots=True)
class JoinDone:
    ok: bool
    reason: str = ""


Action = SendRequest | Connect | CloseLinks | SetTimer | TopologyChanged | JoinDone


# --- routing decisions ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Deliver:
    """The message is for this node."""


@dataclass(frozen=True, slots=True)
class Forward:
    peer: bytes


@dataclass(frozen=True, slots=True)
class NoRoute:
    pass


RouteDecision = Deliver | Forward | NoRoute

C = m.MessageCode
# Requests that the node responsible for a Node-ID answers when that node is absent (§10.5:
# "Attach to Node-ID n+1" reaches n's future successor).
ANSWER_FOR_ABSENT = {C.ATTACH_REQ, C.PING_REQ, C.ROUTE_QUERY_REQ, C.PROBE_REQ}


def key_of(d: Destination) -> int | None:
    if isinstance(d, NodeDestination):
        return to_int(d.node_id)
    if isinstance(d, ResourceDestination):
        return int.from_bytes(d.resource_id[:16].rjust(16, b"\0"), "big")
    return None


@dataclass
class _Attach:
    """One Attach exchange in flight (§6.5.1): request, answer, then a link either way."""

    candidate_key: int | None  # the peer an Update named (dedup), None for targets
    peer: bytes | None = None
    addr: HostPort | None = None
    for_join: bool = False
    fallback: int | None = None  # token of our own Connect after the link did not come


@dataclass
class ChordProtocol:
    """The CHORD-RELOAD state of one peer; see the module docstring."""

    node_id: bytes
    timers: ChordTimers
    rng: Rng
    bootstrap: tuple[HostPort, ...] = ()
    create: bool = False
    prune: bool = True
    topo: ChordTopology = field(init=False)
    candidate: m.IceCandidate | None = None  # our host candidate, set once listening
    joined: bool = False
    stopping: bool = False
    started: float = 0.0
    links: set[bytes] = field(default_factory=set)  # peers with at least one live link
    peer_addrs: dict[bytes, HostPort] = field(default_factory=dict)  # learned from Attach
    resource_count: int = 0  # for Probe (§6.4.2.5.1 num-resources); the storage sets it
    phase: JoinPhase = JoinPhase.IDLE
    _had_peers: bool = False
    _update_pending: bool = False
    _replied: dict[bytes, float] = field(default_factory=dict)
    _wanted_by: set[bytes] = field(default_factory=set)  # peers that attached to us
    _pruned: set[bytes] = field(default_factory=set)
    _link_born: dict[bytes, float] = field(default_factory=dict)
    _next_token: int = 1
    _purpose: dict[int, Purpose] = field(default_factory=dict)
    _attaches: dict[int, _Attach] = field(default_factory=dict)
    _attaching: dict[int, int] = field(default_factory=dict)  # candidate peer → token
    _update_after_link: set[bytes] = field(default_factory=set)
    _join_boot: list[HostPort] = field(default_factory=list)
    _join_errors: list[str] = field(default_factory=list)
    _join_tries: int = 0
    _join_peer: bytes | None = None
    _join_epoch: int = 0
    _create_if_alone: bool = False  # `begin` of a restarted creator: no overlay → create it
    _next_ping: float = 0.0
    _round: set[int] = field(default_factory=set)  # requests of the maintenance round
    _round_id: int = 0

    def __post_init__(self) -> None:
        self.topo = ChordTopology(self.node_id, tombstone=self.timers.tombstone)

    # --- small helpers ----------------------------------------------------------------------

    def _token(self, purpose: Purpose) -> int:
        t = self._next_token
        self._next_token += 1
        self._purpose[t] = purpose
        return t

    def _request(self, dests: tuple[Destination, ...], body: m.Body, purpose: Purpose,
                 timeout: float | None = None) -> SendRequest:
        return SendRequest(self._token(purpose), dests, body, timeout, purpose)

    def _ice(self) -> tuple[bytes, bytes]:
        r = self.rng.getrandbits
        return f"{r(32):08x}".encode(), f"{r(64):016x}".encode()

    def uptime(self, now: float) -> int:
        return int(now - self.started) & 0xFFFFFFFF

    def owns(self, key: int) -> bool:
        return self.joined and self.topo.responsible(key)

    # the ring as the storage sees it (core/storage_protocol.py `RingView`)
    def is_responsible(self, resource_id: bytes) -> bool:
        return self.owns(to_int(resource_id[:16]))

    def successors(self) -> list[bytes]:
        return [to_id(p) for p in self.topo.successors()]

    def predecessors(self) -> list[bytes]:
        return [to_id(p) for p in self.topo.predecessors()]

    def _changed(self, ch: TableChange, now: float) -> list[Action]:
        if ch.added or ch.removed:
            self._had_peers = self._had_peers or bool(self.topo.ready)
        if not ch.neighbors_changed:
            return []
        out: list[Action] = [TopologyChanged()]
        if self.joined and not self._update_pending:  # §10.7.2 reactive recovery
            self._update_pending = True
            out.append(SetTimer(TimerKind.REACTIVE_UPDATE, 0, now))
        return out

    def update_to(self, peer: bytes, now: float) -> list[Action]:
        """§10.7.1: a full Update carrying our tables to `peer`."""
        if self.stopping:
            return []
        return [self._request((NodeDestination(peer),), self.topo.make_update(self.uptime(now)),
                              Purpose.UPDATE, self.timers.attach_timeout)]

    def _updates(self, peers: Iterable[int], now: float) -> list[Action]:
        return [a for p in peers for a in self.update_to(to_id(p), now)]

    # --- routing (§6.2 symmetric recursive, §10.3 next hop) ----------------------------------

    def route(self, first: Destination | None, code: int) -> RouteDecision:
        """Where a message whose first destination is `first` goes from here."""
        is_request = code != C.ERROR and code % 2 == 1
        key = None if first is None else key_of(first)
        if first is None:
            return Deliver() if not is_request else NoRoute()
        if key is None:
            return NoRoute()
        if isinstance(first, NodeDestination):
            if first.node_id == self.node_id or (
                    is_request and code in ANSWER_FOR_ABSENT and first.node_id not in self.links
                    and self.owns(key)):
                return Deliver()
            if first.node_id in self.links:
                return Forward(first.node_id)
        elif is_request and self.owns(key):
            return Deliver()
        hop = self.next_hop(key)
        return NoRoute() if hop is None else Forward(hop)

    def next_hop(self, key: int) -> bytes | None:
        """The linked peer toward `key` (§10.3), or None (responsible / no route)."""
        linked = {to_int(p) for p in self.links}
        hop = self.topo.next_hop(key, linked)
        if hop is None and not self.joined:
            ready = self.topo.ready
            if ready:  # not in the ring yet: hand it to the closest known peer after key
                hop = min(ready, key=lambda p: (p - key) % RING)
            else:
                return min(self.links, default=None)
        if hop is None:
            return None
        peer = to_id(hop)
        return peer if peer in self.links else None

    # --- requests for this node ---------------------------------------------------------------

    def on_request(self, body: m.Body, *, signer: bytes | None, direct_peer: bytes | None,
                   link_peer: bytes | None, now: float,
                   wall: float) -> tuple[m.Body | None, list[Action]]:
        """Answer a topology/link request (the carrier answers storage and AppAttach).

        `direct_peer`: the peer that signed a request sent straight over its link (no via
        list), else None; `wall`: the wall clock (seconds) for Ping's response_time."""
        if isinstance(body, m.PingReq):
            return m.PingAns(self.rng.getrandbits(64), int(wall * 1000)), []
        if isinstance(body, m.ProbeReq):
            vals = {m.PROBE_RESPONSIBLE_SET: self.topo.responsible_ppb(),
                    m.PROBE_NUM_RESOURCES: self.resource_count,
                    m.PROBE_UPTIME: self.uptime(now)}
            return m.ProbeAns(tuple(m.ProbeInformation(t, vals[t]) for t in body.requested_info
                                    if t in vals)), []
        if isinstance(body, m.AttachReqAns):
            return self._on_attach(signer, body, now)
        if isinstance(body, m.RouteQueryReq):
            return self._on_route_query(link_peer, body, now)
        if isinstance(body, m.ChordUpdate):
            return self._on_update(direct_peer, body, now)
        if isinstance(body, m.JoinReq):
            if direct_peer is None or direct_peer != body.joining_peer_id or not self.joined:
                return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN,
                                            "Join must come from the joiner"), []
            # §10.5: JN becomes our predecessor
            return m.JoinAns(), self._changed(self.topo.add_ready(to_int(direct_peer)), now)
        if isinstance(body, m.LeaveReq):
            return self._on_leave(direct_peer, body, now)
        if isinstance(body, m.ConfigUpdateReq):
            return m.EmptyBody(), []
        return m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "unexpected request"), []

    def _on_attach(self, signer: bytes | None, body: m.AttachReqAns,
                   now: float) -> tuple[m.Body, list[Action]]:
        cand = next((c for c in body.candidates
                     if c.overlay_link == m.LINK_TLS_TCP_FH_NO_ICE), None)
        if signer is not None:
            self._wanted_by.add(signer)  # it wants a connection to us: never prune it
        if signer is None or cand is None or self.candidate is None:
            return m.ErrorResponse.text(m.ErrorCode.INCOMPATIBLE_WITH_OVERLAY,
                                        "need a TLS-TCP-FH-NO-ICE host candidate"), []
        if signer == self.node_id:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "attach to self"), []
        # §6.5.1: we answer "active" and open the TLS connection to the offered candidate.
        addr = (cand.addr_port.host, cand.addr_port.port)
        self.peer_addrs[signer] = addr
        out: list[Action] = []
        if signer in self.links:
            if body.send_update:
                out += self.update_to(signer, now)
        elif not self.stopping:
            if body.send_update:
                self._update_after_link.add(signer)
            out.append(Connect(self._token(Purpose.ATTACH_BACK), addr[0], addr[1], signer,
                               Purpose.ATTACH_BACK))
        ufrag, pwd = self._ice()
        return m.AttachReqAns(ufrag, pwd, b"active", (self.candidate,), body.send_update), out

    def _on_route_query(self, link_peer: bytes | None, body: m.RouteQueryReq,
                        now: float) -> tuple[m.Body, list[Action]]:
        key = key_of(body.destination)
        if key is None:
            return m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "bad destination"), []
        hop = None if self.owns(key) else self.topo.next_hop(key)
        out: list[Action] = []
        if body.send_update and link_peer is not None:  # §10.8: a full Update right after
            out = self.update_to(link_peer, now)
        return m.ChordRouteQueryAns(self.node_id if hop is None else to_id(hop)), out

    def _on_update(self, peer: bytes | None, upd: m.ChordUpdate,
                   now: float) -> tuple[m.Body, list[Action]]:
        if peer is None:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN,
                                        "Update must come from the peer"), []
        out = self._changed(self.topo.add_ready(to_int(peer)), now)
        for c in self.topo.candidates_from_update(upd, now):
            out += self._start_attach(c, via=peer, now=now)
        # A peer that is not our neighbor has a view of our region that may be wrong (after
        # failures): answer with our tables so it can repair itself (§10.7.4.1 "pull").
        if (self.joined and to_int(peer) not in self.topo.neighbors()
                and now - self._replied.get(peer, -1e9) > self.timers.update_interval / 4):
            self._replied[peer] = now
            out += self.update_to(peer, now)
        out += self._advance_join(now)
        return m.EmptyBody(), out

    def _on_leave(self, peer: bytes | None, body: m.LeaveReq,
                  now: float) -> tuple[m.Body, list[Action]]:
        if peer is None or peer != body.leaving_peer_id:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN,
                                        "Leave must come from the peer"), []
        out = self._changed(self.topo.remove(to_int(peer), now), now)  # §10.9: like a failure
        try:
            named = body.leave_data().node_ids
        except ReloadDecodeError:
            named = ()
        for c in self.topo.candidates(named, now):
            out += self._start_attach(c, via=None, now=now)
        return m.EmptyBody(), out

    # --- Attach (§6.5.1, No-ICE) ----------------------------------------------------------

    def _start_attach(self, peer: int, via: bytes | None, now: float) -> list[Action]:
        if peer in self._attaching or self.stopping:
            return []
        dests: tuple[Destination, ...] = (NodeDestination(to_id(peer)),)
        if via is not None and to_id(peer) not in self.links:
            dests = (NodeDestination(via), *dests)  # §10.5: source-routed via the informant
        act = self._attach(dests, candidate_key=peer)
        self._attaching[peer] = act.token
        return [act]

    def _attach(self, dests: tuple[Destination, ...], *, candidate_key: int | None = None,
                for_join: bool = False) -> SendRequest:
        ufrag, pwd = self._ice()
        body = m.AttachReqAns(ufrag, pwd, b"passive",
                              () if self.candidate is None else (self.candidate,), True)
        act = self._request(dests, body, Purpose.ATTACH, self.timers.attach_timeout)
        self._attaches[act.token] = _Attach(candidate_key, for_join=for_join)
        return act

    def _attach_answered(self, token: int, signer: bytes | None, body: m.Body,
                         now: float) -> list[Action]:
        st = self._attaches[token]
        if signer is None or signer == self.node_id or not isinstance(body, m.AttachReqAns):
            return self._attach_done(token, None, now)
        st.peer = signer
        if body.candidates:
            ap = body.candidates[0].addr_port
            st.addr = (ap.host, ap.port)
            self.peer_addrs[signer] = st.addr
        if signer in self.links:
            return self._attach_done(token, signer, now)
        # the answerer connects to us ("active"); if its link does not come, we connect
        wait = min(ATTACH_LINK_WAIT, self.timers.attach_timeout)
        return [SetTimer(TimerKind.ATTACH_FALLBACK, token, now + wait)]

    def _attach_done(self, token: int, peer: bytes | None, now: float) -> list[Action]:
        st = self._attaches.pop(token, None)
        if st is None:
            return []
        if st.candidate_key is not None and self._attaching.get(st.candidate_key) == token:
            del self._attaching[st.candidate_key]
        out: list[Action] = self._round_done(token, now)
        if st.for_join:
            out += self._join_admitted(peer, now)
        return out + self._advance_join(now)

    # --- transaction and link events ----------------------------------------------------------

    def on_answer(self, token: int, signer: bytes | None, body: m.Body,
                  now: float) -> list[Action]:
        """The answer to request `token` (verified; `signer` its Node-ID)."""
        purpose = self._purpose.pop(token, None)
        if purpose is Purpose.ATTACH and token in self._attaches:
            return self._attach_answered(token, signer, body, now)
        if purpose is Purpose.UPDATE:
            return self._round_done(token, now)
        if purpose is Purpose.JOIN and self.phase is JoinPhase.JOIN_REQ:
            return self._joined_now(now)
        return []

    def on_request_failed(self, token: int, error_code: int, info: str,
                          now: float) -> list[Action]:
        """Request `token` got an Error answer or none (REQUEST_TIMEOUT)."""
        purpose = self._purpose.pop(token, None)
        if purpose is Purpose.ATTACH:
            return self._attach_done(token, None, now)
        if purpose is Purpose.UPDATE:
            return self._round_done(token, now)
        if purpose is Purpose.JOIN and self.phase is JoinPhase.JOIN_REQ:
            self._join_tries += 1
            if self._join_tries >= 3 or error_code != m.ErrorCode.REQUEST_TIMEOUT:
                return self._join_failed(f"Join refused: RELOAD error {error_code}: {info}", now)
            return [self._join_request()]
        return []

    def on_link_up(self, peer: bytes, now: float) -> list[Action]:
        """The first live link to `peer` is up (either side opened it)."""
        self.links.add(peer)
        self._link_born.setdefault(peer, now)
        out: list[Action] = []
        if peer in self._update_after_link:
            self._update_after_link.discard(peer)
            out += self.update_to(peer, now)
        for token, st in list(self._attaches.items()):
            if st.peer == peer:
                out += self._attach_done(token, peer, now)
        return out + self._advance_join(now)

    def on_link_down(self, peer: bytes, now: float) -> list[Action]:
        """The last link to `peer` closed."""
        self.links.discard(peer)
        self._wanted_by.discard(peer)
        self._link_born.pop(peer, None)
        self._update_after_link.discard(peer)
        pruned = peer in self._pruned
        self._pruned.discard(peer)
        # §10.7.4.1 failure (a link we pruned ourselves is no failure: no tombstone)
        out = self._changed(self.topo.remove(to_int(peer), now, failed=not pruned), now)
        return out + self._advance_join(now)

    def on_connected(self, token: int, peer: bytes, now: float) -> list[Action]:
        """Connection `token` is up to `peer` (`on_link_up` came first)."""
        purpose = self._purpose.pop(token, None)
        if purpose is Purpose.BOOTSTRAP and self.phase is JoinPhase.BOOTSTRAP:
            if peer == self.node_id:
                return self._next_bootstrap(now)
            self.phase = JoinPhase.ADMIT
            self._join_tries = 0
            return [self._attach((ResourceDestination(to_id(to_int(self.node_id) + 1)),),
                                 for_join=True)]
        if purpose is Purpose.ATTACH_FALLBACK:
            return self._fallback_done(token, now)
        return []

    def on_connect_failed(self, token: int, error: str, now: float) -> list[Action]:
        purpose = self._purpose.pop(token, None)
        if purpose is Purpose.BOOTSTRAP and self.phase is JoinPhase.BOOTSTRAP:
            self._join_errors.append(error)
            return self._next_bootstrap(now)
        if purpose is Purpose.ATTACH_FALLBACK:
            return self._fallback_done(token, now)
        return []  # ATTACH_BACK: the peer's own Attach fallback connects instead

    def _fallback_done(self, token: int, now: float) -> list[Action]:
        attach = next((t for t, st in self._attaches.items() if st.fallback == token), None)
        if attach is None:
            return []
        return self._attach_done(attach, self._attaches[attach].peer, now)

    def on_timer(self, kind: TimerKind, key: int, now: float) -> list[Action]:
        if kind is TimerKind.REACTIVE_UPDATE:
            self._update_pending = False
            # §10.7.2 says "every member of the Connection Table"; the neighbors are the ones
            # whose tables depend on ours (fingers are refreshed separately): a join is O(log N).
            return self._updates(self.topo.neighbors(), now)
        if kind is TimerKind.ATTACH_FALLBACK:
            st = self._attaches.get(key)
            if st is None:
                return []
            if st.peer is None or st.addr is None or st.peer in self.links or self.stopping:
                return self._attach_done(key, st.peer, now)
            c = Connect(self._token(Purpose.ATTACH_FALLBACK), st.addr[0], st.addr[1], st.peer,
                        Purpose.ATTACH_FALLBACK)
            st.fallback = c.token
            return [c]
        if kind is TimerKind.JOIN_WAIT_UPDATE:
            if self.phase is JoinPhase.WAIT_UPDATE and key == self._join_epoch:
                return self._join_failed("admitting peer sent no Update", now)
            return []
        if kind is TimerKind.JOIN_DEADLINE:
            if key == self._join_epoch and self.phase not in (JoinPhase.IDLE, JoinPhase.JOINED):
                return self._join_failed("join timed out", now)
            return []
        if kind is TimerKind.MAINTENANCE:
            return self._maintenance(now) if key == self._round_id else []
        return []

    # --- join (§10.5, §11.4) ------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Listening: a creator with no bootstrap owns the ring at once (§11.4)."""
        self.started = now
        self._next_ping = now + self.timers.ping_interval
        return []

    def start_join(self, now: float, timeout: float | None = None) -> list[Action]:
        """Begin the join; `JoinDone` reports the end (also after `timeout`, default the
        join timeout)."""
        self._join_epoch += 1
        self.phase = JoinPhase.BOOTSTRAP
        self._join_errors = []
        self._join_peer = None
        # §11.4: configured bootstrap nodes, then peers we were attached to (on re-join)
        cached = [a for a in self.peer_addrs.values() if a not in self.bootstrap][:10]
        self._join_boot = [*self.bootstrap, *cached]
        wait = self.timers.join_timeout if timeout is None else timeout
        return [SetTimer(TimerKind.JOIN_DEADLINE, self._join_epoch, now + wait),
                *self._next_bootstrap(now)]

    def _next_bootstrap(self, now: float) -> list[Action]:
        if not self._join_boot:
            return self._join_failed(f"no bootstrap node reachable: {self._join_errors}", now)
        host, port = self._join_boot.pop(0)
        return [Connect(self._token(Purpose.BOOTSTRAP), host, port, None, Purpose.BOOTSTRAP)]

    def _join_admitted(self, ap: bytes | None, now: float) -> list[Action]:
        if self.phase is not JoinPhase.ADMIT:
            return []
        if ap is None:
            self._join_tries += 1
            if self._join_tries < 3 and self.links:  # the transaction may time out: retry
                return [self._attach((ResourceDestination(to_id(to_int(self.node_id) + 1)),),
                                     for_join=True)]
            return self._join_failed("no admitting peer answered the Attach", now)
        self._join_peer = ap
        if to_int(ap) in self.topo.ready:
            self.phase = JoinPhase.SETTLE
            return []
        self.phase = JoinPhase.WAIT_UPDATE  # its Update (send_update) makes it ready
        return [SetTimer(TimerKind.JOIN_WAIT_UPDATE, self._join_epoch,
                         now + self.timers.attach_timeout)]

    def _advance_join(self, now: float) -> list[Action]:
        if (self.phase is JoinPhase.WAIT_UPDATE and self._join_peer is not None
                and to_int(self._join_peer) in self.topo.ready):
            self.phase = JoinPhase.SETTLE
        if self.phase is JoinPhase.SETTLE and not self._attaching and not self._attaches:
            # §10.5 step 5 makes the finger Attaches optional before the Join: they follow it
            # (`_joined_now`), so a join waits for its neighbors only.
            self.phase = JoinPhase.FINGERS
        if self.phase is JoinPhase.FINGERS:
            succ = self.topo.successors()
            if succ:  # another peer may have joined between us and the first admitting peer
                self._join_peer = to_id(succ[0])
            self.phase = JoinPhase.JOIN_REQ
            self._join_tries = 0
            return [self._join_request()]
        return []

    def _join_request(self) -> SendRequest:
        assert self._join_peer is not None
        return self._request((NodeDestination(self._join_peer),), m.JoinReq(self.node_id),
                             Purpose.JOIN, self.timers.attach_timeout)

    def _joined_now(self, now: float) -> list[Action]:
        self.phase = JoinPhase.JOINED
        self._create_if_alone = False
        self.joined = True
        return [JoinDone(True), *self._changed(TableChange(True), now),
                *self._finger_attaches(None)]  # §10.7.4.3

    def _join_failed(self, reason: str, now: float) -> list[Action]:
        self.phase = JoinPhase.IDLE
        self._join_epoch += 1  # its timers are stale now
        for token, st in list(self._attaches.items()):
            if st.for_join:
                del self._attaches[token]
        if self._create_if_alone:  # §11.4: a restarted creator found nobody: it owns the ring
            self._create_if_alone = False
            return [*self.create_ring(now),
                    JoinDone(True, f"no overlay to re-join ({reason}): created it")]
        return [JoinDone(False, reason)]

    def begin(self, now: float) -> list[Action]:
        """Listening, with the candidate set: join, or create the ring. §11.4: a creator
        without bootstrap nodes owns the ring at once; a creator with some (restarted while
        the overlay runs on) tries a short join first and creates the ring only when nobody
        answers. `JoinDone` reports the outcome (its reason says when the ring was created)."""
        if self.create and not self.bootstrap:
            return [*self.create_ring(now), JoinDone(True)]
        if self.create:
            self._create_if_alone = True
            return self.start_join(now, min(self.timers.join_timeout,
                                            2 * self.timers.attach_timeout))
        return self.start_join(now)

    def create_ring(self, now: float) -> list[Action]:
        """§11.4: nobody reachable: the first node owns the ring."""
        self.joined = True
        self.phase = JoinPhase.JOINED
        return self._changed(TableChange(True), now)

    def start_maintenance(self, now: float) -> list[Action]:
        return [SetTimer(TimerKind.MAINTENANCE, self._round_id,
                         now + self.timers.update_interval * self.rng.uniform(0.9, 1.1))]

    # --- maintenance (§10.7) ------------------------------------------------------------------

    def _finger_attaches(self, limit: int | None) -> list[Action]:
        """§10.7.4.3: Attach toward finger targets beyond our successor range."""
        if not self.topo.ready or self.stopping:
            return []
        me = to_int(self.node_id)
        succ = self.topo.successors()
        span = (succ[-1] - me) % RING if succ else 0
        idx = [i for i in self.topo.invalid_fingers() if (finger_target(me, i) - me) % RING > span]
        if limit is not None:
            self.rng.shuffle(idx)
            idx = idx[:limit]
        return [self._attach((ResourceDestination(to_id(finger_target(me, i))),)) for i in idx]

    def _maintenance(self, now: float) -> list[Action]:
        """Periodic Update to the neighbors (§10.7.1), prune, finger refresh."""
        if self.stopping:
            return []
        self._round.clear()
        self._round_id += 1  # timers of earlier rounds are stale now
        out = self.start_maintenance(now)
        if self.phase not in (JoinPhase.IDLE, JoinPhase.JOINED):
            return out  # a (re-)join is in progress
        if (not self.topo.ready and self._had_peers
                and (self.bootstrap or self.peer_addrs)):  # §10.7.4.1: lost everyone: re-join
            self.joined = False
            self.topo.forget_failures()
            return out + self.start_join(now)
        work: list[Action] = self._updates(self.topo.neighbors(), now)
        work += self._prune(now)
        if now >= self._next_ping:
            self._next_ping = now + self.timers.ping_interval
            work += self._finger_attaches(2)
        # The next round is timed from the end of this one (its Updates and Attaches answered
        # or failed), so a loaded node does not pile rounds on rounds.
        self._round = {a.token for a in work if isinstance(a, SendRequest)}
        if not self._round:
            return [*out, *work]
        # a watchdog, should an outcome never be reported: the round ends by then anyway
        late = now + 1.1 * self.timers.update_interval + 2 * self.timers.attach_timeout
        return [*work, SetTimer(TimerKind.MAINTENANCE, self._round_id, late)]

    def _round_done(self, token: int, now: float) -> list[Action]:
        if token not in self._round:
            return []
        self._round.discard(token)
        return [] if self._round or self.stopping else self.start_maintenance(now)

    def rejoin_failed(self) -> None:
        """A re-join ended without success: a creator keeps owning its ring."""
        if not self.joined:
            self.joined = self.create

    def _prune(self, now: float) -> list[Action]:
        """Close links we opened for peers that left our routing table (the Connection Table
        may hold more, §10.1, but unused links only cost descriptors and keep-alive traffic).
        Links a peer asked for with Attach stay: it may use us as neighbor or finger."""
        if not self.joined or not self.prune:
            return []
        keep = self.topo.routing_table()
        out: list[Action] = []
        for peer in sorted(self.links):
            if (to_int(peer) in keep or peer in self._wanted_by
                    or now - self._link_born.get(peer, now) < 2 * self.timers.update_interval):
                continue
            self._pruned.add(peer)
            out.append(CloseLinks(peer, "pruned: not in the routing table"))
        return out

    # --- leave (§10.9) --------------------------------------------------------------------

    def leave(self) -> list[SendRequest]:
        """from_succ (our successors) to predecessors, from_pred to successors."""
        succ = [to_id(p) for p in self.topo.successors()]
        pred = [to_id(p) for p in self.topo.predecessors()]
        reqs = [self._request((NodeDestination(p),), m.LeaveReq.chord(
            self.node_id, m.ChordLeaveData(m.LEAVE_FROM_SUCC, tuple(succ))), Purpose.LEAVE)
            for p in pred]
        reqs += [self._request((NodeDestination(s),), m.LeaveReq.chord(
            self.node_id, m.ChordLeaveData(m.LEAVE_FROM_PRED, tuple(pred))), Purpose.LEAVE)
            for s in succ if s not in pred]
        return reqs

    # --- AppAttach (§6.5.2) ---------------------------------------------------------------

    def app_attach_request(self, application: int) -> m.AppAttachReqAns:
        """An AppAttach request for `application` carrying our host candidate (No-ICE)."""
        ufrag, pwd = self._ice()
        return m.AppAttachReqAns(ufrag, pwd, application, b"passive",
                                 () if self.candidate is None else (self.candidate,))

    def app_attach_answer(self, req: m.AppAttachReqAns, addr: HostPort | None) -> m.Body:
        """The answer to an AppAttach: the application's address (`addr`, looked up by the
        carrier) as our "active" host candidate, or NOT_FOUND."""
        if addr is None:
            return m.ErrorResponse.text(m.ErrorCode.NOT_FOUND,
                                        f"no application {req.application}")
        ufrag, pwd = self._ice()
        return m.AppAttachReqAns(ufrag, pwd, req.application, b"active",
                                 (m.IceCandidate(m.IpAddressPort(addr[0], addr[1])),))

    def attach_targets(self, targets: Sequence[bytes]) -> list[Action]:
        """Attach toward each Resource-ID in `targets` (tests, tools)."""
        return [self._attach((ResourceDestination(t),)) for t in targets]
