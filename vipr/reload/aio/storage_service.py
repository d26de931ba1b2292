"""The storage plug-in of a ReloadNode (asyncio shell around `DataStore` and the planner).

`StorageService.handle` answers StoreReq / FetchReq / StatReq / FindReq (RFC 6940 §7.4);
after an original Store it copies the resource to the next two successors (replica_number 1
and 2, §10.4). When the neighbor table changes it waits for the hold-down, then re-replicates
and hands off what it is no longer responsible for. `handoff()` runs before a Leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from vipr.reload.core.replication import DEFAULT_HOLD_DOWN, ReplicaAction, ReplicationPlanner
from vipr.reload.core.storage import DataStore, StorageError
from vipr.reload.wire.bodies import ErrorCode, ErrorResponse, OutgoingBody, WithCertificates
from vipr.reload.wire.context import Received
from vipr.reload.wire.security import message_certificates
from vipr.reload.wire.storage_bodies import FetchReq, FindReq, StatReq, StoreReq

log = logging.getLogger("vipr.reload.aio.storage_service")


class StorageNode(Protocol):
    """What the service needs from its node (vipr/reload/aio/node.py ReloadNode)."""

    node_id: bytes

    async def request(self, destination: bytes, body: OutgoingBody, *,
                      timeout: float | None = None) -> Received: ...

    async def request_direct(self, node_id: bytes, body: OutgoingBody, *,
                             timeout: float | None = None) -> Received: ...

    def is_responsible(self, resource_id: bytes) -> bool: ...

    def successors(self) -> list[bytes]: ...

    def add_topology_listener(self, cb: Callable[[], None]) -> None: ...


class StorageService:
    """One node's stored data, its Store/Fetch/Stat/Find answers and its replication."""

    def __init__(self, store: DataStore, *, hold_down: float = DEFAULT_HOLD_DOWN,
                 request_timeout: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.planner = ReplicationPlanner(hold_down)
        self.request_timeout = request_timeout
        self.clock = clock
        self.node: StorageNode | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.replicas_sent = 0
        self.replica_failures = 0
        self.fetch_hops: Counter[int] = Counter()  # overlay hops of the Fetches answered here

    def attach(self, node: StorageNode) -> None:
        """Bind to the node (after constructing it with `storage=self`) and start the loop."""
        self.node = node
        node.add_topology_listener(self._on_topology)
        self._loop_task = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None

    # ----------------------------------------------------------------- StorageHandler

    def handle(self, received: Received, now: float) -> OutgoingBody:
        body = received.body
        try:
            if isinstance(body, StoreReq):
                return self._store(received, body, now)
            if isinstance(body, FetchReq):
                self.fetch_hops[self._hops(received)] += 1
                ans, certs = self.store.fetch(body, now)
                return WithCertificates(ans, tuple(certs))
            if isinstance(body, StatReq):
                return self.store.stat(body, now)
            if isinstance(body, FindReq):
                return self.store.find(body, now)
        except StorageError as e:
            log.debug("storage refused: %s", e)
            return e.response()
        return ErrorResponse.text(ErrorCode.INVALID_MESSAGE, "not a storage request")

    def _plausible(self, received: Received) -> bool:
        """§7.4.1.1: a replica (or hand-off) Store must come from a peer of our neighbor
        table (the responsible peer before us, or the old owner after us)."""
        node = self.node
        signer = received.signer
        preds = getattr(node, "predecessors", None)
        if node is None or signer is None or preds is None:
            return True
        neighbors = set(preds()) | set(node.successors())
        return not neighbors or signer.node_id in neighbors

    def _hops(self, received: Received) -> int:
        """Links the request crossed: forwarders add the previous hop to the via list
        (§6.3.2.1), so a request from a direct neighbour has none; 0 = our own request."""
        via = received.message.header.via_list
        signer = received.signer
        if not via and signer is not None and self.node is not None \
                and signer.node_id == self.node.node_id:
            return 0
        return len(via) + 1

    def _store(self, received: Received, req: StoreReq, now: float) -> OutgoingBody:
        node = self.node
        responsible = node.is_responsible(req.resource) if node is not None else True
        succ = [s for s in node.successors() if s != node.node_id][:2] if node else []
        if req.replica_number > 0 and node is not None and not self._plausible(received):
            raise StorageError(ErrorCode.FORBIDDEN, "replica store from a non-neighbor")
        certs = message_certificates(received.message)
        ans = self.store.store(req, certs, now, request_signer=received.signer,
                               responsible=responsible, replicas=tuple(succ))
        if req.replica_number == 0 and node is not None:
            self.planner.stored(req.resource, succ)
            for i, t in enumerate(succ):
                self._spawn(ReplicaAction(req.resource, t, i + 1))
        elif node is not None and received.signer is not None:
            if responsible:  # a hand-off to us: replicate it onwards after the hold-down
                self.planner.retry(req.resource, now)
                self._wake.set()
            else:
                self.planner.received_from(req.resource, received.signer.node_id)
        return ans

    # ----------------------------------------------------------------- replication

    def _on_topology(self) -> None:
        self.planner.topology_changed(self.clock())
        self._run(replicate=False)  # hand-offs to a joining peer go out at once
        self._wake.set()

    def _spawn(self, action: ReplicaAction) -> None:
        t = asyncio.get_running_loop().create_task(self._send(action))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send(self, a: ReplicaAction) -> None:
        node = self.node
        if node is None:
            return
        out = self.store.replica_request(a.resource, a.replica_number, self.clock())
        if out is None:
            return
        req, certs = out
        body = WithCertificates(req, tuple(certs))
        try:
            if a.target is not None:
                await node.request_direct(a.target, body, timeout=self.request_timeout)
            else:
                ans = await node.request(a.resource, body, timeout=self.request_timeout)
                if ans.signer is None or ans.signer.node_id == node.node_id:
                    # routed back to us: the owner is not reachable yet; retry later
                    self.planner.retry(a.resource, self.clock())
                    self._wake.set()
                    return
            self.replicas_sent += 1
            log.debug("%s: %s → %s", node.node_id.hex()[:6], a.resource.hex()[:6],
                      a.target.hex()[:6] if a.target else "routed")
        except Exception as e:  # retried on the next plan
            self.replica_failures += 1
            self.planner.retry(a.resource, self.clock())
            self._wake.set()
            log.info("replica store of %s to %s failed: %r", a.resource.hex(),
                     a.target.hex() if a.target else "its owner", e)

    def run_plan(self) -> list[ReplicaAction]:
        return self._run(replicate=True)

    def _run(self, *, replicate: bool) -> list[ReplicaAction]:
        node = self.node
        if node is None or not getattr(node, "joined", True):
            return []
        self.store.expire(self.clock())
        preds = getattr(node, "predecessors", None)
        actions = self.planner.plan(self.store.resources(), node.is_responsible,
                                    node.successors(), preds() if preds else [],
                                    node.node_id, replicate=replicate)
        for a in actions:
            self._spawn(a)
        return actions

    async def _maintain(self) -> None:
        while True:
            due = self.planner.due_at()
            timeout = None if due is None else max(0.0, due - self.clock())
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancel() that arrives
            # as the event is set (close() then waited for ever; CPython gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self.planner.due(self.clock()):
                try:
                    self.run_plan()
                except Exception:  # one bad plan must not end replication for good
                    log.exception("replication plan failed")

    async def handoff(self) -> int:
        """Before leaving: copy what we are responsible for to our successor; waits for the
        Stores (bounded by the request timeout). Returns how many were sent."""
        node = self.node
        if node is None:
            return 0
        actions = self.planner.handoff_all(self.store.resources(), node.is_responsible,
                                           node.successors(), node.node_id)
        before = self.replicas_sent
        await asyncio.gather(*(self._send(a) for a in actions))
        return self.replicas_sent - before
