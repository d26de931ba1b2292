"""A SIP dialog's state and its in-dialog requests (RFC 3261 §12), shared by the PSTN
simulator (a B2BUA: two dialogs per call) and the phones. Pure: no I/O, no clock."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.uri import format_host

__all__ = ["Dialog", "LocalAddress", "new_tag", "user_of"]


def new_tag() -> str:
    return secrets.token_hex(5)


def user_of(uri_text: str) -> str:
    """The user part of a sip:/sips:/tel: URI text ("" when there is none)."""
    s = uri_text.strip().strip("<>")
    for scheme in ("sips:", "sip:", "tel:"):
        if s.lower().startswith(scheme):
            s = s[len(scheme):]
            break
    if s.lower().startswith("+") and "@" not in s:
        return s.split(";", 1)[0]
    user, at, _ = s.partition("@")
    return user.split(";", 1)[0] if at else ""


@dataclass(frozen=True)
class LocalAddress:
    """The transport a UA sends from: name for `SipEndpoint.send_request`, host, port."""

    transport: str
    host: str
    port: int
    kind: str = "udp"

    def via(self) -> str:
        return str(Via(self.kind.upper(), format_host(self.host), self.port,
                       {"branch": new_branch(), "rport": None}))

    def contact(self, user: str) -> str:
        return f"<sip:{user}@{format_host(self.host)}:{self.port};transport={self.kind}>"


@dataclass
class Dialog:
    """RFC 3261 §12.1: what in-dialog requests need. `local`/`remote` are the From/To
    header values with their tags; requests go to `next_hop` (host, port)."""

    call_id: str
    local: str
    remote: str
    remote_target: str
    route_set: list[str]
    next_hop: tuple[str, int]
    local_seq: int = 1
    invite_seq: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def as_uac(cls, invite: SipRequest, response: SipResponse,
               next_hop: tuple[str, int]) -> Dialog:
        """§12.1.2: route set = Record-Route reversed, target = the response's Contact."""
        target = response.contacts[0].uri if response.contacts else invite.request_uri
        return cls(
            call_id=invite.call_id,
            local=invite.headers.get("from") or "",
            remote=response.headers.get("to") or "",
            remote_target=str(target),
            route_set=[str(r) for r in reversed(response.record_routes)],
            next_hop=next_hop,
            local_seq=invite.cseq.seq,
            invite_seq=invite.cseq.seq,
        )

    @classmethod
    def as_uas(cls, invite: SipRequest, to_tag: str, next_hop: tuple[str, int]) -> Dialog:
        """§12.1.1: route set = Record-Route in order, target = the request's Contact."""
        target = invite.contacts[0].uri if invite.contacts else invite.from_.uri
        return cls(
            call_id=invite.call_id,
            local=f"{invite.headers.get('to')};tag={to_tag}",
            remote=invite.headers.get("from") or "",
            remote_target=str(target),
            route_set=[str(r) for r in invite.record_routes],
            next_hop=next_hop,
            local_seq=0,
            invite_seq=invite.cseq.seq,
        )

    def request(self, method: str, via: str, body: bytes = b"",
                headers: tuple[tuple[str, str], ...] = ()) -> SipRequest:
        """A new in-dialog request (ACK for a 2xx reuses the INVITE's CSeq number)."""
        if method == "ACK":
            seq = self.invite_seq
        else:
            self.local_seq += 1
            seq = self.local_seq
        h = Headers([("Via", via), ("Max-Forwards", "70"), ("From", self.local),
                     ("To", self.remote), ("Call-ID", self.call_id), ("CSeq", f"{seq} {method}")])
        for r in self.route_set:
            h.add("Route", r)
        for name, value in headers:
            h.add(name, value)
        return SipRequest(method, self.remote_target, h, body)
