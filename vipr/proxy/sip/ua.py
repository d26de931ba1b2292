"""A minimal user agent on the SIP core, for interop tests and benchmarks (not a phone).

`SimpleUAS` answers INVITE with 200 (SDP), BYE/OPTIONS/CANCEL with 200, and
retransmits its 2xx over UDP until the ACK (RFC 3261 §13.3.1.4). `SimpleUAC.call()`
runs INVITE → 200 → ACK → BYE → 200 through the endpoint's client transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl as _ssl

from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.transport import Source
from vipr.proxy.sip.uri import format_host

SDP_TEMPLATE = (
    "v=0\r\no=- {id} 1 IN {af} {ip}\r\ns=-\r\nc=IN {af} {ip}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _sdp(ip: str) -> bytes:
    ip = ip.strip("[]")
    af = "IP6" if ":" in ip else "IP4"
    return SDP_TEMPLATE.format(id=secrets.randbelow(10**9), af=af, ip=ip, port=40000).encode()


class SimpleUAS:
    """Answers every call; counts what it saw."""

    def __init__(self, timers_t1: float = 0.5) -> None:
        self.invites = 0
        self.acks = 0
        self.byes = 0
        self.endpoint: SipEndpoint | None = None
        self.t1 = timers_t1
        self._pending_2xx: dict[str, asyncio.Task[None]] = {}
        self._contact = ""

    async def start(self, transport: str, host: str, port: int = 0, *,
                    ssl: _ssl.SSLContext | None = None) -> tuple[str, int]:
        """Listen; returns the bound address."""
        self.endpoint = SipEndpoint(self._on_request)
        tr = await self.endpoint.listen(transport, host, port, ssl=ssl)
        self._contact = f"<sip:uas@{format_host(host)}:{tr.local_port};transport={transport}>"
        return tr.local_host, tr.local_port

    async def close(self) -> None:
        """Stop."""
        for t in self._pending_2xx.values():
            t.cancel()
        if self.endpoint is not None:
            await self.endpoint.close()

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:
            if req.method == "ACK":
                self.acks += 1
                t = self._pending_2xx.pop(req.call_id, None)
                if t is not None:
                    t.cancel()
            return
        m = req.method
        if m == "INVITE":
            self.invites += 1
            ok = server.respond(200, to_tag=secrets.token_hex(4),
                                headers=(("Contact", self._contact),
                                         ("Content-Type", "application/sdp")),
                                body=_sdp(source.local_host))
            if not source.reliable:
                self._pending_2xx[req.call_id] = asyncio.get_running_loop().create_task(
                    self._retransmit_2xx(server, ok))
        elif m == "BYE":
            self.byes += 1
            server.respond(200)
        elif m == "CANCEL":
            # RFC 3261 §9.2: 481 if nothing matches, else 200 (and 487 to a pending INVITE)
            assert self.endpoint is not None
            inv = self.endpoint.find_invite_server(req)
            server.respond(200 if inv is not None else 481)
            if inv is not None and inv.txn.state == "proceeding":
                inv.respond(487)
        elif m in ("OPTIONS", "REGISTER"):
            server.respond(200)
        else:
            server.respond(501)

    async def _retransmit_2xx(self, server: ServerHandle, ok: SipResponse) -> None:
        # RFC 3261 §13.3.1.4: T1 doubling up to T2 until the ACK, give up after 64*T1
        interval, waited = self.t1, 0.0
        with contextlib.suppress(Exception):
            while waited < 64 * self.t1:
                await asyncio.sleep(interval)
                waited += interval
                server.send(ok)
                interval = min(2 * interval, 4.0)
        self._pending_2xx.pop(ok.call_id, None)


class SimpleUAC:
    """Places calls: INVITE, ACK, BYE."""

    def __init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self.transport = "udp"
        self.local = ("", 0)

    async def start(self, transport: str, host: str, port: int = 0, *,
                    client_ssl: _ssl.SSLContext | None = None) -> None:
        """Open the local transport."""
        self.endpoint = SipEndpoint(self._on_request)
        tr = await self.endpoint.listen(transport, host, port, client_ssl=client_ssl)
        self.transport = transport
        self.local = (host, tr.local_port)

    async def close(self) -> None:
        """Stop."""
        if self.endpoint is not None:
            await self.endpoint.close()

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is not None:
            server.respond(200 if req.method in ("BYE", "OPTIONS") else 501)

    def _via(self) -> str:
        return str(Via(self.transport.upper(), format_host(self.local[0]), self.local[1] or None,
                       {"branch": new_branch(), "rport": None}))

    async def call(self, host: str, port: int, user: str = "service", *,
                   hold: float = 0.0, timeout: float = 40.0) -> int:
        """One call; returns the INVITE's final status (200 when the whole call worked)."""
        assert self.endpoint is not None
        ep, lh, lp = self.endpoint, format_host(self.local[0]), self.local[1]
        call_id = f"{secrets.token_hex(8)}@{lh}"
        ftag = secrets.token_hex(4)
        target = f"sip:{user}@{format_host(host)}:{port}"
        contact = f"<sip:uac@{lh}:{lp};transport={self.transport}>"
        h = Headers([("Via", self._via()), ("Max-Forwards", "70"),
                     ("From", f"<sip:uac@{lh}:{lp}>;tag={ftag}"), ("To", f"<{target}>"),
                     ("Call-ID", call_id), ("CSeq", "1 INVITE"), ("Contact", contact),
                     ("Content-Type", "application/sdp")])
        invite = SipRequest("INVITE", target, h, _sdp(lh))
        client = await ep.send_request(invite, self.transport, host, port)
        final = await client.final(timeout)
        if final.status >= 300:
            return final.status
        to = final.headers.get("to") or f"<{target}>"
        remote = final.contacts[0].uri if final.contacts else None
        ruri = str(remote) if remote is not None else target
        # RFC 3261 §13.2.2.4: the ACK for a 2xx is its own transaction-less request
        ack = SipRequest("ACK", ruri, Headers([
            ("Via", self._via()), ("Max-Forwards", "70"), ("From", h.get("from") or ""),
            ("To", to), ("Call-ID", call_id), ("CSeq", "1 ACK")]))
        await ep.send_stateless(ack, self.transport, host, port)
        if hold:
            await asyncio.sleep(hold)
        bye = SipRequest("BYE", ruri, Headers([
            ("Via", self._via()), ("Max-Forwards", "70"), ("From", h.get("from") or ""),
            ("To", to), ("Call-ID", call_id), ("CSeq", "2 BYE")]))
        bye_client = await ep.send_request(bye, self.transport, host, port)
        bye_final = await bye_client.final(timeout)
        return final.status if bye_final.status == 200 else bye_final.status
