"""In-memory peers for storage tests: an ideal ring, real signed RELOAD messages between them.

Every request and answer is encoded by the sender's `ReloadContext` and decoded + verified by
the receiver's, so certificates (and the stored-data certificates added to security blocks)
travel exactly as over TLS. Topology is ideal: the alive peers sorted by Node-ID.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vipr.reload.aio.storage_service import StorageService
from vipr.reload.core.node_api import ReloadRequestError
from vipr.reload.wire.bodies import ErrorResponse, MessageCode
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.forwarding import NodeDestination

MOD = 1 << 128


class RingRequestError(ReloadRequestError):
    """An Error answer or a dead peer, as the real node raises it."""


class MemRing:
    def __init__(self) -> None:
        self.nodes: dict[bytes, MemNode] = {}
        self.alive: set[bytes] = set()
        self.messages = 0

    def add(self, node: MemNode) -> None:
        self.nodes[node.node_id] = node
        self.alive.add(node.node_id)
        self.changed()

    def kill(self, node_id: bytes) -> None:
        self.alive.discard(node_id)

    def changed(self) -> None:
        for nid in self.alive:
            self.nodes[nid].notify()

    def ring(self) -> list[bytes]:
        return sorted(self.alive)

    def responsible(self, rid: bytes) -> bytes:
        r = self.ring()
        x = int.from_bytes(rid, "big")
        for nid in r:
            if int.from_bytes(nid, "big") >= x:
                return nid
        return r[0]

    def deliver(self, sender: MemNode, target: bytes, body: Any) -> Received:
        if target not in self.alive:
            raise RingRequestError(4, "peer dead")
        self.messages += 1
        _, data = sender.context.request(body, (NodeDestination(target),))
        recv = self.nodes[target]
        rq = recv.context.decode(data)
        ans = recv.service.handle(rq, time.time())
        out = recv.context.answer(rq.message, ans)
        got = sender.context.decode(out)
        if got.message.code == MessageCode.ERROR:
            assert isinstance(got.body, ErrorResponse)
            raise RingRequestError(got.body.error_code, got.body.info_text())
        return got


class MemNode:
    def __init__(self, ring: MemRing, context: ReloadContext, service: StorageService) -> None:
        self.ring = ring
        self.context = context
        self.node_id = context.node_id
        self.service = service
        self._listeners: list[Callable[[], None]] = []

    def notify(self) -> None:
        for cb in self._listeners:
            cb()

    async def request(self, destination: bytes, body: Any, *,
                      timeout: float | None = None) -> Received:
        return self.ring.deliver(self, self.ring.responsible(destination), body)

    async def request_direct(self, node_id: bytes, body: Any, *,
                             timeout: float | None = None) -> Received:
        return self.ring.deliver(self, node_id, body)

    def is_responsible(self, resource_id: bytes) -> bool:
        return self.ring.responsible(resource_id) == self.node_id

    def successors(self) -> list[bytes]:
        r = self.ring.ring()
        if self.node_id not in r:
            return []
        i = r.index(self.node_id)
        return [r[(i + k) % len(r)] for k in range(1, min(4, len(r)))]

    def predecessors(self) -> list[bytes]:
        r = self.ring.ring()
        if self.node_id not in r:
            return []
        i = r.index(self.node_id)
        return [r[(i - k) % len(r)] for k in range(1, min(4, len(r)))]

    def add_topology_listener(self, cb: Callable[[], None]) -> None:
        self._listeners.append(cb)
