"""The SIP 302 redirect interface (`proxy.interfaces.redirect`, DESIGN §11).

For edges that follow redirects natively: an INVITE gets `302 Moved Temporarily` whose
Contacts are the learned route with the ticket as an escaped URI header (RFC 3261 §19.1.1:
`?VIPR-Ticket=...`, which the edge copies into the INVITE it sends, §8.1.3.4) at q=1.0, then
the PSTN gateway at q=0.5 (§20.10: the edge tries higher q first). Without a usable route the
answer is a 302 to the PSTN gateway alone, or the configured `no_route_status`. The decision is
`CallPolicy.route`, the one the inline SIP path and the hook use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vipr.config import RedirectInterface
from vipr.listen_error import listen_error
from vipr.logsetup import printable
from vipr.proxy.routing import federation_uri
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.transport import Source
from vipr.proxy.sip.uri import format_host
from vipr.tickets import TICKET_HEADER

if TYPE_CHECKING:
    from vipr.proxy.sip.message import SipRequest
    from vipr.store.models import Route

log = logging.getLogger("vipr.proxy.redirect")


def redirect_contacts(route: Route | None, number: str | None,
                      gateway: tuple[str, int] | None) -> list[str]:
    """The Contact values of the 302, best first (pure)."""
    out: list[str] = []
    if route is not None and number is not None:
        uri = federation_uri(route, number)
        # RFC 3261 §19.1.1: header values in a URI are escaped; base64url needs none, but
        # anything else a ticket might carry must not break the URI
        out.append(f"<{uri}?{TICKET_HEADER}={quote(route.ticket, safe='-_.~')}>;q=1.0")
    if gateway is not None and number is not None:
        host, port = gateway
        out.append(f"<sip:{number}@{format_host(host)}:{port};user=phone>;q=0.5")
    return out


class RedirectServer:
    """One SIP listener answering INVITEs with 302s."""

    def __init__(self, policy: Any, cfg: RedirectInterface,
                 gateway: tuple[str, int] | None, clock: Any) -> None:
        self.policy = policy
        self.cfg = cfg
        self.gateway = gateway
        self.clock = clock
        self.endpoint: SipEndpoint | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, limits: Any) -> None:
        ep = SipEndpoint(self._on_request)
        self.endpoint = ep
        host, port = self.cfg.listen.host, self.cfg.listen.port
        try:
            tr = await ep.listen(self.cfg.transport, host, port, name="redirect", limits=limits)
        except OSError as exc:
            await ep.close()
            raise listen_error("proxy redirect interface", host, port, exc) from exc
        self.address = (tr.local_host, tr.local_port)
        log.info("redirect listening: %s/%s:%d", self.cfg.transport,
                 format_host(tr.local_host), tr.local_port)

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.close()

    def _on_request(self, req: SipRequest, source: Source,
                    server: ServerHandle | None) -> None:
        if server is None:
            return   # an ACK for our 302 ends in the transaction layer; others are stray
        if req.method == "INVITE" and req.to_tag is None:
            self._redirect(req, server)
        elif req.method == "OPTIONS":
            server.respond(200)
        elif req.method == "CANCEL":
            server.respond(481)   # the INVITE got its final answer at once
        else:
            server.respond(405, headers=(("Allow", "INVITE, ACK, OPTIONS"),))

    def _redirect(self, req: SipRequest, server: ServerHandle) -> None:
        d = self.policy.route("internal", req.request_uri, self.clock())
        self.policy.counters[f"redirect_{d.kind}_{d.reason}"] += 1
        route = d.route if d.kind == "federation" else None
        if route is None and self.cfg.no_route_status != 302:
            server.respond(self.cfg.no_route_status)
            return
        contacts = redirect_contacts(route, d.number, self.gateway)
        if not contacts:
            server.respond(404 if d.number is None else 480)
            return
        log.debug("redirect %s to %s: %s", printable(req.call_id), printable(d.number),
                  d.reason)
        server.respond(302, headers=tuple(("Contact", c) for c in contacts))
