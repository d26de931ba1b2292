"""Helpers for in-process RELOAD overlays on loopback with real TLS (node tests, bench)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import stop_all
from vipr.reload import ca
from vipr.reload.aio.node import ChordTimers, ReloadNode
from vipr.reload.core.topology import dist, to_int
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.security import NodeCredentials, TrustStore

OVERLAY = "vipr-test.example.org"

FAST = ChordTimers(update_interval=3.0, ping_interval=6.0, reliability_timer=0.5,
                   max_transmissions=4, attach_timeout=3.0, join_timeout=30.0,
                   link_dead_after=5.0, tombstone=10.0)


@dataclass
class Overlay:
    """A CA, a pool of node credentials, and the running nodes."""

    directory: Path
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    creds: list[NodeCredentials]
    nodes: list[ReloadNode] = field(default_factory=list)
    changed: asyncio.Event | None = None

    def trust(self) -> TrustStore:
        return TrustStore([self.ca_cert], overlay=OVERLAY)

    def make_node(self, creds: NodeCredentials, *, create: bool = False,
                  timers: ChordTimers = FAST, trust: TrustStore | None = None,
                  **kw: object) -> ReloadNode:
        files = creds.write(self.directory, creds.node_id.hex())
        ctx = ReloadContext(OVERLAY, creds, trust or self.trust(), configuration_sequence=1)
        boot = [] if create or not self.nodes else [self.nodes[0].address]
        node = ReloadNode(context=ctx, creds_files=files, bootstrap=boot, create=create,
                          timers=timers, **kw)  # type: ignore[arg-type]
        node.add_topology_listener(self._poke)
        return node

    def _poke(self) -> None:
        if self.changed is not None:
            self.changed.set()

    async def start(self, n: int, **kw: object) -> list[ReloadNode]:
        self.changed = asyncio.Event()
        for c in self.creds[len(self.nodes) : len(self.nodes) + n]:
            node = self.make_node(c, create=not self.nodes, **kw)  # type: ignore[arg-type]
            await node.start()
            self.nodes.append(node)
        return self.nodes

    def live(self) -> list[ReloadNode]:
        return [n for n in self.nodes if n.joined]

    def wrong(self, nodes: Sequence[ReloadNode] | None = None) -> list[str]:
        """Nodes whose first successor/predecessor is not the true one."""
        live = list(nodes if nodes is not None else self.live())
        ids = sorted(n.node_id for n in live)
        out = []
        for n in live:
            k = ids.index(n.node_id)
            succ, pred = ids[(k + 1) % len(ids)], ids[k - 1]
            s, p = n.successors(), n.predecessors()
            if not s or s[0] != succ or not p or p[0] != pred:
                out.append(n.node_id.hex()[:8])
        return out

    async def converge(self, timeout: float, nodes: Sequence[ReloadNode] | None = None) -> float:
        """Wait (event-driven, bounded) until every live node has the true neighbors."""
        assert self.changed is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while self.wrong(nodes):
            left = timeout - (loop.time() - t0)
            if left <= 0:
                raise AssertionError(f"not converged after {timeout}s: {self.wrong(nodes)}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return loop.time() - t0

    async def stop_all(self) -> None:
        """Stop every node (bounded); fails loudly if any stop raised or hung."""
        await stop_all((n.stop(leave=False) for n in self.nodes), timeout=30, what="nodes")


def make_overlay(directory: Path, n: int) -> Overlay:
    ca_cert, ca_key = ca.create_ca(OVERLAY)
    creds = [ca.issue_node_cert(ca_cert, ca_key, OVERLAY, f"n{i}@provider.example")
             for i in range(n)]
    return Overlay(directory, ca_cert, ca_key, creds)


def true_owner(nodes: Sequence[ReloadNode], key: bytes) -> ReloadNode:
    k = to_int(key)
    return min(nodes, key=lambda n: dist(k, to_int(n.node_id)))
