"""Public types of the RELOAD node API (aio/node.py): errors, timers, plug-in protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypedDict, Unpack

from vipr.reload.errors import ReloadError
from vipr.reload.overlay_config import OverlayConfiguration
from vipr.reload.wire.bodies import OutgoingBody
from vipr.reload.wire.context import Received

HostPort = tuple[str, int]


class ReloadRequestError(ReloadError):
    """A request got an Error answer (error_code from §14.9) or no answer (REQUEST_TIMEOUT)."""

    def __init__(self, error_code: int, info: str = "") -> None:
        super().__init__(f"RELOAD error {error_code}: {info}")
        self.error_code = error_code
        self.info = info


class ReloadJoinError(ReloadError):
    """The node could not join the overlay (no bootstrap reachable, refused, timed out)."""


class TimerOverrides(TypedDict, total=False):
    """`ChordTimers` fields a caller may set over the configuration document's values."""

    update_interval: float
    ping_interval: float
    reliability_timer: float
    max_transmissions: int
    attach_timeout: float
    join_timeout: float
    link_dead_after: float
    tombstone: float


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

    @classmethod
    def from_config(cls, conf: OverlayConfiguration,
                    **overrides: Unpack[TimerOverrides]) -> ChordTimers:
        """Timers from the overlay configuration document (§11.1), then `overrides`."""
        base = cls(update_interval=conf.chord_update_interval,
                   ping_interval=conf.chord_ping_interval,
                   reliability_timer=conf.overlay_reliability_timer)
        return replace(base, **overrides)


class StorageHandler(Protocol):
    """Storage plug-in (vipr/reload/core/storage.py). The node calls `handle` for every StoreReq,
    FetchReq, StatReq and FindReq delivered to it (it is responsible for the Resource-ID, or the
    request names this node, e.g. a replica Store). `handle` returns the answer body (StoreAns,
    FetchAns, …) or an `ErrorResponse`; it may be a coroutine function."""

    def handle(self, received: Received,
               now: float) -> OutgoingBody | Awaitable[OutgoingBody | None] | None: ...


AppAttachCallback = Callable[[int], "HostPort | None"]
TopologyListener = Callable[[], None]


DEFAULT_TIMERS = ChordTimers()
