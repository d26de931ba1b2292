"""`vipr overlay`: the overlay daemon (DESIGN §2, §4).

Runs `overlay.nodes` RELOAD peers (or ceil(numbers / numbers_per_node)), each with its own
Node-ID from the provider's certificate and port `listen.port + i`; publishes every served
number under `N`, `COPY1N`, `COPY2N` (spread over the nodes, republished every
`republish_interval`; with several daemons of one provider on several hosts sharing one
PostgreSQL store, each publishes only its share: vipr.reload.aio.members), answers AppAttach
for Application-ID 61441 with the PVP address, and serves the local socket API (`publish`,
`lookup`, `attach`, `status`, CONTRACTS.md) on `<runtime_dir>/overlay.sock` from the start:
`status` says "joining" until the nodes have joined. SIGTERM: hand data off (≤ STOP_HANDOFF
s) and Leave (≤ STOP_LEAVE s) on every node at once, close the links, exit 0; a SIGTERM while
joining abandons the join at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from vipr.config import ProviderConfig
from vipr.daemon import notify_ready, on_reload, set_status, status_changed
from vipr.e164 import E164Error, normalize_e164
from vipr.ipc import IpcError, IpcServer
from vipr.logsetup import fields
from vipr.metrics import LOOKUP_SECONDS, LOOKUPS, watch_overlay
from vipr.reload.aio.capture import Capture
from vipr.reload.aio.members import FIRST_WAIT, OverlayMembers
from vipr.reload.aio.node import ChordTimers, ReloadNode
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher, lookup
from vipr.reload.core.shares import member_key, place, share
from vipr.reload.core.storage import DataStore
from vipr.reload.errors import ReloadError
from vipr.reload.overlay_config import (
    OverlayConfigError,
    OverlayConfiguration,
    check_answers_fit,
    load_overlay_config,
)
from vipr.reload.wire.bodies import PVP_APPLICATION_ID
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.security import (
    NodeCredentials,
    ReloadSecurityError,
    cert_node_ids,
    load_certificates,
)

log = logging.getLogger("vipr.overlay")

PUBLISH_CONCURRENCY = 16
RETRY_AFTER = 60.0  # republish sooner when some stores failed
JOIN_RETRY = 5.0
EXTRA_NODE_ATTEMPTS = 3
STOP_HANDOFF = 1.0  # seconds for the hand-off Stores on SIGTERM (then Leave anyway)
STOP_LEAVE = 0.5  # seconds for the Leave answers (§10.9; the peers also detect the failure)
LOOKUP_TIMEOUT = 4.0  # per copy: N, COPY1N, COPY2N stay under the 15 s callers allow


class DaemonState(StrEnum):
    """What `status` reports as "state"."""

    JOINING = "joining"
    RUNNING = "running"


class OverlayError(ReloadError):
    """The daemon cannot start (configuration, certificate)."""


class OverlayDaemon:
    def __init__(self, cfg: ProviderConfig, *, timers: ChordTimers | None = None,
                 hold_down: float | None = None,
                 node_factory: Callable[..., ReloadNode] = ReloadNode) -> None:
        self.cfg = cfg
        self.node_factory = node_factory
        oc = cfg.overlay
        if oc.configuration is None or oc.cert is None or oc.key is None:
            raise OverlayError("overlay.configuration, overlay.cert and overlay.key are required")
        try:
            # RFC 6940 §11.1: the document's signatures must chain to the CA of our own cert
            own = load_certificates(Path(oc.cert).read_bytes())
            self.conf: OverlayConfiguration = load_overlay_config(
                oc.configuration, member=own[0], chain=own[1:])
            check_answers_fit(self.conf)
            base = NodeCredentials.load(oc.cert, oc.key, overlay=self.conf.instance_name)
        except (OSError, OverlayConfigError, ReloadSecurityError, ValueError) as e:
            raise OverlayError(str(e)) from e
        self.trust = self.conf.trust_store()
        self.capture: Capture | None = None
        if oc.debug.capture.on:  # DESIGN §13: off by default, loudly on
            try:
                self.capture = Capture(oc.debug.capture)
            except OSError as e:
                raise OverlayError(f"overlay.debug.capture: {e}") from e
        self.creds, self.files = self._identities(base, oc.cert, oc.key,
                                                  cfg.overlay_node_count())
        self.timers = timers or ChordTimers.from_config(self.conf)
        self.hold_down = oc.replication_hold_down if hold_down is None else hold_down
        self.nodes: list[ReloadNode] = []
        self.services: list[StorageService] = []
        self.publishers: list[ViprPublisher] = []
        self.published = 0
        self.members = OverlayMembers(cfg.database, member_key(self.creds[0].node_id))
        self._placed: dict[str, int] = {}   # number → index of the publisher that stored it
        self._publish_lock = asyncio.Lock()
        self._ipc: IpcServer | None = None
        self._rr = 0
        self.state = DaemonState.JOINING  # → RUNNING once every node joined or gave up
        watch_overlay(self)

    def _identities(self, base: NodeCredentials, cert: Path, key: Path, want: int
                    ) -> tuple[list[NodeCredentials], list[tuple[Path, Path]]]:
        """Node i uses `<cert stem>-<i>.crt` (one Node-ID, `vipr ca issue --per-node`) when
        that file exists, else Node-ID i of the main certificate."""
        overlay = self.conf.instance_name
        ids = cert_node_ids(base.cert, overlay) or (base.node_id,)
        creds = [NodeCredentials(base.cert, base.key, ids[0], overlay, base.chain)]
        files = [(cert, key)]
        for i in range(1, want):
            own = cert.with_name(f"{cert.stem}-{i}{cert.suffix}")
            try:
                if own.exists():
                    creds.append(NodeCredentials.load(own, key, overlay=overlay))
                    files.append((own, key))
                    continue
            except (OSError, ReloadSecurityError, ValueError) as e:
                raise OverlayError(f"{own}: {e}") from e
            if i >= len(ids):
                log.warning("overlay wants %d nodes but only %d identities exist (%s): "
                            "running %d", want, i, cert, i)
                break
            if i == 1:
                log.warning("nodes share %s (several Node-IDs in one certificate); if they "
                            "cannot join, issue one certificate per node: vipr ca issue "
                            "--per-node", cert)
            creds.append(NodeCredentials(base.cert, base.key, ids[i], overlay, base.chain))
            files.append((cert, key))
        return creds, files

    # ------------------------------------------------------------------ lifecycle

    def _app_attach(self, application: int) -> tuple[str, int] | None:
        if application != PVP_APPLICATION_ID:
            return None
        return self.cfg.pvp.listen.host, self.cfg.pvp.listen.port

    def _bootstrap(self, i: int) -> list[tuple[str, int]]:
        listen = self.cfg.overlay.listen
        own = {(listen.host, listen.port + k) for k in range(len(self.creds))}
        boots = [(b.address, b.port) for b in self.conf.bootstrap_nodes
                 if (b.address, b.port) not in own]
        if i > 0:
            boots.insert(0, (listen.host, listen.port))
        return boots

    async def _start_node(self, i: int, stop: asyncio.Event) -> bool:
        """Start and join node i, retrying until it joins (True) or `stop` is set (False).
        Nodes after the first give up after EXTRA_NODE_ATTEMPTS (False): the provider then
        serves with fewer nodes rather than not at all."""
        cr = self.creds[i]
        ctx = ReloadContext(self.conf.instance_name, cr, self.trust,
                            configuration_sequence=self.conf.sequence,
                            initial_ttl=self.conf.initial_ttl, models=self.conf.models())
        svc = StorageService(DataStore(self.conf.kinds, self.trust), hold_down=self.hold_down)
        listen = self.cfg.overlay.listen
        create = self.cfg.overlay.create and i == 0
        attempt = 0
        while True:
            attempt += 1
            node = self.node_factory(context=ctx, creds_files=self.files[i],
                              listen=(listen.host, listen.port + i), bootstrap=self._bootstrap(i),
                              create=create, timers=self.timers, storage=svc,
                              app_attach=self._app_attach,
                              max_message_size=self.conf.max_message_size,
                              limits=self.cfg.overlay.limits)
            if self.capture is not None:
                node.tap = self.capture.pcap
                node.transport.keylog = self.capture.keylog
            try:
                if not await self._start_or_stop(node, stop):
                    await svc.close()
                    return False
                break
            except Exception as e:  # ReloadJoinError, OSError: bootstrap not up yet
                log.warning("node %s could not join: %r; retrying in %.0f s", cr.node_id.hex(),
                            e, JOIN_RETRY, extra=fields(node_id=cr.node_id.hex(),
                                                        outcome="retrying", reason=repr(e)))
                await self._stop_quietly(node)
                if i > 0 and attempt >= EXTRA_NODE_ATTEMPTS:
                    log.error("node %s (#%d) could not join after %d attempts: running "
                              "without it", cr.node_id.hex(), i, attempt)
                    await svc.close()
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), JOIN_RETRY)
                if stop.is_set():
                    await svc.close()
                    return False
        svc.attach(node)
        self.nodes.append(node)
        self.services.append(svc)
        self.publishers.append(ViprPublisher(node, self.cfg.provider.vservice,
                                             lifetime=self.cfg.overlay.record_lifetime))
        status_changed()
        log.info("node %s joined on %s:%d", cr.node_id.hex(), listen.host, listen.port + i,
                 extra=fields(node_id=cr.node_id.hex(), outcome="joined"))
        return True

    @staticmethod
    async def _start_or_stop(node: ReloadNode, stop: asyncio.Event) -> bool:
        """`node.start()` (listen and join), abandoned at once when `stop` is set (False): a
        SIGTERM while joining must not wait for the join timeout."""
        starting = asyncio.ensure_future(node.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if starting.done():
            starting.result()  # raises the join error
            return True
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await OverlayDaemon._stop_quietly(node)
        return False

    @staticmethod
    async def _stop_quietly(node: ReloadNode) -> None:
        """Close a node that never joined (its listener and links); failures are logged."""
        try:
            await node.stop(leave=False)
        except Exception as e:
            log.warning("closing node %s failed: %r", node.node_id.hex(), e)

    async def run(self, stop: asyncio.Event) -> None:
        self._ipc = IpcServer(self.cfg.socket_path("overlay"), {
            "publish": self.ipc_publish, "lookup": self.ipc_lookup,
            "attach": self.ipc_attach, "status": self.ipc_status})
        set_status(self.status_line)
        warn = (asyncio.create_task(self.capture.warn_while_on(stop))
                if self.capture is not None else None)
        try:
            # the socket answers while the nodes join: `status` says "joining" (issue 13)
            await self._ipc.start()
            on_reload(self.apply_config)   # SIGHUP (vipr.hot_reload)
            for i in range(len(self.creds)):
                if not await self._start_node(i, stop) and (i == 0 or stop.is_set()):
                    return
            self.state = DaemonState.RUNNING
            notify_ready(f"{len(self.nodes)} RELOAD nodes")
            members = asyncio.create_task(self.members.run(stop))
            publisher = asyncio.create_task(self._publish_loop(stop))
            await stop.wait()
            publisher.cancel()
            await asyncio.gather(publisher, members, return_exceptions=True)
        finally:
            await self.shutdown()
            if warn is not None:
                warn.cancel()
            if self.capture is not None:
                self.capture.close()

    async def shutdown(self) -> None:
        """Hand data off, Leave, close: every node at once, each step bounded (a hung peer
        must not hold a SIGTERM up; the ring repairs itself from failures, §10.7.4)."""
        if self._ipc is not None:
            await self._ipc.close()
            self._ipc = None
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(svc.handoff(), STOP_HANDOFF) for svc in self.services),
            return_exceptions=True)
        for o in outcomes:
            if isinstance(o, BaseException):
                log.info("hand-off before leaving incomplete: %r", o)
        stops = await asyncio.gather(
            *(node.stop(leave=True, leave_timeout=STOP_LEAVE) for node in self.nodes),
            return_exceptions=True)
        for e in stops:
            if isinstance(e, BaseException):
                log.warning("node stop failed: %r", e)
        for svc in self.services:
            await svc.close()
        self.nodes.clear()
        self.services.clear()

    # ------------------------------------------------------------------ publishing

    async def publish_all(self) -> tuple[int, int]:
        """Publish this daemon's share of the served numbers (all of them unless other
        daemons of the provider are live, DESIGN §12) and withdraw the claims it no longer
        owns; returns (numbers stored, numbers with a failed copy)."""
        async with self._publish_lock:
            numbers = share(self.cfg.numbers, self.members.live, self.members.me)
            placed, withdraw = place(numbers, self._placed, len(self.publishers))
            self._placed = placed
            sem = asyncio.Semaphore(PUBLISH_CONCURRENCY)
            done: list[tuple[str, int]] = []

            async def one(number: str) -> None:
                async with sem:
                    ok = await self.publishers[placed[number]].publish(number)
                done.append((number, ok))

            async def drop(number: str, i: int) -> None:
                async with sem:
                    await self.publishers[i].withdraw(number)

            await asyncio.gather(*(one(n) for n in numbers),
                                 *(drop(n, i) for n, i in withdraw.items()))
            if withdraw:
                log.info("withdrew %d claim(s) now published elsewhere", len(withdraw))
            stored = [n for n, ok in done if ok]
            await self._record(stored)
            self.published = len(stored)
            status_changed()
            partial = sum(1 for _, ok in done if ok < 3)
            log.info("published %d of %d numbers (%d incomplete)", len(stored), len(numbers),
                     partial, extra=fields(outcome="incomplete" if partial else "complete"))
            return len(stored), partial

    async def _record(self, numbers: list[str]) -> None:
        """Note the published numbers in the store (DESIGN §8 published_number)."""
        try:
            from vipr.store import Store
            from vipr.store.models import PublishedNumber

            now = time.time()
            exp = now + self.cfg.overlay.record_lifetime
            async with Store.open(self.cfg.database) as st:
                for n in numbers:
                    await st.set_published(PublishedNumber(n, self.cfg.provider.vservice,
                                                           now, exp))
        except Exception as e:  # the store is a record, not needed to serve
            log.warning("cannot record published numbers in %s: %r", self.cfg.database, e)

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):   # our share needs the live members first
            await asyncio.wait_for(self.members.ready.wait(), FIRST_WAIT)
        while not stop.is_set():
            self.members.changed.clear()
            _, partial = await self.publish_all()
            wait = self.cfg.overlay.republish_interval
            if partial:
                wait = min(wait, RETRY_AFTER)
            woken = {asyncio.ensure_future(stop.wait()),
                     asyncio.ensure_future(self.members.changed.wait())}
            try:   # a member joined or left: publish the new share at once
                await asyncio.wait(woken, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in woken:
                    w.cancel()

    async def apply_config(self, cfg: ProviderConfig) -> None:
        """SIGHUP (`vipr.hot_reload`): publish the numbers added and withdraw those removed
        (RFC 6940 §7.2: a store with exists=false deletes our claim); `record_lifetime` for
        the next stores, `republish_interval` from the next round. Node identities, listeners
        and the overlay document were kept by `keep_fixed`."""
        old = self.cfg.numbers
        self.cfg = cfg
        for pub in self.publishers:      # the next stores carry the new lifetime
            pub.lifetime = int(cfg.overlay.record_lifetime)
        if cfg.numbers == old:
            return
        removed = sorted(set(old) - set(cfg.numbers))
        log.info("numbers changed: %d served now, %d removed", len(cfg.numbers), len(removed))
        if self.state is not DaemonState.RUNNING or not self.publishers:
            return   # the publish loop publishes cfg.numbers once joined
        await self.withdraw(removed)
        await self.publish_all()

    async def withdraw(self, numbers: list[str]) -> None:
        """Delete our claims on `numbers`: under the key of the node that stored each one, or
        of every node for a number this daemon has not placed (published before a restart)."""
        async with self._publish_lock:
            sem = asyncio.Semaphore(PUBLISH_CONCURRENCY)

            async def one(pub: ViprPublisher, number: str) -> int:
                async with sem:
                    return await pub.withdraw(number)

            jobs = []
            for n in numbers:
                i = self._placed.pop(n, None)
                jobs += [one(p, n) for p in
                         (self.publishers if i is None else [self.publishers[i]])]
            await asyncio.gather(*jobs)
            try:
                from vipr.store import Store

                async with Store.open(self.cfg.database) as st:
                    for n in numbers:
                        await st.delete_published(n)
            except Exception as e:  # the store is a record, not needed to serve
                log.warning("cannot record withdrawn numbers in %s: %r", self.cfg.database, e)
            if numbers:
                log.info("withdrew %d numbers", len(numbers))

    def status_line(self) -> str:
        """STATUS= for systemd: joining, or joined with numbers published and neighbours."""
        if self.state is DaemonState.JOINING:
            return f"joining the overlay ({len(self.nodes)} of {len(self.creds)} nodes joined)"
        own = {n.node_id for n in self.nodes}
        neighbours = {p for n in self.nodes for p in (*n.predecessors(), *n.successors())
                      if p not in own}
        return (f"joined: {len(self.nodes)} nodes, {self.published} numbers published, "
                f"{len(neighbours)} neighbours")

    # ------------------------------------------------------------------ socket API

    def _node(self) -> ReloadNode:
        if not self.nodes:
            if self.state is DaemonState.JOINING:
                raise IpcError("joining", "the overlay is joining: no RELOAD node has joined yet")
            raise IpcError("unavailable", "no RELOAD node is running")
        self._rr = (self._rr + 1) % len(self.nodes)
        return self.nodes[self._rr]

    async def ipc_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self._node()   # "joining" / "unavailable" before any node can publish
        stored, _ = await self.publish_all()
        return {"published": stored}

    async def ipc_lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            number = normalize_e164(str(params.get("number", "")))
        except E164Error as e:
            raise IpcError("bad-request", f"number: {e}") from None
        node = self._node()
        t0 = time.perf_counter()
        try:
            r = await lookup(node, number, timeout=LOOKUP_TIMEOUT)
        except Exception:
            LOOKUPS.labels("error").inc()
            raise
        finally:
            LOOKUP_SECONDS.observe(time.perf_counter() - t0)
        LOOKUPS.labels("found" if r.claims else "not_found").inc()
        return r.as_json()

    async def ipc_attach(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            peer = bytes.fromhex(str(params.get("peer_id", "")))
            app = int(params.get("application", PVP_APPLICATION_ID))
        except ValueError:
            raise IpcError("bad-request", "peer_id must be 32 hex digits") from None
        if len(peer) != 16:
            raise IpcError("bad-request", "peer_id must be 32 hex digits")
        try:
            host, port = await self._node().app_attach(peer, app, timeout=15.0)
        except IpcError:
            raise
        except Exception as e:
            raise IpcError("unreachable", f"AppAttach to {peer.hex()}: {e}") from None
        return {"host": host, "port": port}

    async def ipc_status(self, params: dict[str, Any]) -> dict[str, Any]:
        nodes = []
        for node, svc in zip(self.nodes, self.services, strict=True):
            st = dict(node.status())
            st["stored"] = svc.store.entry_count()
            nodes.append(st)
        if self.state is DaemonState.JOINING:  # identities still joining (pvp reads own Node-IDs)
            listen = self.cfg.overlay.listen
            nodes += [{"node_id": cr.node_id.hex(), "joined": False,
                       "listen": f"{listen.host}:{listen.port + i}"}
                      for i, cr in enumerate(self.creds) if i >= len(self.nodes)]
        return {"state": self.state.value, "nodes": nodes, "published": self.published,
                "members": len(self.members.live), "member_key": self.members.me}


def run_overlay(cfg: ProviderConfig) -> None:
    """`vipr overlay --config F` (exits 1 on failure, 2 on configuration errors)."""
    from vipr.daemon import run_daemon

    try:
        daemon = OverlayDaemon(cfg)
    except OverlayError as e:
        import click

        click.echo(f"error: {cfg.path}: overlay: {e}", err=True)
        raise SystemExit(2) from None
    run_daemon("overlay", cfg, daemon.run, stop_timeout=30.0)
