"""Store events that cross hosts (issue 15 item 2, DESIGN §12): what the roles of one host tell
each other over their local sockets (`route_learned`, `vcr_added`, a new ticket key) also
reaches the roles of every other host when the store is PostgreSQL, sent by the transaction
that made the change (NOTIFY is delivered at COMMIT, never for a rolled-back one).

Sans-I/O: the payload codec only. `resync` is local: the listener lost its connection and
may have missed events, so a role reloads what it caches.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CHANNEL", "EventError", "EventHandler", "StoreEvent", "decode_event",
           "encode_event"]

CHANNEL = "vipr_events"
MAX_PAYLOAD = 1000   # bytes; PostgreSQL allows 8000, ours are a few dozen

EventKind = Literal["route_learned", "vcr_added", "key_rotated", "resync"]
KINDS: tuple[EventKind, ...] = ("route_learned", "vcr_added", "key_rotated", "resync")


class EventError(ValueError):
    """A payload on the channel that is not one of ours."""


@dataclass(frozen=True, slots=True)
class StoreEvent:
    kind: EventKind
    number: str = ""   # route_learned: the route's number
    id: int = 0        # vcr_added: the VCR's id
    epoch: int = 0     # key_rotated: the new key's epoch


EventHandler = Callable[[StoreEvent], Awaitable[None]]


def encode_event(e: StoreEvent) -> str:
    if e.kind == "route_learned":
        return json.dumps({"k": e.kind, "number": e.number})
    if e.kind == "vcr_added":
        return json.dumps({"k": e.kind, "id": e.id})
    return json.dumps({"k": e.kind, "epoch": e.epoch})


def decode_event(payload: str) -> StoreEvent:
    if len(payload) > MAX_PAYLOAD:
        raise EventError(f"payload of {len(payload)} bytes")
    try:
        d = json.loads(payload)
    except ValueError as exc:
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(d, dict) or d.get("k") not in KINDS or d["k"] == "resync":
        raise EventError("unknown event kind")
    kind: EventKind = d["k"]
    if kind == "route_learned":
        if not isinstance(d.get("number"), str):
            raise EventError("route_learned without a number")
        return StoreEvent(kind, number=d["number"])
    field = "id" if kind == "vcr_added" else "epoch"
    v = d.get(field)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise EventError(f"{kind} without an integer {field}")
    return StoreEvent(kind, id=v) if kind == "vcr_added" else StoreEvent(kind, epoch=v)
