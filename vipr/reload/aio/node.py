"""asyncio RELOAD peer over CHORD-RELOAD (RFC 6940 §10) and TLS-TCP-FH-NO-ICE links (§6.6).

`ChordTopology` (chord.py) is the sans-I/O core, `NodeTransport` (node_transport.py) the links
and routing; this adds join/update/leave (§10.5–§10.9), failure repair, and dispatch
of Store/Fetch/Stat/Find to a storage plug-in and of AppAttach (§6.5.2) to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vipr.limits import OVERLAY_LIMITS, ListenerLimits
from vipr.listen_error import listen_error
from vipr.reload.aio.link import Link, Listener, serve
from vipr.reload.aio.transport import NodeTransport, key_of
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
from vipr.reload.core.topology import TableChange, finger_target, to_id, to_int
from vipr.reload.wire import bodies as m
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.forwarding import (
    Destination,
    NodeDestination,
    ResourceDestination,
)
from vipr.reload.wire.security import ReloadSecurityError
from vipr.reload.wire.storage_bodies import STORAGE_BODIES

__all__ = ["AppAttachCallback", "ChordTimers", "HostPort", "ReloadJoinError", "ReloadNode",
           "ReloadRequestError", "StorageHandler", "TopologyListener"]

log = logging.getLogger("vipr.reload.aio.node")


class ReloadNode(NodeTransport):
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
    ) -> None:
        super().__init__(context, creds_files, timers, max_message_size)
        self.listener = Listener(limits)  # DESIGN §10: caps of this node's listener
        self.listen = listen
        self.bootstrap = tuple(bootstrap)
        self.create = create
        self.storage = storage
        self.app_attach_cb = app_attach
        self._ready_events: dict[bytes, asyncio.Event] = {}
        self._server: asyncio.Server | None = None
        self._address: HostPort | None = None
        self._attaching: dict[int, asyncio.Task[Any]] = {}
        self._listeners: list[TopologyListener] = []
        self._replied: dict[bytes, float] = {}
        self._update_pending = False
        self._started = time.monotonic()
        self._had_peers = False
        self._peer_addrs: dict[bytes, HostPort] = {}  # listen addresses learned from Attach
        self.prune = prune
        self.advertise_host = advertise_host

    # --- public API --------------------------------------------------------------------------

    @property
    def address(self) -> HostPort:
        """The bound listen address (after `start`)."""
        if self._address is None:
            raise RuntimeError("node not started")
        return self._address

    @property
    def joined(self) -> bool:
        return self._joined

    async def start(self) -> None:
        """Listen; join through a bootstrap node unless `create`; returns when joined."""
        self._started = time.monotonic()
        try:
            self._server = await serve(self.listen[0], self.listen[1], self.creds_files,
                                       self.context.trust, self._add_link,
                                       listener=self.listener, **self._link_kwargs())
        except OSError as exc:
            raise listen_error("overlay link", self.listen[0], self.listen[1], exc) from exc
        sock = self._server.sockets[0].getsockname()
        self._address = (sock[0], sock[1])
        if self.create:
            if self.bootstrap:  # a restarted creator re-joins the overlay that still runs
                try:
                    await asyncio.wait_for(self._join(), min(self.timers.join_timeout,
                                                             2 * self.timers.attach_timeout))
                except Exception as e:  # nobody there: we create the ring (below)
                    log.info("%s: no overlay to re-join (%r): creating it",
                             self.node_id.hex()[:8], e)
            if not self._joined:  # §11.4: nobody reachable: the first node owns the ring
                self._joined = True
                self._changed(TableChange(True))
        else:
            try:
                await asyncio.wait_for(self._join(), self.timers.join_timeout)
            except ReloadJoinError:
                await self.stop(leave=False)
                raise
            except Exception as e:  # timeout, Error answer, TLS refused, …
                await self.stop(leave=False)
                raise ReloadJoinError(f"join failed: {e!r}") from e
        self._spawn(self._maintenance())

    async def stop(self, *, leave: bool = True, leave_timeout: float | None = None) -> None:
        """Leave (§10.9) unless `leave=False` (simulated crash), close links and the listener.
        The Leave waits at most `leave_timeout` (default: the attach timeout)."""
        if self._stopping:
            return
        if leave and self._joined:
            wait = self.timers.attach_timeout if leave_timeout is None else leave_timeout
            try:
                await asyncio.wait_for(self._leave(), wait)
            except TimeoutError:
                log.info("%s: Leave not answered within %.3g s", self.node_id.hex()[:8], wait)
        self._stopping = True
        self._joined = False
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*(link.close("node stopped") for links in list(self._links.values())
                               for link in list(links)), return_exceptions=True)
        await self._tx.close()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                log.warning("%s: listener did not close within 2 s", self.node_id.hex()[:8])

    async def request(self, destination: bytes, body: Any, *,
                      timeout: float | None = None) -> Received:
        """Route `body` to the node responsible for the 16-byte Resource-ID `destination`."""
        return await self._request((ResourceDestination(destination),), body, timeout)

    async def request_direct(self, node_id: bytes, body: Any, *,
                             timeout: float | None = None) -> Received:
        """Send `body` to the peer `node_id` (a Node-ID destination; routed if not linked)."""
        return await self._request((NodeDestination(node_id),), body, timeout)

    async def app_attach(self, peer_id: bytes, application: int, *,
                         timeout: float | None = None) -> HostPort:
        """§6.5.2 AppAttach to `peer_id`; returns the answer's host candidate address."""
        body = m.AppAttachReqAns(os.urandom(4).hex().encode(), os.urandom(8).hex().encode(),
                                 application, b"passive", (self._candidate(),))
        rx = await self._request((NodeDestination(peer_id),), body, timeout)
        ans = rx.body
        if not isinstance(ans, m.AppAttachReqAns) or not ans.candidates:
            raise ReloadRequestError(m.ErrorCode.INVALID_MESSAGE, "AppAttachAns without candidate")
        ap = ans.candidates[0].addr_port
        return (ap.host, ap.port)

    def is_responsible(self, resource_id: bytes) -> bool:
        """True if this node owns `resource_id` (in (predecessor, self])."""
        return self._joined and self.topo.responsible(to_int(resource_id[:16]))

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
            "joined": self._joined,
            "predecessors": [p.hex() for p in self.predecessors()],
            "successors": [p.hex() for p in self.successors()],
            "fingers": [p.hex() for p in self.fingers()],
            "links": links,
            "listener": self.listener.status(),
            "hops": dict(sorted(self.hop_counts.items())),
        }

    def _candidate(self) -> m.IceCandidate:
        host, port = self.address
        host = self.advertise_host or host  # a wildcard listen address is no candidate
        return m.IceCandidate(m.IpAddressPort(host, port))  # §6.5.1.1 No-ICE host candidate

    # --- request handlers --------------------------------------------------------------------

    async def _handle(self, link: Link | None, rx: Received) -> Any:
        body = rx.body
        code = rx.message.code
        if code in STORAGE_BODIES:
            if self.storage is None:
                return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "this node stores nothing")
            r = self.storage.handle(rx, time.time())
            return await r if asyncio.iscoroutine(r) else r
        if isinstance(body, m.PingReq):
            return m.PingAns(random.getrandbits(64), int(time.time() * 1000))
        if isinstance(body, m.ProbeReq):
            return self._probe(body)
        if isinstance(body, m.AttachReqAns):
            return self._on_attach(rx, body)
        if isinstance(body, m.AppAttachReqAns):
            return self._on_app_attach(body)
        if isinstance(body, m.RouteQueryReq):
            return self._on_route_query(link, body)
        if isinstance(body, m.ChordUpdate):
            return self._on_update(link, rx, body)
        if isinstance(body, m.JoinReq):
            return self._on_join(link, rx, body)
        if isinstance(body, m.LeaveReq):
            return self._on_leave(link, rx, body)
        if isinstance(body, m.ConfigUpdateReq):
            return m.EmptyBody()
        return m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "unexpected request")

    def _direct_peer(self, link: Link | None, rx: Received) -> bytes | None:
        """The peer that signed a request sent straight over `link` (Join/Leave/Update)."""
        if link is None or rx.signer is None or rx.message.header.via_list:
            return None
        return link.peer_node_id if link.peer_node_id in rx.signer.node_ids else None

    def _probe(self, body: m.ProbeReq) -> m.ProbeAns:
        vals = {m.PROBE_RESPONSIBLE_SET: self.topo.responsible_ppb(),
                m.PROBE_NUM_RESOURCES: int(getattr(self.storage, "resource_count", 0) or 0),
                m.PROBE_UPTIME: self._uptime()}
        return m.ProbeAns(tuple(m.ProbeInformation(t, vals[t]) for t in body.requested_info
                                if t in vals))

    def _on_attach(self, rx: Received, body: m.AttachReqAns) -> Any:
        peer = rx.signer.node_id if rx.signer is not None else None
        cand = next((c for c in body.candidates
                     if c.overlay_link == m.LINK_TLS_TCP_FH_NO_ICE), None)
        if peer is not None:
            self._wanted_by.add(peer)  # it wants a connection to us: never prune it
        if peer is None or cand is None:
            return m.ErrorResponse.text(m.ErrorCode.INCOMPATIBLE_WITH_OVERLAY,
                                        "need a TLS-TCP-FH-NO-ICE host candidate")
        if peer == self.node_id:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "attach to self")
        # §6.5.1: we answer "active" and open the TLS connection to the offered candidate.
        self._peer_addrs[peer] = (cand.addr_port.host, cand.addr_port.port)
        self._spawn(self._attach_back(peer, cand.addr_port.host, cand.addr_port.port,
                                      body.send_update))
        return m.AttachReqAns(os.urandom(4).hex().encode(), os.urandom(8).hex().encode(),
                              b"active", (self._candidate(),), body.send_update)

    async def _attach_back(self, peer: bytes, host: str, port: int, send_update: bool) -> None:
        if self._link(peer) is None:
            try:
                await self._connect(host, port, peer)
            except (OSError, TimeoutError, ReloadSecurityError, ValueError) as e:
                log.info("%s: attach-back to %s failed: %s", self.node_id.hex()[:8],
                         peer.hex()[:8], e)
                return
        if send_update:
            await self._send_update(peer)

    def _on_app_attach(self, body: m.AppAttachReqAns) -> Any:
        addr = self.app_attach_cb(body.application) if self.app_attach_cb else None
        if addr is None:
            return m.ErrorResponse.text(m.ErrorCode.NOT_FOUND,
                                        f"no application {body.application}")
        return m.AppAttachReqAns(os.urandom(4).hex().encode(), os.urandom(8).hex().encode(),
                                 body.application, b"active",
                                 (m.IceCandidate(m.IpAddressPort(addr[0], addr[1])),))

    def _on_route_query(self, link: Link | None, body: m.RouteQueryReq) -> Any:
        key = key_of(body.destination)
        if key is None:
            return m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "bad destination")
        hop = None if self._owns(key) else self.topo.next_hop(key)
        if body.send_update and link is not None:  # §10.8: a full Update right after
            self._spawn(self._send_update(link.peer_node_id))
        return m.ChordRouteQueryAns(self.node_id if hop is None else to_id(hop))

    def _on_update(self, link: Link | None, rx: Received, upd: m.ChordUpdate) -> Any:
        peer = self._direct_peer(link, rx)
        if peer is None:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "Update must come from the peer")
        now = self._now()
        self._changed(self.topo.add_ready(to_int(peer)))
        ev = self._ready_events.pop(peer, None)
        if ev is not None:
            ev.set()
        for c in self.topo.candidates_from_update(upd, now):
            self._start_attach(c, via=peer)
        # A peer that is not our neighbor has a view of our region that may be wrong (after
        # failures): answer with our tables so it can repair itself (§10.7.4.1 "pull").
        if (self._joined and to_int(peer) not in self.topo.neighbors()
                and now - self._replied.get(peer, -1e9) > self.timers.update_interval / 4):
            self._replied[peer] = now
            self._spawn(self._send_update(peer))
        return m.EmptyBody()

    def _on_join(self, link: Link | None, rx: Received, body: m.JoinReq) -> Any:
        peer = self._direct_peer(link, rx)
        if peer is None or peer != body.joining_peer_id or not self._joined:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "Join must come from the joiner")
        self._changed(self.topo.add_ready(to_int(peer)))  # §10.5: JN becomes our predecessor
        return m.JoinAns()

    def _on_leave(self, link: Link | None, rx: Received, body: m.LeaveReq) -> Any:
        peer = self._direct_peer(link, rx)
        if peer is None or peer != body.leaving_peer_id:
            return m.ErrorResponse.text(m.ErrorCode.FORBIDDEN, "Leave must come from the peer")
        now = self._now()
        self._changed(self.topo.remove(to_int(peer), now))  # §10.9: like a failure
        with contextlib.suppress(ReloadDecodeError):
            for c in self.topo.candidates(body.leave_data().node_ids, now):
                self._start_attach(c, via=None)
        return m.EmptyBody()

    # --- topology maintenance ----------------------------------------------------------------

    def _changed(self, ch: TableChange) -> None:
        if ch.added or ch.removed:
            self._had_peers = self._had_peers or bool(self.topo.ready)
        if not ch.neighbors_changed:
            return
        for cb in list(self._listeners):
            try:
                cb()
            except Exception:
                log.exception("topology listener failed")
        if self._joined and not self._update_pending:  # §10.7.2 reactive recovery
            self._update_pending = True
            self._spawn(self._reactive_update())

    async def _reactive_update(self) -> None:
        await asyncio.sleep(0)  # coalesce the changes of this loop iteration
        self._update_pending = False
        # §10.7.2 says "every member of the Connection Table"; the neighbors are the ones whose
        # tables depend on ours (fingers are refreshed separately), which keeps a join O(log N).
        await self._update_all(self.topo.neighbors())

    async def _update_all(self, peers: set[int]) -> None:
        await asyncio.gather(*(self._send_update(to_id(p)) for p in peers))

    async def _send_update(self, peer: bytes) -> None:
        if self._stopping:
            return
        upd = self.topo.make_update(self._uptime())
        with contextlib.suppress(ReloadRequestError):
            await self._request((NodeDestination(peer),), upd, self.timers.attach_timeout)

    def _start_attach(self, peer: int, via: bytes | None) -> None:
        if peer in self._attaching or self._stopping:
            return
        dests: tuple[Destination, ...] = (NodeDestination(to_id(peer)),)
        if via is not None and self._link(to_id(peer)) is None:
            dests = (NodeDestination(via), *dests)  # §10.5: source-routed via the informant
        task = self._spawn(self._attach(dests))
        self._attaching[peer] = task
        task.add_done_callback(lambda _t: self._attaching.pop(peer, None))

    async def _attach(self, dests: tuple[Destination, ...]) -> bytes | None:
        """§6.5.1 Attach (No-ICE): the answerer connects to us; we fall back to connecting."""
        body = m.AttachReqAns(os.urandom(4).hex().encode(), os.urandom(8).hex().encode(),
                              b"passive", (self._candidate(),), True)
        try:
            rx = await self._request(dests, body, self.timers.attach_timeout)
        except ReloadRequestError as e:
            log.debug("%s: attach failed: %s", self.node_id.hex()[:8], e)
            return None
        peer = rx.signer.node_id if rx.signer is not None else None
        ans = rx.body
        if peer is None or peer == self.node_id or not isinstance(ans, m.AttachReqAns):
            return None
        if ans.candidates:
            ap = ans.candidates[0].addr_port
            self._peer_addrs[peer] = (ap.host, ap.port)
        link = await self._wait_link(peer, min(2.0, self.timers.attach_timeout))
        if link is None and ans.candidates:
            ap = ans.candidates[0].addr_port
            with contextlib.suppress(OSError, TimeoutError, ReloadSecurityError, ValueError):
                await self._connect(ap.host, ap.port, peer)
        return peer

    async def _settle(self) -> None:
        while self._attaching:
            await asyncio.wait(list(self._attaching.values()))

    async def _join(self) -> None:
        """§10.5 / §11.4: bootstrap link, Attach to n+1, neighbors, fingers, Join, Updates."""
        boot_errors = []
        # §11.4: configured bootstrap nodes, then peers we were attached to (on re-join)
        cached = [a for a in self._peer_addrs.values() if a not in self.bootstrap][:10]
        for host, port in [*self.bootstrap, *cached]:
            try:
                link = await self._connect(host, port, None)
            except (OSError, TimeoutError, ReloadSecurityError, ValueError) as e:
                boot_errors.append(f"{host}:{port}: {e!r}")
                continue
            if link.peer_node_id != self.node_id:
                break
        else:
            raise ReloadJoinError(f"no bootstrap node reachable: {boot_errors}")
        me = to_int(self.node_id)
        ap = None
        for _ in range(3):  # the whole transaction may time out on a loaded overlay: retry
            ap = await self._attach((ResourceDestination(to_id(me + 1)),))
            if ap is not None or not self._links:  # answered, or the bootstrap link is gone
                break
        if ap is None:
            raise ReloadJoinError("no admitting peer answered the Attach")
        if to_int(ap) not in self.topo.ready:  # its Update (send_update) makes it ready
            ev = self._ready_events.setdefault(ap, asyncio.Event())
            try:
                await asyncio.wait_for(ev.wait(), self.timers.attach_timeout)
            except TimeoutError as e:
                raise ReloadJoinError("admitting peer sent no Update") from e
        await self._settle()
        await self._attach_fingers()
        await self._settle()
        succ = self.topo.successors()
        if succ:  # another peer may have joined between us and the first admitting peer
            ap = to_id(succ[0])
        for attempt in range(3):
            try:
                await self._request((NodeDestination(ap),), m.JoinReq(self.node_id),
                                    self.timers.attach_timeout)
                break
            except ReloadRequestError as e:
                if attempt == 2 or e.error_code != m.ErrorCode.REQUEST_TIMEOUT:
                    raise
        self._joined = True
        self._changed(TableChange(True))  # listeners + Update to every connection

    async def _attach_fingers(self, *, limit: int | None = None) -> None:
        """§10.7.4.3: Attach toward finger targets beyond our successor range."""
        if not self.topo.ready:
            return
        me = to_int(self.node_id)
        succ = self.topo.successors()
        span = (succ[-1] - me) % (1 << 128) if succ else 0
        idx = [i for i in self.topo.invalid_fingers()
               if (finger_target(me, i) - me) % (1 << 128) > span]
        if limit is not None:
            random.shuffle(idx)
            idx = idx[:limit]
        await asyncio.gather(*(self._attach((ResourceDestination(to_id(finger_target(me, i))),))
                               for i in idx))

    async def _leave(self) -> None:
        """§10.9: from_succ (our successors) to predecessors, from_pred to successors."""
        succ, pred = self.successors(), self.predecessors()
        reqs = [self._request((NodeDestination(p),), m.LeaveReq.chord(
            self.node_id, m.ChordLeaveData(m.LEAVE_FROM_SUCC, tuple(succ))), None) for p in pred]
        reqs += [self._request((NodeDestination(s),), m.LeaveReq.chord(
            self.node_id, m.ChordLeaveData(m.LEAVE_FROM_PRED, tuple(pred))), None)
            for s in succ if s not in pred]
        await asyncio.gather(*reqs, return_exceptions=True)

    async def _maintenance(self) -> None:
        """Periodic Update to the neighbors (§10.7.1), finger refresh, re-join when alone."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.timers.ping_interval
        while not self._stopping:
            await asyncio.sleep(self.timers.update_interval * random.uniform(0.9, 1.1))
            if not self.topo.ready and self._had_peers and (self.bootstrap or self._peer_addrs):
                try:  # §10.7.4.1: lost everyone: re-join
                    self._joined = False
                    self.topo.forget_failures()
                    await asyncio.wait_for(self._join(), self.timers.join_timeout)
                except Exception as e:
                    log.info("%s: re-join failed: %r", self.node_id.hex()[:8], e)
                if not self._joined:
                    self._joined = self.create
                continue
            try:
                await self._update_all(self.topo.neighbors())
                await self._prune()
                if loop.time() >= next_ping:
                    next_ping = loop.time() + self.timers.ping_interval
                    await self._attach_fingers(limit=2)
            except Exception:  # a bug in one round must not end the maintenance for good
                log.exception("%s: maintenance round failed", self.node_id.hex()[:8])

    async def _prune(self) -> None:
        """Close links we opened for peers that left our routing table (the Connection Table
        may hold more, §10.1, but unused links only cost descriptors and keep-alive traffic).
        Links a peer asked for with Attach stay: it may use us as neighbor or finger."""
        if not self._joined or not self.prune:
            return
        keep = self.topo.routing_table()
        now = self._now()
        for peer, links in list(self._links.items()):
            if (to_int(peer) in keep or peer in self._wanted_by
                    or now - self._link_born.get(peer, now) < 2 * self.timers.update_interval):
                continue
            self._pruned.add(peer)
            for link in list(links):
                await link.close("pruned: not in the routing table")

    # --- helpers -----------------------------------------------------------------------------

    def _link_lost(self, peer: bytes, pruned: bool) -> None:
        # §10.7.4.1 failure (a link we pruned ourselves is no failure: no tombstone)
        self._changed(self.topo.remove(to_int(peer), self._now(), failed=not pruned))

    def _uptime(self) -> int:
        return int(time.monotonic() - self._started) & 0xFFFFFFFF
