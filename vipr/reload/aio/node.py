"""asyncio RELOAD peer over CHORD-RELOAD (RFC 6940 §10) and TLS-TCP-FH-NO-ICE links (§6.6).

The protocol (join, Update, Leave, repair, Attach, Probe, Ping, routing) is decided by the
sans-I/O `ChordProtocol` (core/chord_protocol.py); this shell feeds it link events, requests,
answers and timer firings and carries out the actions it returns over a `NodeTransport`
(transport.py, held by composition). Store/Fetch/Stat/Find go to a storage plug-in and
AppAttach (§6.5.2) to a callback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vipr.limits import OVERLAY_LIMITS, ListenerLimits
from vipr.listen_error import listen_error
from vipr.reload.aio.link import Link, Listener, Tap, serve
from vipr.reload.aio.transport import NodeTransport
from vipr.reload.core.chord_protocol import (
    Action,
    ChordProtocol,
    CloseLinks,
    Connect,
    JoinDone,
    SendRequest,
    SetTimer,
    TimerKind,
    TopologyChanged,
)
from vipr.reload.core.framing import DEFAULT_MAX_MESSAGE_SIZE
from vipr.reload.core.node_api import (
    DEFAULT_TIMERS,
    AppAttachCallback,
    ChordTimers,
    HostPort,
    ReloadJoinError,
    ReloadRequestError,
    StorageHandler,
    TopologyListener,
)
from vipr.reload.core.topology import ChordTopology, to_id, to_int
from vipr.reload.wire import bodies as m
from vipr.reload.wire.bodies import OutgoingBody
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.forwarding import NodeDestination, ResourceDestination
from vipr.reload.wire.security import ReloadSecurityError
from vipr.reload.wire.storage_bodies import STORAGE_BODIES

__all__ = ["AppAttachCallback", "ChordTimers", "HostPort", "ReloadJoinError", "ReloadNode",
           "ReloadRequestError", "StorageHandler", "TopologyListener"]

log = logging.getLogger("vipr.reload.aio.node")


class ReloadNode:
    """One RELOAD peer. Several may run in one event loop (each has its own port and links)."""

    def __init__(
        self,
        *,
        context: ReloadContext,
        creds_files: tuple[Path, Path],
        listen: HostPort = ("127.0.0.1", 0),
        bootstrap: Sequence[HostPort] = (),
        create: bool = False,
        timers: ChordTimers = DEFAULT_TIMERS,
        storage: StorageHandler | None = None,
        app_attach: AppAttachCallback | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        prune: bool = True,
        advertise_host: str | None = None,
        limits: ListenerLimits = OVERLAY_LIMITS,
        rng: random.Random | None = None,
    ) -> None:
        self.context = context
        self.node_id: bytes = context.node_id
        self.creds_files = creds_files
        self.timers = timers
        self.max_message_size = max_message_size
        self.listener = Listener(limits)  # DESIGN §10: caps of this node's listener
        self.listen = listen
        self.bootstrap = tuple(bootstrap)
        self.create = create
        self.storage = storage
        self.app_attach_cb = app_attach
        self.advertise_host = advertise_host
        self.protocol = ChordProtocol(self.node_id, timers, rng or random.Random(),
                                      bootstrap=self.bootstrap, create=create, prune=prune)
        self.transport = NodeTransport(context, creds_files, timers, max_message_size,
                                       protocol=self.protocol, handler=self._handle,
                                       link_up=self._link_up, link_down=self._link_down)
        self._server: asyncio.Server | None = None
        self._address: HostPort | None = None
        self._listeners: list[TopologyListener] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._join_waiter: asyncio.Future[JoinDone] | None = None
        self._stopping = False

    # --- views for callers and tests ----------------------------------------------------------

    @property
    def topo(self) -> ChordTopology:
        return self.protocol.topo

    @property
    def hop_counts(self) -> dict[int, int]:
        return self.transport.hop_counts

    @property
    def tap(self) -> Tap | None:
        return self.transport.tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self.transport.tap = tap

    @property
    def _links(self) -> dict[bytes, list[Link]]:
        return self.transport._links

    def _link(self, peer: bytes) -> Link | None:
        return self.transport.link(peer)

    # --- public API --------------------------------------------------------------------------

    @property
    def address(self) -> HostPort:
        """The bound listen address (after `start`)."""
        if self._address is None:
            raise RuntimeError("node not started")
        return self._address

    @property
    def joined(self) -> bool:
        return self.protocol.joined

    async def start(self) -> None:
        """Listen; join through a bootstrap node unless `create`; returns when joined."""
        self.protocol.bootstrap = tuple(self.bootstrap)  # callers may set these after __init__
        self.protocol.create = self.create
        self._run(self.protocol.start(self._now()))
        try:
            self._server = await serve(self.listen[0], self.listen[1], self.creds_files,
                                       self.context.trust, self.transport.add_link,
                                       listener=self.listener, **self.transport.link_kwargs())
        except OSError as exc:
            raise listen_error("overlay link", self.listen[0], self.listen[1], exc) from exc
        sock = self._server.sockets[0].getsockname()
        self._address = (sock[0], sock[1])
        host = self.advertise_host or sock[0]  # a wildcard listen address is no candidate
        self.protocol.candidate = m.IceCandidate(m.IpAddressPort(host, sock[1]))  # §6.5.1.1
        try:
            await self._begin()
        except ReloadJoinError:
            await self.stop(leave=False)
            raise
        self._run(self.protocol.start_maintenance(self._now()))

    async def _begin(self) -> None:
        """Join or create the ring, as the protocol decides (`ChordProtocol.begin`)."""
        fut: asyncio.Future[JoinDone] = asyncio.get_running_loop().create_future()
        self._join_waiter = fut
        self._run(self.protocol.begin(self._now()))
        try:  # the protocol's own deadline ends the join; this bound only guards the shell
            done = await asyncio.wait_for(fut, self.timers.join_timeout + 1.0)
        except TimeoutError as e:
            raise ReloadJoinError("join failed: timed out") from e
        finally:
            self._join_waiter = None
        if not done.ok:
            raise ReloadJoinError(f"join failed: {done.reason}")
        if done.reason:
            log.info("%s: %s", self.node_id.hex()[:8], done.reason)

    async def stop(self, *, leave: bool = True, leave_timeout: float | None = None) -> None:
        """Leave (§10.9) unless `leave=False` (simulated crash), close links and the listener.
        The Leave waits at most `leave_timeout` (default: the attach timeout)."""
        if self._stopping:
            return
        if leave and self.protocol.joined:
            wait = self.timers.attach_timeout if leave_timeout is None else leave_timeout
            leaves = [self.transport.spawn(self._send(a)) for a in self.protocol.leave()]
            if leaves:
                _done, pending = await asyncio.wait(leaves, timeout=wait)
                if pending:
                    log.info("%s: Leave not answered within %.3g s", self.node_id.hex()[:8],
                             wait)
        self._stopping = True
        self.protocol.stopping = True
        self.protocol.joined = False
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._join_waiter is not None and not self._join_waiter.done():
            self._join_waiter.set_result(JoinDone(False, "node stopped"))
        if self._server is not None:
            self._server.close()
        await self.transport.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                log.warning("%s: listener did not close within 2 s", self.node_id.hex()[:8])

    async def request(self, destination: bytes, body: OutgoingBody, *,
                      timeout: float | None = None) -> Received:
        """Route `body` to the node responsible for the 16-byte Resource-ID `destination`."""
        return await self.transport.request((ResourceDestination(destination),), body, timeout)

    async def request_direct(self, node_id: bytes, body: OutgoingBody, *,
                             timeout: float | None = None) -> Received:
        """Send `body` to the peer `node_id` (a Node-ID destination; routed if not linked)."""
        return await self.transport.request((NodeDestination(node_id),), body, timeout)

    async def app_attach(self, peer_id: bytes, application: int, *,
                         timeout: float | None = None) -> HostPort:
        """§6.5.2 AppAttach to `peer_id`; returns the answer's host candidate address."""
        if self.protocol.candidate is None:
            raise RuntimeError("node not started")
        body = self.protocol.app_attach_request(application)
        rx = await self.transport.request((NodeDestination(peer_id),), body, timeout)
        ans = rx.body
        if not isinstance(ans, m.AppAttachReqAns) or not ans.candidates:
            raise ReloadRequestError(m.ErrorCode.INVALID_MESSAGE, "AppAttachAns without candidate")
        ap = ans.candidates[0].addr_port
        return (ap.host, ap.port)

    def is_responsible(self, resource_id: bytes) -> bool:
        """True if this node owns `resource_id` (in (predecessor, self])."""
        return self.protocol.owns(to_int(resource_id[:16]))

    def successors(self) -> list[bytes]:
        return [to_id(p) for p in self.topo.successors()]

    def predecessors(self) -> list[bytes]:
        return [to_id(p) for p in self.topo.predecessors()]

    def fingers(self) -> list[bytes]:
        return [to_id(p) for p in self.topo.fingers()]

    def add_topology_listener(self, cb: TopologyListener) -> None:
        """`cb()` runs whenever the neighbor table (and so the responsible range) changes."""
        self._listeners.append(cb)

    def status(self) -> dict[str, Any]:
        links = []
        for peer, ls in sorted(self._links.items()):
            srtt = next((lk.state.srtt for lk in ls if lk.state.srtt is not None), None)
            links.append({"peer": peer.hex(),
                          "rtt_ms": None if srtt is None else round(srtt * 1000, 3)})
        return {
            "node_id": self.node_id.hex(),
            "listen": f"{self._address[0]}:{self._address[1]}" if self._address else None,
            "joined": self.protocol.joined,
            "predecessors": [p.hex() for p in self.predecessors()],
            "successors": [p.hex() for p in self.successors()],
            "fingers": [p.hex() for p in self.fingers()],
            "links": links,
            "listener": self.listener.status(),
            "hops": dict(sorted(self.hop_counts.items())),
        }

    # --- requests for this node ---------------------------------------------------------------

    async def _handle(self, link: Link | None, rx: Received) -> OutgoingBody | None:
        body = rx.body
        code = rx.message.code
        if code in STORAGE_BODIES:
            if self.storage is None:
                return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "this node stores nothing")
            r = self.storage.handle(rx, time.time())
            return await r if asyncio.iscoroutine(r) else r  # type: ignore[return-value]
        if isinstance(body, m.AppAttachReqAns):
            return self._on_app_attach(body)
        if isinstance(body, m.ProbeReq):
            self.protocol.resource_count = int(getattr(self.storage, "resource_count", 0) or 0)
        signer = rx.signer.node_id if rx.signer is not None else None
        answer, actions = self.protocol.on_request(
            body, signer=signer, direct_peer=self._direct_peer(link, rx),
            link_peer=None if link is None else link.peer_node_id, now=self._now(),
            wall=time.time())
        self._run(actions)
        return answer

    def _direct_peer(self, link: Link | None, rx: Received) -> bytes | None:
        """The peer that signed a request sent straight over `link` (Join/Leave/Update)."""
        if link is None or rx.signer is None or rx.message.header.via_list:
            return None
        return link.peer_node_id if link.peer_node_id in rx.signer.node_ids else None

    def _on_app_attach(self, body: m.AppAttachReqAns) -> m.Body:
        addr = self.app_attach_cb(body.application) if self.app_attach_cb else None
        return self.protocol.app_attach_answer(body, addr)

    # --- carrying out the protocol's actions --------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendRequest):
                self.transport.spawn(self._send(a))
            elif isinstance(a, Connect):
                self.transport.spawn(self._connect(a))
            elif isinstance(a, CloseLinks):
                self.transport.close_links(a.peer, a.reason)
            elif isinstance(a, SetTimer):
                if not self._stopping:
                    self._arm(a)
            elif isinstance(a, TopologyChanged):
                for cb in list(self._listeners):
                    try:
                        cb()
                    except Exception:
                        log.exception("topology listener failed")
            elif isinstance(a, JoinDone):
                self._join_done(a)

    def _arm(self, a: SetTimer) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            if self._stopping:
                return
            try:
                self._run(self.protocol.on_timer(a.kind, a.key, loop.time()))
            except Exception:  # a bug in one round must not end the maintenance for good
                log.exception("%s: timer %s failed", self.node_id.hex()[:8], a.kind.name)
                if a.kind is TimerKind.MAINTENANCE:
                    self._run(self.protocol.start_maintenance(loop.time()))

        handle = loop.call_at(a.at, fire)
        self._timers.add(handle)

    def _join_done(self, done: JoinDone) -> None:
        if self._join_waiter is not None and not self._join_waiter.done():
            self._join_waiter.set_result(done)
            return
        if not done.ok:  # a re-join from the maintenance timer (§10.7.4.1)
            log.info("%s: re-join failed: %s", self.node_id.hex()[:8], done.reason)
            self.protocol.rejoin_failed()

    async def _send(self, a: SendRequest) -> None:
        try:
            rx = await self.transport.request(a.dests, a.body, a.timeout)
        except ReloadRequestError as e:
            log.debug("%s: %s request failed: %s", self.node_id.hex()[:8], a.purpose.name, e)
            self._run(self.protocol.on_request_failed(a.token, e.error_code, e.info,
                                                      self._now()))
            return
        except Exception as e:  # a bug here must not leave the protocol waiting for ever
            log.exception("%s: %s request failed", self.node_id.hex()[:8], a.purpose.name)
            self._run(self.protocol.on_request_failed(a.token, m.ErrorCode.INVALID_MESSAGE,
                                                      repr(e), self._now()))
            return
        signer = rx.signer.node_id if rx.signer is not None else None
        self._run(self.protocol.on_answer(a.token, signer, rx.body, self._now()))

    async def _connect(self, a: Connect) -> None:
        try:
            link = await self.transport.connect(a.host, a.port, a.peer)
        except (OSError, TimeoutError, ReloadSecurityError, ValueError, ConnectionError) as e:
            log.info("%s: %s connection to %s:%d failed: %s", self.node_id.hex()[:8],
                     a.purpose.name, a.host, a.port, e)
            self._run(self.protocol.on_connect_failed(a.token, f"{a.host}:{a.port}: {e!r}",
                                                      self._now()))
            return
        self._run(self.protocol.on_connected(a.token, link.peer_node_id, self._now()))

    def _link_up(self, peer: bytes) -> None:
        self._run(self.protocol.on_link_up(peer, self._now()))

    def _link_down(self, peer: bytes) -> None:
        self._run(self.protocol.on_link_down(peer, self._now()))
