"""Per-call state of the proxy: next hops, INVITE branches, calls and dialogs."""

from __future__ import annotations

import asyncio
import json
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
    vcr_opened: asyncio.Future[int | None] | None = None   # the open VCR's commit (DESIGN §7)


@dataclass(slots=True)
class Dialog:
    up: Leg
    down: Leg
    created: float = field(default_factory=time.time)


MAX_DIALOG_TEXT = 2048   # a stored dialog is two legs: far below this


class DialogTextError(ValueError):
    """Stored dialog text that is not two legs (a damaged or foreign row)."""


def dialog_text(dlg: Dialog) -> str:
    """The two legs as JSON, stored with the open VCR (DESIGN §7: a restarted proxy routes
    the BYE of a call it answered before the restart)."""
    return json.dumps({"up": _leg_list(dlg.up), "down": _leg_list(dlg.down)},
                      separators=(",", ":"))


def dialog_from_text(text: str, created: float) -> Dialog:
    """The Dialog of `dialog_text`; DialogTextError for anything else."""
    if len(text) > MAX_DIALOG_TEXT:
        raise DialogTextError("dialog text too long")
    try:
        obj = json.loads(text)
        return Dialog(_leg_of(obj["up"]), _leg_of(obj["down"]), created)
    except (ValueError, TypeError, KeyError) as exc:
        raise DialogTextError(f"not a stored dialog: {exc}") from None


def _leg_list(leg: Leg) -> list[object]:
    return [leg.iface, leg.host, leg.port, leg.server_hostname]


def _leg_of(v: object) -> Leg:
    if not isinstance(v, list) or len(v) != 4:
        raise TypeError("a leg is [iface, host, port, server_hostname]")
    iface, host, port, sni = v
    if not (isinstance(iface, str) and isinstance(host, str) and type(port) is int
            and 0 < port < 65536 and (sni is None or isinstance(sni, str))):
        raise TypeError("bad leg fields")
    return Leg(iface, host, port, sni)
