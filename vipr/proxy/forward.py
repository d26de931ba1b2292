"""Request/response rewriting of a stateful proxy (RFC 3261 §16.6, §16.7, §16.12). Pure code.

    fwd = prepare_request(req, via=Via("UDP", "127.0.0.1", 5062, {"branch": new_branch()}),
                          record_route=["sip:127.0.0.1:5060;lr", "sip:127.0.0.1:5062;lr"])
    strip_own_routes(req, is_ours)            # loose routing: our Route entries go (§16.4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import Via, parse_name_addr_list
from vipr.proxy.sip.message import SipRequest, SipResponse
from vipr.proxy.sip.transaction import MAGIC_COOKIE
from vipr.proxy.sip.uri import URI
from vipr.tickets import LEGACY_TICKET_HEADER, TICKET_HEADER

DEFAULT_MAX_FORWARDS = 70


class TooManyHops(Exception):
    """Max-Forwards reached 0 (§16.3 step 3: answer 483)."""


def copy_request(req: SipRequest) -> SipRequest:
    """A copy whose headers can be edited without touching the original (§16.6 step 1)."""
    return SipRequest(req.method, req.uri, req.headers.copy(), req.body, req.version)


def check_max_forwards(req: SipRequest) -> None:
    """§16.3 step 3: raise TooManyHops when Max-Forwards is 0 (not for a 2xx ACK's caller)."""
    mf = req.max_forwards
    if mf is not None and mf <= 0:
        raise TooManyHops()


def prepare_request(req: SipRequest, *, via: Via, record_route: Sequence[str] = (),
                    uri: str | None = None, ticket: str | None = None,
                    strip_tickets: bool = False) -> SipRequest:
    """The copy to send on one branch: Request-URI (§16.6 step 2), Max-Forwards − 1 (step 3),
    Record-Route on top (step 4; bottom entry first, RFC 5658 double record-routing), our Via
    on top (step 8). `ticket`: set `VIPR-Ticket` (DESIGN §6); `strip_tickets`: remove any
    ticket headers the request carried (internal phones must not pick a ticket)."""
    fwd = copy_request(req)
    if uri is not None:
        fwd.uri = uri
    mf = req.max_forwards
    fwd.headers.set("Max-Forwards", str(DEFAULT_MAX_FORWARDS if mf is None else mf - 1))
    for rr in record_route:
        fwd.headers.insert("Record-Route", f"<{rr}>")
    if strip_tickets or ticket is not None:
        fwd.headers.remove(TICKET_HEADER)
        fwd.headers.remove(LEGACY_TICKET_HEADER)
    if ticket is not None:
        fwd.headers.add(TICKET_HEADER, ticket)
    fwd.push_via(via)
    return fwd


def ack_and_bye(invite: SipRequest, resp: SipResponse) -> tuple[SipRequest, SipRequest]:
    """The ACK (§13.2.2.4) and BYE (§15) that end the dialog a stray 2xx to `invite` set up;
    the caller adds its Via."""
    ack = SipRequest("ACK", invite.uri)
    bye = SipRequest("BYE", invite.uri)
    for name in ("From", "To", "Call-ID"):
        v = resp.headers.get(name)
        if v is not None:
            ack.headers.add(name, v)
            bye.headers.add(name, v)
    seq = invite.cseq.seq
    ack.headers.add("CSeq", f"{seq} ACK")
    bye.headers.add("CSeq", f"{seq + 1} BYE")
    for m in (ack, bye):
        m.headers.add("Max-Forwards", "70")
    return ack, bye

def stateless_branch(req: SipRequest, salt: str) -> str:
    """A branch that is the same for retransmissions of `req` (§16.11: stateless forwarding,
    used for the ACK of a 2xx)."""
    try:
        top = req.top_via_view().branch or ""
    except SipParseError:
        top = ""
    h = hashlib.sha1(f"{top}|{req.call_id}|{req.cseq}|{salt}".encode(), usedforsecurity=False)
    return MAGIC_COOKIE + h.hexdigest()[:20]


def strip_own_routes(req: SipRequest, is_ours: Callable[[URI], bool]) -> int:
    """Remove the Route entries at the top that name this proxy (§16.4); the count removed."""
    removed = 0
    while (value := req.headers.get("route")) is not None:
        entries = parse_name_addr_list(value)
        if not entries or not is_ours(entries[0].uri):
            break
        req.headers.pop_first("route")
        removed += 1
    return removed


def response_upstream(resp: SipResponse) -> SipResponse:
    """§16.7 step 3: remove our Via from a response before sending it back upstream."""
    resp.pop_via()
    return resp
