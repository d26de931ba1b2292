"""N instances of the real `ChordProtocol` over an in-memory network in simulated time.

The protocol core (core/chord_protocol.py) is the code the daemons run; what this replaces is
its carrier: links are set entries, a message is a Python object handed from hop to hop after
a configurable latency (with jitter, loss and partitions), and a timer is an entry of one event
queue. The cheap stand-ins, only where the wire codec is not under test: no encoding, no TLS,
no signatures (a message's signer is its origin). Routing follows the same decisions as the
asyncio transport (aio/transport.py): `ChordProtocol.route`, the via list (§6.3.2.1), answers
along the reversed via list, retransmission every overlay-reliability-timer (§6.2.1).
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from vipr.reload.core.chord_protocol import (
    Action,
    ChordProtocol,
    CloseLinks,
    Connect,
    Deliver,
    Forward,
    JoinDone,
    JoinPhase,
    Purpose,
    SendRequest,
    SetTimer,
    TimerKind,
    TopologyChanged,
)
from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.replication import DEFAULT_HOLD_DOWN
from vipr.reload.core.storage import DataStore
from vipr.reload.core.storage_protocol import StorageProtocol
from vipr.reload.core.topology import (
    N_FINGERS,
    N_SUCC,
    RING,
    dist,
    finger_target,
    to_id,
    to_int,
)
from vipr.reload.wire import bodies as m
from vipr.reload.wire.forwarding import Destination, NodeDestination, ResourceDestination
from vipr.reload.wire.security import cert_from_der_cached
from vipr.reload.wire.storage_bodies import STORAGE_BODIES

HostPort = tuple[str, int]
PORT = 6084


@dataclass(frozen=True)
class NetConfig:
    """The simulated network: one-way delay per hop, jitter, loss per hop."""

    latency: float = 0.02
    jitter: float = 0.005
    loss: float = 0.0
    handshake_rtts: float = 2.0  # TCP + TLS before a link is up
    failure_detect: float = 0.05  # s until peers of a crashed node see its links close


@dataclass(slots=True)
class Packet:
    txid: int
    origin: bytes
    dests: list[Destination]
    via: list[bytes]
    body: m.OutgoingBody
    code: int
    is_request: bool
    ttl: int = 100
    hops: int = 0


@dataclass
class SimNode:
    node_id: bytes
    addr: HostPort
    protocol: ChordProtocol
    storage: StorageProtocol | None = None  # the storage core (when the simulation stores)
    alive: bool = True
    join_started: float = 0.0
    join_done: float | None = None
    join_failures: int = 0


@dataclass
class Probe:
    """Where a lookup for `key` ended (`node` None: dropped) and after how many hops."""

    key: int
    node: bytes | None = None
    hops: int = 0


@dataclass
class Reply:
    """The outcome of a `Simulation.request`: `body` the answer, or `error` (code, text)."""

    body: m.OutgoingBody | None = None
    signer: bytes | None = None
    error: tuple[int, str] | None = None

    @property
    def done(self) -> bool:
        return self.body is not None or self.error is not None


@dataclass
class Simulation:
    """`data_store`: when set, every node runs a `StorageProtocol` over `data_store(node_id)`
    (replication hold-down `hold_down`); `wall0`: the UNIX time of simulated time 0 (stored
    data lifetimes and certificate validity are checked against `wall0 + now`)."""

    timers: ChordTimers = field(default_factory=ChordTimers)
    net: NetConfig = field(default_factory=NetConfig)
    seed: int = 1
    now: float = 0.0
    data_store: Callable[[bytes], DataStore] | None = None
    hold_down: float = DEFAULT_HOLD_DOWN
    wall0: float = 0.0
    nodes: dict[bytes, SimNode] = field(default_factory=dict)
    messages: int = 0  # end-to-end messages originated (requests, answers, retransmissions)
    transmissions: int = 0  # per-hop transmissions
    events: int = 0
    connects: int = 0  # connections opened (each a TCP + TLS handshake in the daemons)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._by_addr: dict[HostPort, bytes] = {}
        self.links: dict[bytes, set[bytes]] = {}
        self.group: dict[bytes, int] = {}  # partitions: nodes in different groups cannot talk
        self._pending: dict[int, tuple[bytes, SendRequest, int]] = {}
        self._probes: dict[int, Probe] = {}
        self._first: bytes | None = None
        self._codes: dict[type, int] = {}
        self._replies: dict[int, Reply] = {}  # token → the outcome of a CLIENT request
        self._client_token = 0

    # --- event queue ---------------------------------------------------------------------------

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, fn, args))

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events up to simulated time `until` (or until `stop()` holds)."""
        q = self._queue
        while q and q[0][0] <= until:
            t, _s, fn, args = heapq.heappop(q)
            self.now = max(self.now, t)
            self.events += 1
            fn(*args)
            if stop is not None and self.events % 256 == 0 and stop():
                return
        self.now = max(self.now, until)

    def _delay(self) -> float:
        return max(0.0, self.net.latency + self.rng.uniform(-self.net.jitter, self.net.jitter))

    def _reachable(self, a: bytes, b: bytes) -> bool:
        na, nb = self.nodes.get(a), self.nodes.get(b)
        return (na is not None and nb is not None and na.alive and nb.alive
                and self.group.get(a, 0) == self.group.get(b, 0))

    # --- nodes ----------------------------------------------------------------------------------

    def _new_node(self, nid: bytes, boot: tuple[HostPort, ...], create: bool) -> SimNode:
        i = len(self._by_addr) + 1
        addr = (str(ipaddress.IPv4Address(0x0A000000 + i)), PORT)
        proto = ChordProtocol(nid, self.timers, random.Random(self.rng.getrandbits(64)),
                              bootstrap=boot, create=create)
        proto.candidate = m.IceCandidate(m.IpAddressPort(addr[0], addr[1]))
        node = SimNode(nid, addr, proto, join_started=self.now)
        if self.data_store is not None:
            node.storage = StorageProtocol(self.data_store(nid), proto, self.hold_down)
        self.nodes[nid] = node
        self._by_addr[addr] = nid
        self.links[nid] = set()
        return node

    def warm_start(self, n: int, extra: int = 0) -> None:
        """N peers already in the ring, as after a long steady state (scale runs only): each
        is linked to its true 3 successors, 3 predecessors and 16 fingers (§10.3) and to the
        peers that chose it as one of theirs; both ends of every link are ready (each sent an
        Update). The tables go in through the core's own events (`on_link_up`, then the
        topology's `add_ready`, as an Update does); a simulated join costs about 10^3 events
        per node, this is for N where N joins do not fit in the time budget. `extra` random
        links per peer (drawn uniformly) stand for the links a peer keeps because others
        attached to it while their tables were younger."""
        assert not self.nodes, "warm start builds a new ring"
        ids = sorted({self.rng.getrandbits(128) for _ in range(n)})
        n = len(ids)
        boot: tuple[HostPort, ...] = ()
        nodes = [self._new_node(to_id(v), boot, i == 0) for i, v in enumerate(ids)]
        self._first = nodes[0].node_id
        wanted: list[set[int]] = [set() for _ in ids]
        for i, v in enumerate(ids):
            w = wanted[i]
            for k in range(1, min(N_SUCC, n - 1) + 1):
                w.add((i + k) % n)
                w.add((i - k) % n)
            for f in range(1, N_FINGERS + 1):
                j = bisect.bisect_left(ids, finger_target(v, f)) % n
                if j != i:
                    w.add(j)
            for _ in range(extra):
                j = self.rng.randrange(n)
                if j != i:
                    w.add(j)
        boot = (nodes[0].addr,)
        for node in nodes:
            p = node.protocol
            p.bootstrap = boot
            self._exec(node, p.start(self.now))
            p.joined = True
            p.phase = JoinPhase.JOINED
            node.join_done = self.now
        for i, w in enumerate(wanted):
            a = nodes[i]
            for j in w:
                b = nodes[j]
                # what answering its Attach records (_on_attach): we keep this link
                b.protocol._wanted_by.add(a.node_id)
                if b.node_id in self.links[a.node_id]:
                    continue
                self.links[a.node_id].add(b.node_id)
                self.links[b.node_id].add(a.node_id)
                a.protocol.on_link_up(b.node_id, self.now)
                b.protocol.on_link_up(a.node_id, self.now)
        for node in nodes:
            p = node.protocol
            # all ready at once: one table computation instead of one per peer
            peers = [to_int(q) for q in self.links[node.node_id]]
            if peers:
                p.topo.ready.update(peers[1:])
                p.topo.add_ready(peers[0])
            p.peer_addrs.update((q, self.nodes[q].addr) for q in self.links[node.node_id])
            p._had_peers = True  # what `_changed` records on the first ready peer
            self._exec(node, p.start_maintenance(self.now))

    def add_node(self, node_id: bytes | None = None) -> SimNode:
        """A new peer; the first creates the ring, the others join through it."""
        nid = node_id if node_id is not None else self.rng.getrandbits(128).to_bytes(16, "big")
        boot = () if self._first is None else (self.nodes[self._first].addr,)
        node = self._new_node(nid, boot, self._first is None)
        proto = node.protocol
        self._exec(node, proto.start(self.now))
        if self._first is None:
            self._first = nid
            node.join_done = self.now
            self._exec(node, proto.create_ring(self.now))
            self._exec(node, proto.start_maintenance(self.now))
        else:
            self._exec(node, proto.start_join(self.now))
        return node

    def kill(self, nid: bytes) -> None:
        """Crash `nid` (no Leave): its peers see its links close after `failure_detect`."""
        node = self.nodes[nid]
        node.alive = False
        node.protocol.stopping = True
        for p in list(self.links[nid]):
            self.links[p].discard(nid)
            self.at(self.now + self.net.failure_detect, self._link_down, p, nid)
        self.links[nid].clear()
        if self._first == nid:
            alive = [n for n in self.nodes.values() if n.alive and n.join_done is not None]
            self._first = alive[0].node_id if alive else None

    def alive_ids(self) -> list[bytes]:
        return [n.node_id for n in self.nodes.values() if n.alive]

    # --- carrying out actions -----------------------------------------------------------------

    def _exec(self, node: SimNode, actions: list[Action]) -> None:
        if not node.alive:
            return
        for a in actions:
            if isinstance(a, SendRequest):
                self._send_request(node, a)
            elif isinstance(a, Connect):
                self._connect(node, a)
            elif isinstance(a, CloseLinks):
                self._close(node.node_id, a.peer)
            elif isinstance(a, SetTimer):
                self.at(a.at, self._fire, node, a)
            elif isinstance(a, JoinDone):
                self._join_done(node, a)
            elif isinstance(a, TopologyChanged) and node.storage is not None:
                self._exec(node, node.storage.topology_changed(self.now, self.wall))

    @property
    def wall(self) -> float:
        return self.wall0 + self.now

    def _fire(self, node: SimNode, a: SetTimer) -> None:
        if not node.alive:
            return
        if a.kind is TimerKind.REPLICATION:
            if node.storage is not None:
                self._exec(node, node.storage.on_timer(a.key, self.now, self.wall))
            return
        self._exec(node, node.protocol.on_timer(a.kind, a.key, self.now))

    def _join_done(self, node: SimNode, a: JoinDone) -> None:
        if a.ok:
            if node.join_done is None:
                node.join_done = self.now
                self._exec(node, node.protocol.start_maintenance(self.now))
            return
        if node.join_done is None:  # first join failed: try again through a live node
            node.join_failures += 1
            if self._first is not None:
                node.protocol.bootstrap = (self.nodes[self._first].addr,)
            self.at(self.now + 1.0, self._retry_join, node)
        else:
            node.protocol.rejoin_failed()

    def _retry_join(self, node: SimNode) -> None:
        if node.alive and node.join_done is None:
            self._exec(node, node.protocol.start_join(self.now))

    def _connect(self, node: SimNode, a: Connect) -> None:
        target = self._by_addr.get((a.host, a.port))
        self.connects += 1
        delay = 2 * self.net.latency * self.net.handshake_rtts
        self.at(self.now + delay, self._connected, node, a, target)

    def _connected(self, node: SimNode, a: Connect, target: bytes | None) -> None:
        if not node.alive:
            return
        me = node.node_id
        if target == me:
            self._exec(node, node.protocol.on_connected(a.token, me, self.now))
            return
        if target is None or not self._reachable(me, target) or (
                a.peer is not None and a.peer != target):
            self._exec(node, node.protocol.on_connect_failed(a.token, "refused", self.now))
            return
        if target not in self.links[me]:
            self.links[me].add(target)
            self.links[target].add(me)
            self._exec(node, node.protocol.on_link_up(target, self.now))
            self._exec(self.nodes[target], self.nodes[target].protocol.on_link_up(me, self.now))
        self._exec(node, node.protocol.on_connected(a.token, target, self.now))

    def _close(self, a: bytes, b: bytes) -> None:
        if b not in self.links[a]:
            return
        self.links[a].discard(b)
        self.links[b].discard(a)
        self._link_down(a, b)
        self.at(self.now + self.net.latency, self._link_down, b, a)

    def _link_down(self, a: bytes, b: bytes) -> None:
        node = self.nodes[a]
        if node.alive and b not in self.links[a]:
            self._exec(node, node.protocol.on_link_down(b, self.now))

    # --- messages ---------------------------------------------------------------------------

    def _send_request(self, node: SimNode, a: SendRequest) -> None:
        txid = self.rng.getrandbits(64)
        code = self._codes.get(type(a.body))
        if code is None:
            code = self._codes[type(a.body)] = m.body_code(a.body)
        pkt = Packet(txid, node.node_id, list(a.dests), [], a.body, code, True)
        self._pending[txid] = (node.node_id, a, 1)
        self._originate(node.node_id, pkt)
        t = self.timers
        deadline = t.reliability_timer * t.max_transmissions
        if a.timeout is not None:
            deadline = min(deadline, a.timeout)
        self.at(self.now + min(t.reliability_timer, deadline), self._retransmit, txid, pkt,
                self.now + deadline)

    def _retransmit(self, txid: int, pkt: Packet, deadline: float) -> None:
        entry = self._pending.get(txid)
        if entry is None:
            return
        nid, a, sent = entry
        node = self.nodes[nid]
        if not node.alive:
            self._pending.pop(txid, None)
            return
        if self.now >= deadline - 1e-9 or sent >= self.timers.max_transmissions:
            self._pending.pop(txid, None)
            self._failed(node, a, m.ErrorCode.REQUEST_TIMEOUT, "no answer")
            return
        self._pending[txid] = (nid, a, sent + 1)
        self._originate(nid, Packet(txid, nid, list(a.dests), [], a.body, pkt.code, True))
        self.at(min(deadline, self.now + self.timers.reliability_timer), self._retransmit, txid,
                pkt, deadline)

    def _originate(self, nid: bytes, pkt: Packet) -> None:
        self.messages += 1
        self._process(nid, pkt, None)

    def _process(self, nid: bytes, pkt: Packet, prev: bytes | None) -> None:
        node = self.nodes[nid]
        if not node.alive:
            return
        d = pkt.dests
        while len(d) > 1 and isinstance(d[0], NodeDestination) and d[0].node_id == nid:
            d.pop(0)  # §6.3.2.2
        decision = node.protocol.route(d[0] if d else None, pkt.code)
        if isinstance(decision, Deliver):
            self._deliver(node, pkt, prev)
            return
        if not isinstance(decision, Forward) or decision.peer not in self.links[nid] or (
                prev is not None and pkt.ttl <= 1):
            if pkt.is_request and pkt.txid in self._probes:
                self._probes.pop(pkt.txid)
            elif pkt.is_request and prev is not None:
                self._answer(node, pkt, prev, m.ErrorResponse.text(m.ErrorCode.NOT_FOUND, ""))
            return
        if prev is not None:
            if pkt.is_request:
                pkt.via.append(prev)
            pkt.ttl -= 1
        pkt.hops += 1
        self._hop(nid, decision.peer, pkt)

    def _hop(self, src: bytes, dst: bytes, pkt: Packet) -> None:
        self.transmissions += 1
        if self.net.loss and self.rng.random() < self.net.loss:
            return
        if not self._reachable(src, dst):
            return
        self.at(self.now + self._delay(), self._process, dst, pkt, src)

    def _deliver(self, node: SimNode, pkt: Packet, prev: bytes | None) -> None:
        if not pkt.is_request:
            entry = self._pending.pop(pkt.txid, None)
            if entry is None or entry[0] != node.node_id:
                return
            _nid, a, _sent = entry
            if isinstance(pkt.body, m.ErrorResponse):
                self._failed(node, a, pkt.body.error_code, pkt.body.info_text())
            elif a.purpose is Purpose.CLIENT:
                reply = self._replies.pop(a.token, Reply())
                reply.body, reply.signer = pkt.body, pkt.origin
            elif a.purpose is Purpose.REPLICA and node.storage is not None:
                self._exec(node, node.storage.on_answer(a.token, pkt.origin, pkt.body,
                                                        self.now))
            else:
                inner = pkt.body.body if isinstance(pkt.body, m.WithCertificates) else pkt.body
                self._exec(node, node.protocol.on_answer(a.token, pkt.origin, inner, self.now))
            return
        probe = self._probes.pop(pkt.txid, None)
        if probe is not None:
            probe.node, probe.hops = node.node_id, pkt.hops
            return
        certs: tuple[x509.Certificate, ...] = ()
        body = pkt.body
        if isinstance(body, m.WithCertificates):  # the stand-in for the security block
            certs = tuple(cert_from_der_cached(c) for c in body.certificates)
            body = body.body
        answer: m.OutgoingBody | None
        acts: list[Action]
        if pkt.code in STORAGE_BODIES:
            if node.storage is None:
                answer, acts = m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "no storage"), []
            else:  # signer None: the stand-in has no signatures (origin is not verified)
                answer, acts = node.storage.on_request(body, signer=None, certs=certs,
                                                       via=len(pkt.via), now=self.now,
                                                       wall=self.wall)
        else:
            direct = prev if prev is not None and not pkt.via and prev == pkt.origin else None
            answer, acts = node.protocol.on_request(body, signer=pkt.origin,
                                                    direct_peer=direct, link_peer=prev,
                                                    now=self.now, wall=self.wall)
        self._exec(node, acts)
        if answer is not None:
            self._answer(node, pkt, prev, answer)

    def _failed(self, node: SimNode, a: SendRequest, code: int, info: str) -> None:
        if a.purpose is Purpose.CLIENT:
            self._replies.pop(a.token, Reply()).error = (code, info)
        elif a.purpose is Purpose.REPLICA and node.storage is not None:
            self._exec(node, node.storage.on_request_failed(a.token, code, info, self.now))
        else:
            self._exec(node, node.protocol.on_request_failed(a.token, code, info, self.now))

    def _answer(self, node: SimNode, req: Packet, prev: bytes | None,
                body: m.OutgoingBody) -> None:
        dests: list[Destination] = [NodeDestination(v) for v in reversed(req.via)]
        if prev is not None:
            dests.insert(0, NodeDestination(prev))
        if not dests:
            dests = [NodeDestination(node.node_id)]
        code = m.MessageCode.ERROR if isinstance(body, m.ErrorResponse) else req.code + 1
        # (a WithCertificates answer carries its certificates along: the requester sees them)
        ans = Packet(req.txid, node.node_id, dests, [], body, code, False)
        self._originate(node.node_id, ans)

    # --- requests of the nodes' users (the VIPR usage, tests) ---------------------------------

    def request(self, src: bytes, resource: bytes, body: m.OutgoingBody,
                timeout: float | None = None) -> Reply:
        """Send `body` from `src` to the peer responsible for `resource` as a transaction
        (retransmitted, §6.2.1); the `Reply` fills in when it ends (run the simulation on)."""
        self._client_token -= 1  # negative: never one of the cores' own tokens
        reply = Reply()
        self._replies[self._client_token] = reply
        a = SendRequest(self._client_token, (ResourceDestination(resource),), body, timeout,
                        Purpose.CLIENT)
        self._send_request(self.nodes[src], a)
        return reply

    # --- measurements ---------------------------------------------------------------------------

    def lookup(self, src: bytes, key: int) -> Probe:
        """Route a request for Resource-ID `key` from `src`; the Probe fills in when it lands
        (run the simulation on)."""
        probe = Probe(key)
        txid = self.rng.getrandbits(64)
        self._probes[txid] = probe
        dest = ResourceDestination(key.to_bytes(16, "big"))
        self._process(src, Packet(txid, src, [dest], [], m.PingReq(), m.MessageCode.PING_REQ,
                                  True), None)
        return probe

    def owner(self, key: int, ring: list[int]) -> int:
        """The responsible peer for `key` on the sorted id list `ring` (§10.3: successor)."""
        import bisect

        i = bisect.bisect_left(ring, key)
        return ring[i % len(ring)]

    def ring_correct(self) -> float:
        """Share of live joined nodes whose first successor and predecessor are the true ones."""
        ids = sorted(to_int(n) for n in self.alive_ids())
        if len(ids) < 2:
            return 1.0
        ok = 0
        pos = {v: i for i, v in enumerate(ids)}
        for v in ids:
            topo = self.nodes[v.to_bytes(16, "big")].protocol.topo
            i = pos[v]
            s, p = topo.successors(), topo.predecessors()
            if s and p and s[0] == ids[(i + 1) % len(ids)] and p[0] == ids[i - 1]:
                ok += 1
        return ok / len(ids)


def load_skew(ids: list[int], numbers: int, names: int = 3, replicas: int = 3) -> dict[str, float]:
    """Records per node for `numbers` numbers, each under `names` Resource-IDs stored on the
    responsible peer and its successors (`replicas` copies), computed from the ring's arcs: a
    peer holds the keys of its own arc and of its `replicas - 1` predecessors' arcs."""
    ring = sorted(ids)
    n = len(ring)
    arcs = [dist(ring[i - 1], ring[i]) / RING for i in range(n)]
    load = [sum(arcs[(i - k) % n] for k in range(min(replicas, n))) for i in range(n)]
    total = numbers * names
    mean = total * replicas / n
    return {"records_per_node_mean": round(mean), "records_per_node_max": round(total * max(load)),
            "skew_max_over_mean": round(max(load) * total / mean, 3)}
