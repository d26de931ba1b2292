"""Per-call state of the proxy: next hops, INVITE branches, calls and dialogs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from vipr.proxy.sip.endpoint import ClientHandle, ServerHandle
from vipr.proxy.sip.message import SipRequest
from vipr.store.models import Route

Target = Literal["internal", "pstn", "federation"]


@dataclass(frozen=True, slots=True)
class Leg:
    """A next hop: the transport name (interface) and address; `server_hostname` for TLS."""

    iface: str
    host: str
    port: int
    server_hostname: str | None = None


@dataclass(slots=True)
class Attempt:
    """One downstream branch of an INVITE."""

    target: Target
    leg: Leg
    request: SipRequest
    client: ClientHandle | None = None
    provisional: bool = False   # a 1xx other than 100 (the callee is ringing)
    trying: bool = False        # any 1xx: a CANCEL may be sent now (RFC 3261 §9.1)
    abandoned: bool = False
    cancel_sent: bool = False
    timer: asyncio.TimerHandle | None = None
    route: Route | None = None


@dataclass(slots=True)
class Call:
    """An INVITE server transaction and its current downstream attempt."""

    call_id: str
    server: ServerHandle
    request: SipRequest
    up: Leg
    number: str | None
    attempt: Attempt | None = None
    cancelled: bool = False
    done: bool = False


@dataclass(slots=True)
class Dialog:
    up: Leg
    down: Leg
    created: float = field(default_factory=time.time)
