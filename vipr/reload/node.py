"""asyncio RELOAD peer over CHORD-RELOAD (RFC 6940 §10) and TLS-TCP-FH-NO-ICE links (§6.6).

STUB: the API is fixed; the bodies follow. `ChordTopology` (vipr/reload/chord.py) is the sans-I/O
core; this module is the thin asyncio shell: links, routing, join/update/leave, dispatch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vipr.reload.api import Received, ReloadContext

HostPort = tuple[str, int]


class ReloadRequestError(Exception):
    """A request got an Error answer (error_code from §14.9) or no answer (REQUEST_TIMEOUT)."""

    def __init__(self, error_code: int, info: str = "") -> None:
        super().__init__(f"RELOAD error {error_code}: {info}")
        self.error_code = error_code
        self.info = info


class ReloadJoinError(Exception):
    """The node could not join the overlay (no bootstrap reachable, refused, timed out)."""


@dataclass(frozen=True)
class ChordTimers:
    """Timers (seconds). RFC 6940 defaults; tests pass short ones."""

    update_interval: float = 400.0  # §10.7.1 chord-update-interval (sample config value)
    ping_interval: float = 3600.0  # §10.7.4.3 chord-ping-interval: finger refresh
    reliability_timer: float = 3.0  # §6.2.1 overlay-reliability-timer
    max_transmissions: int = 5  # §6.2.1
    attach_timeout: float = 10.0  # Attach answer + TLS link up
    join_timeout: float = 60.0  # whole join
    link_dead_after: float = 30.0  # §6.6.3.2 no ACK → link failed
    tombstone: float = 60.0  # ignore third-party mentions of a failed peer this long


class StorageHandler(Protocol):
    """Storage plug-in (vipr/reload/storage.py). The node calls `handle` for every StoreReq,
    FetchReq, StatReq and FindReq delivered to it (it is responsible for the Resource-ID, or the
    request names this node, e.g. a replica Store). `handle` returns the answer body (StoreAns,
    FetchAns, …) or an `ErrorResponse`; it may be a coroutine function."""

    def handle(self, received: Received, now: float) -> Any | Awaitable[Any]: ...


AppAttachCallback = Callable[[int], "HostPort | None"]
TopologyListener = Callable[[], None]


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
        timers: ChordTimers = ChordTimers(),
        storage: StorageHandler | None = None,
        app_attach: AppAttachCallback | None = None,
    ) -> None:
        self.context = context
        self.node_id: bytes = context.node_id
        self.creds_files = creds_files
        self.listen = listen
        self.bootstrap = tuple(bootstrap)
        self.create = create
        self.timers = timers
        self.storage = storage
        self.app_attach_cb = app_attach

    @property
    def address(self) -> HostPort:
        """The bound listen address (after `start`)."""
        raise NotImplementedError

    @property
    def joined(self) -> bool:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen; join through a bootstrap node unless `create`; returns when joined."""
        raise NotImplementedError

    async def stop(self, *, leave: bool = True) -> None:
        """Leave (§10.9) unless `leave=False` (simulated crash), close links and the listener."""
        raise NotImplementedError

    async def request(self, destination: bytes, body: Any, *,
                      timeout: float | None = None) -> Received:
        """Route `body` to the node responsible for the 16-byte Resource-ID `destination`.

        Returns the verified answer; raises `ReloadRequestError` on an Error answer or timeout.
        """
        raise NotImplementedError

    async def request_direct(self, node_id: bytes, body: Any, *,
                             timeout: float | None = None) -> Received:
        """Send `body` to the peer `node_id` (a Node-ID destination; routed if not linked)."""
        raise NotImplementedError

    async def app_attach(self, peer_id: bytes, application: int, *,
                         timeout: float | None = None) -> HostPort:
        """§6.5.2 AppAttach to `peer_id`; returns the answer's host candidate address."""
        raise NotImplementedError

    def is_responsible(self, resource_id: bytes) -> bool:
        """True if this node owns `resource_id` (in (predecessor, self])."""
        raise NotImplementedError

    def successors(self) -> list[bytes]:
        raise NotImplementedError

    def predecessors(self) -> list[bytes]:
        raise NotImplementedError

    def fingers(self) -> list[bytes]:
        raise NotImplementedError

    def add_topology_listener(self, cb: TopologyListener) -> None:
        """`cb()` runs whenever the neighbor table (and so the responsible range) changes."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """{"node_id", "listen", "predecessors", "successors", "fingers", "links": [{"peer",
        "rtt_ms"}]} — hex ids, for `vipr overlay status`."""
        raise NotImplementedError
