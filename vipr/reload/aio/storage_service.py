"""The storage plug-in of a ReloadNode: the asyncio carrier of `StorageProtocol`.

What to answer and which replica Stores to send is decided by the sans-I/O `StorageProtocol`
(core/storage_protocol.py, over `DataStore` and `ReplicationPlanner`). This shell feeds it the
requests the node delivers (`handle`), the node's topology changes and its REPLICATION timer,
sends the Stores it asks for through the node and reports their outcome back. `handoff()`
runs before a Leave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from vipr.reload.core.chord_protocol import Action, SendRequest, SetTimer, TimerKind
from vipr.reload.core.replication import DEFAULT_HOLD_DOWN, ReplicationPlanner
from vipr.reload.core.storage import DataStore
from vipr.reload.core.storage_protocol import DEFAULT_REQUEST_TIMEOUT, StorageProtocol
from vipr.reload.errors import ReloadError
from vipr.reload.wire.bodies import ErrorCode, ErrorResponse, OutgoingBody
from vipr.reload.wire.context import Received
from vipr.reload.wire.forwarding import NodeDestination, ResourceDestination
from vipr.reload.wire.security import message_certificates

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


class _Detached:
    """The ring before `attach`: everything is ours, no neighbors, nothing replicated."""

    node_id = b""
    joined = False

    def is_responsible(self, resource_id: bytes) -> bool:
        return True

    def successors(self) -> list[bytes]:
        return []

    def predecessors(self) -> list[bytes]:
        return []


class _NodeView:
    """A `RingView` of the node (a node without predecessors or `joined` is a plain ring)."""

    def __init__(self, node: StorageNode) -> None:
        self.node = node

    @property
    def node_id(self) -> bytes:
        return self.node.node_id

    @property
    def joined(self) -> bool:
        return bool(getattr(self.node, "joined", True))

    def is_responsible(self, resource_id: bytes) -> bool:
        return self.node.is_responsible(resource_id)

    def successors(self) -> list[bytes]:
        return self.node.successors()

    def predecessors(self) -> list[bytes]:
        preds: Callable[[], list[bytes]] | None = getattr(self.node, "predecessors", None)
        return [] if preds is None else preds()


class StorageService:
    """One node's `StorageProtocol`, carried out over the node's requests and a loop timer."""

    def __init__(self, store: DataStore, *, hold_down: float = DEFAULT_HOLD_DOWN,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> None:
        self.core = StorageProtocol(store, _Detached(), hold_down, request_timeout)
        self.clock = clock  # wall clock: lifetimes, certificate validity
        self.node: StorageNode | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    # views kept for callers (daemon, bench, tests)
    @property
    def store(self) -> DataStore:
        return self.core.store

    @property
    def planner(self) -> ReplicationPlanner:
        return self.core.planner

    @property
    def replicas_sent(self) -> int:
        return self.core.replicas_sent

    @property
    def replica_failures(self) -> int:
        return self.core.replica_failures

    @property
    def fetch_hops(self) -> Counter[int]:
        return self.core.fetch_hops

    @property
    def resource_count(self) -> int:
        return self.core.resource_count

    def attach(self, node: StorageNode) -> None:
        """Bind to the node (after constructing it with `storage=self`)."""
        self.node = node
        self.core.view = _NodeView(node)
        node.add_topology_listener(self._on_topology)
        self._run(self.core.rearm())

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.node = None

    # ----------------------------------------------------------------- StorageHandler

    def handle(self, received: Received, now: float) -> OutgoingBody:
        """Answer a storage request delivered to the node (`now`: UNIX time)."""
        answer, actions = self.core.on_request(
            received.body, signer=received.signer,
            certs=message_certificates(received.message),
            via=len(received.message.header.via_list), now=time.monotonic(), wall=now)
        if isinstance(answer, ErrorResponse):
            log.debug("storage refused: %s", answer.info_text())
        self._run(actions)
        return answer

    # ----------------------------------------------------------------- carrying out actions

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendRequest):
                if self.node is not None:
                    self._spawn(self._send(a))
            elif (isinstance(a, SetTimer) and a.kind is TimerKind.REPLICATION
                  and self.node is not None):
                self._arm(a)
        self._log_outcomes()

    def _log_outcomes(self) -> None:
        for o in self.core.outcomes:
            to = o.target.hex()[:8] if o.target else "its owner"
            if o.error:
                log.info("replica store of %s to %s failed: %s", o.resource.hex(), to, o.error)
            else:
                log.debug("replica of %s stored at %s", o.resource.hex()[:8], to)
        self.core.outcomes.clear()

    def _arm(self, a: SetTimer) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, a.at - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire, a.key)

    def _fire(self, key: int) -> None:
        self._timer = None
        try:
            self._run(self.core.on_timer(key, time.monotonic(), self.clock()))
        except Exception:  # one bad plan must not end replication for good
            log.exception("replication plan failed")
            self._run(self.core.rearm())

    def _on_topology(self) -> None:
        self._run(self.core.topology_changed(time.monotonic(), self.clock()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send(self, a: SendRequest) -> None:
        node = self.node
        if node is None:
            return
        d = a.dests[0]
        try:
            if isinstance(d, NodeDestination):
                rx = await node.request_direct(d.node_id, a.body, timeout=a.timeout)
            elif isinstance(d, ResourceDestination):
                rx = await node.request(d.resource_id, a.body, timeout=a.timeout)
            else:
                raise ReloadError(f"replica Store to an unusable destination {d!r}")
        except (ReloadError, OSError, TimeoutError) as e:  # Error answers, timeouts, closed
            code = getattr(e, "error_code", ErrorCode.REQUEST_TIMEOUT)  # links: retried later
            self._run(self.core.on_request_failed(a.token, int(code), repr(e),
                                                  time.monotonic()))
            return
        except Exception as e:  # a bug: logged; the Store counts as failed and is retried
            log.exception("replica store to %r failed", d)
            self._run(self.core.on_request_failed(a.token, ErrorCode.INVALID_MESSAGE, repr(e),
                                                  time.monotonic()))
            return
        signer = rx.signer.node_id if rx.signer is not None else None
        self._run(self.core.on_answer(a.token, signer, rx.body, time.monotonic()))

    def run_plan(self) -> list[Action]:
        """Re-replicate now, whatever the hold-down."""
        actions = self.core.run_plan(time.monotonic(), self.clock())
        self._run(actions)
        return actions

    async def handoff(self) -> int:
        """Before leaving: copy what we are responsible for to our successor; waits for the
        Stores (bounded by the request timeout). Returns how many were stored."""
        if self.node is None:
            return 0
        before = self.core.replicas_sent
        await asyncio.gather(*(self._send(a) for a in self.core.handoff(self.clock())))
        return self.core.replicas_sent - before
