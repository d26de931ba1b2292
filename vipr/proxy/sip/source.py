"""Where a SIP message came from and where its answer goes (RFC 3261 §18.2, RFC 3581).

`Source` describes the sender of a received message; `stamp_received` writes `received` and
`rport` into the top Via; `response_destination` picks where a response goes; every
datagram destination passes `ip_destination` (IP literals only: no DNS on the receive path).
The transports live in `udp.py` and `stream.py`; `transport.py` gathers them.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vipr.limits import SipLimits
from vipr.logsetup import printable
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import SipMessage, SipRequest
from vipr.proxy.sip.parser import parse_message

if TYPE_CHECKING:
    from vipr.proxy.sip.stream import Connection

log = logging.getLogger("vipr.proxy.sip.transport")

@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from. `connection` is set for TCP/TLS (answer over it);
    `interface` is the receiving transport's label (see `SipEndpoint.listen(name=...)`)."""

    transport: str
    host: str
    port: int
    local_host: str
    local_port: int
    connection: Connection | None = None
    interface: str = ""

    @property
    def reliable(self) -> bool:
        """True for TCP and TLS."""
        return self.transport != "udp"

    @property
    def tls_dns_names(self) -> tuple[str, ...]:
        """dNSName entries of the TLS peer certificate (empty if none)."""
        return self.connection.tls_dns_names if self.connection else ()

    @property
    def tls_verified(self) -> bool:
        """The TLS peer presented a certificate that our context verified."""
        return self.connection.tls_verified if self.connection else False


MessageCallback = Callable[[SipMessage, Source], None]
ErrorCallback = Callable[[bytes, Source, SipParseError], None]


DeadCallback = Callable[[str, str], None]


def _log_error(data: bytes, source: Source, exc: SipParseError) -> None:
    log.info("dropped malformed SIP from %s:%s/%s: %s", source.host, source.port,
             source.transport, printable(exc.reason))


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


class BadDestination(ConnectionError):
    """A destination that must not be sent to (not an IP literal, bad port, wrong family)."""


# what a configured next hop may be besides an IP literal (resolved off the receive path)
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def ip_destination(host: str, port: int, family: int | None = None) -> tuple[str, int]:
    """`(address, port)` to hand to a socket, or BadDestination. Only IP literals: a name
    would make `sendto` resolve it (blocking DNS) or raise outside OSError (NUL, bad IDNA),
    which closes an asyncio datagram transport for good (DESIGN §10)."""
    bare = _bare(host)
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        raise BadDestination(f"not an IP address: {printable(host, 80)!r}") from None
    if type(port) is not int or not 0 < port < 65536:
        raise BadDestination(f"bad port {printable(port, 20)}")
    if family is not None and (family == socket.AF_INET6) != (ip.version == 6):
        raise BadDestination(f"{bare} is not reachable from this socket's address family")
    return bare, port


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(_bare(a)) == ipaddress.ip_address(_bare(b))
    except ValueError:
        return False


def stamp_received(msg: SipRequest, host: str, port: int) -> None:
    """RFC 3261 §18.2.1 `received` and RFC 3581 §4 `rport` on the top Via (in place)."""
    view = msg.top_via_view()
    if view.wants_rport and view.params.get("rport") is None:
        via = msg.top_via
        via.params["rport"] = str(port)
        via.params["received"] = host   # RFC 3581: always with a filled-in rport
    elif view.host != host and not _same_address(view.host, host):
        via = msg.top_via
        via.params["received"] = host
    else:
        return
    msg.headers.pop_first("via")
    msg.headers.insert("Via", str(via))


def response_destination(via: Via, source: Source | None = None) -> tuple[str, int]:
    """Where to send a response when the request's connection is gone or it came over UDP.

    With the request's `source` (RFC 3261 §18.2.2 with `received`, RFC 3581 §4): over UDP
    the packet's source address and port (the `received` and `rport` values; symmetric even
    without `rport`, which also gets through NATs); over a stream, a new connection to the
    source address on the sent-by port (default 5060/5061). A host name from the Via is
    never used: it would need DNS on the receive path and cannot be trusted (DESIGN §10).
    Without a source: received (or sent-by host), rport (or sent-by port).
    """
    if source is not None:
        if not source.reliable:
            return source.host, source.port
        return source.host, via.port or (5061 if source.transport == "tls" else 5060)
    host = _bare(via.received or via.host)
    if via.rport is not None:
        return host, via.rport
    if via.wants_rport and source is not None:
        return source.host, source.port
    default = 5061 if via.transport == "TLS" else 5060
    return host, via.port or default


def cert_dns_names(der: bytes | None) -> tuple[str, ...]:
    """dNSName entries of the subjectAltName of a DER certificate."""
    if not der:
        return ()
    from cryptography import x509  # imported here: keeps `vipr` CLI start-up light

    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def _deliver(data: bytes, source: Source, on_message: MessageCallback, on_error: ErrorCallback,
             limits: SipLimits) -> None:
    try:
        msg = parse_message(data, max_size=limits.max_message_size,
                            max_headers=limits.max_headers, max_vias=limits.max_vias)
        if isinstance(msg, SipRequest):
            stamp_received(msg, source.host, source.port)
    except SipParseError as exc:
        on_error(data, source, exc)
        return
    on_message(msg, source)
