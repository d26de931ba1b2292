"""asyncio transports for SIP: UDP, TCP and TLS (RFC 3261 §18, RFC 5626 §3.5.1 keep-alives).

Thin shells: they move bytes, frame streams with `StreamFramer`, parse with
`parse_message`, stamp `received`/`rport` on incoming requests (RFC 3261 §18.2.1,
RFC 3581 §4) and hand `(message, Source)` to the callback. Malformed input goes to
`on_error` and the transport keeps running (a stream with a framing error is closed).

    udp = await UdpTransport.listen("127.0.0.1", 0, on_message)
    await udp.send(data, "127.0.0.1", 5060)
    tls = await StreamTransport.listen("127.0.0.1", 0, on_message, ssl=server_ctx,
                                       client_ssl=client_ctx)
    conn = await tls.send(data, "127.0.0.1", 5061)   # reuses an open connection
    source.tls_dns_names                              # peer certificate dNSNames

The pieces: `source.py` (Source, reply destinations, checks), `udp.py`, `stream.py`.
"""

from __future__ import annotations

from vipr.proxy.sip.source import (
    BadDestination,
    ErrorCallback,
    MessageCallback,
    Source,
    cert_dns_names,
    ip_destination,
    response_destination,
    stamp_received,
)
from vipr.proxy.sip.stream import Connection, StreamTransport
from vipr.proxy.sip.udp import UDP_RECEIVE_BUFFER, UdpTransport

__all__ = [
    "UDP_RECEIVE_BUFFER",
    "BadDestination",
    "Connection",
    "ErrorCallback",
    "MessageCallback",
    "Source",
    "StreamTransport",
    "UdpTransport",
    "cert_dns_names",
    "ip_destination",
    "response_destination",
    "stamp_received",
]
