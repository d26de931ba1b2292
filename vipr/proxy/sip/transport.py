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
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.framing import StreamFramer
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import SipMessage, SipRequest
from vipr.proxy.sip.parser import MAX_MESSAGE_SIZE, parse_message

log = logging.getLogger(__name__)


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


def _log_error(data: bytes, source: Source, exc: SipParseError) -> None:
    log.info("dropped malformed SIP from %s:%s/%s: %s", source.host, source.port,
             source.transport, exc.reason)


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


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
    """Where to send a response over UDP, or open a new connection (RFC 3261 §18.2.2,
    RFC 3581 §4): received (or sent-by host), rport (or sent-by port, default 5060/5061).
    """
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
             max_size: int) -> None:
    try:
        msg = parse_message(data, max_size=max_size)
        if isinstance(msg, SipRequest):
            stamp_received(msg, source.host, source.port)
    except SipParseError as exc:
        on_error(data, source, exc)
        return
    on_message(msg, source)


# --- UDP ---

# The default receive buffer (~208 KB, a few hundred messages) overflowed in bursts at
# 500 calls/s (the loop busy for some ms): each lost datagram costs a retransmission
# 0.5 s later, or a failed call. Asked for on every UDP socket; the kernel caps it.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        o = self.owner
        src = Source("udp", str(addr[0]), addr[1], o.local_host, o.local_port, None, o.label)
        if data.strip(b"\r\n") == b"":
            return   # keep-alive (RFC 5626 §4.4.1 uses STUN; bare CRLF is common): ignore
        _deliver(data, src, o.on_message, o.on_error, o.max_size)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class UdpTransport:
    """A UDP socket: datagrams in, datagrams out."""

    name = "udp"
    reliable = False

    def __init__(self, on_message: MessageCallback, on_error: ErrorCallback | None,
                 max_size: int, label: str | None = None) -> None:
        self.label = label or "udp"
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.max_size = max_size
        self.local_host = ""
        self.local_port = 0
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def listen(cls, host: str, port: int, on_message: MessageCallback, *,
                     on_error: ErrorCallback | None = None,
                     max_size: int = MAX_MESSAGE_SIZE, label: str | None = None) -> UdpTransport:
        """Bind host:port (port 0 picks a free one; see `local_port`)."""
        self = cls(on_message, on_error, max_size, label)
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                    local_addr=(host, port))
        self._transport = tr
        raw = tr.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):   # best effort: the kernel caps it (rmem_max)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        sock = tr.get_extra_info("sockname")
        self.local_host, self.local_port = sock[0], sock[1]
        return self

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram now (RFC 3261 §18.1.1 size rules are the caller's concern)."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("UDP transport closed")
        self._transport.sendto(data, (_bare(host), port))

    async def send(self, data: bytes, host: str, port: int) -> None:
        """Same as `sendto`, with the stream transports' signature."""
        self.sendto(data, host, port)

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()


# --- TCP / TLS ---

class Connection(asyncio.Protocol):
    """One TCP or TLS connection, framed by Content-Length."""

    def __init__(self, owner: StreamTransport, outbound: bool) -> None:
        self.owner = owner
        self.outbound = outbound
        self.framer = StreamFramer(owner.max_size)
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.tls_dns_names: tuple[str, ...] = ()
        self.tls_verified = False
        self.last_activity = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self._source: Source | None = None

    @property
    def is_open(self) -> bool:
        """False once closing started."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (str(peer[0]), int(peer[1]))
        self.local = (str(sock[0]), int(sock[1]))
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            der = sslobj.getpeercert(binary_form=True)
            self.tls_dns_names = cert_dns_names(der)
            ctx = sslobj.context
            self.tls_verified = bool(der) and ctx.verify_mode != _ssl.CERT_NONE
        self._source = Source(self.owner.name, self.remote[0], self.remote[1], self.local[0],
                              self.local[1], self, self.owner.label)
        self.owner._register(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        src = self._source
        assert src is not None
        try:
            raws = self.framer.feed(data)
        except SipParseError as exc:
            # RFC 3261 §18.3 / RFC 4475 §3.3.9: a stream cannot be resynchronised
            self.owner.on_error(data, src, exc)
            self.close()
            return
        if self.framer.pings:
            self.write(b"\r\n" * self.framer.take_pings())   # RFC 5626 §3.5.1: one pong each
        for raw in raws:
            _deliver(raw, src, self.owner.on_message, self.owner.on_error, self.owner.max_size)
        if self.framer.error is not None:
            self.owner.on_error(data, src, self.framer.error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        """Queue bytes; raises ConnectionError when closed."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.last_activity = time.monotonic()
        self.transport.write(data)

    def ping(self) -> None:
        """Send an RFC 5626 double-CRLF keep-alive."""
        self.write(b"\r\n\r\n")

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


class StreamTransport:
    """TCP (`ssl=None`) or TLS listener plus a pool of connections keyed by peer address.

    `ssl` is the server context (set `verify_mode = CERT_REQUIRED` and load a CA for
    mutual authentication); `client_ssl` is used for outgoing TLS connections.
    """

    reliable = True

    def __init__(self, on_message: MessageCallback, on_error: ErrorCallback | None, *,
                 ssl: _ssl.SSLContext | None, client_ssl: _ssl.SSLContext | None,
                 max_size: int, idle_timeout: float | None, connect_timeout: float,
                 keepalive_interval: float | None, label: str | None = None) -> None:
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.ssl = ssl
        self.client_ssl = client_ssl
        self.name = "tls" if (ssl is not None or client_ssl is not None) else "tcp"
        self.label = label or self.name
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.local_host = ""
        self.local_port = 0
        self.connections: dict[tuple[str, int], Connection] = {}
        self._server: asyncio.Server | None = None
        self._pending: dict[tuple[str, int], asyncio.Future[Connection]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def listen(cls, host: str, port: int, on_message: MessageCallback, *,
                     on_error: ErrorCallback | None = None, ssl: _ssl.SSLContext | None = None,
                     client_ssl: _ssl.SSLContext | None = None, max_size: int = MAX_MESSAGE_SIZE,
                     idle_timeout: float | None = 600.0, connect_timeout: float = 5.0,
                     keepalive_interval: float | None = None,
                     accept: bool = True, label: str | None = None) -> StreamTransport:
        """Listen on host:port (port 0 = free port). `accept=False` makes a client only."""
        self = cls(on_message, on_error, ssl=ssl, client_ssl=client_ssl, max_size=max_size,
                   idle_timeout=idle_timeout, connect_timeout=connect_timeout,
                   keepalive_interval=keepalive_interval, label=label)
        if accept:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(lambda: Connection(self, False), host, port,
                                                    ssl=ssl)
            sock = self._server.sockets[0].getsockname()
            self.local_host, self.local_port = sock[0], sock[1]
        if idle_timeout is not None or keepalive_interval is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return self

    def _register(self, conn: Connection) -> None:
        self.connections[conn.remote] = conn

    def _unregister(self, conn: Connection) -> None:
        if self.connections.get(conn.remote) is conn:
            del self.connections[conn.remote]

    def get_connection(self, host: str, port: int) -> Connection | None:
        """The open connection to host:port, if any."""
        conn = self.connections.get((_bare(host), port))
        return conn if conn is not None and conn.is_open else None

    async def connect(self, host: str, port: int, *,
                      server_hostname: str | None = None) -> Connection:
        """An open connection to host:port: reused if one exists (RFC 3261 §18.1.1)."""
        key = (_bare(host), port)
        conn = self.connections.get(key)
        if conn is not None and conn.is_open:
            return conn
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Connection] = loop.create_future()
        self._pending[key] = fut
        try:
            ctx = self.client_ssl if self.name == "tls" else None
            if self.name == "tls" and ctx is None:
                raise ConnectionError("no client TLS context")
            coro = loop.create_connection(
                lambda: Connection(self, True), key[0], port, ssl=ctx,
                server_hostname=(server_hostname or key[0]) if ctx is not None else None)
            _, proto = await asyncio.wait_for(coro, self.connect_timeout)
            fut.set_result(proto)
            return proto
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            fut.exception()   # mark retrieved
            raise
        finally:
            del self._pending[key]

    async def send(self, data: bytes, host: str, port: int, *,
                   server_hostname: str | None = None) -> Connection:
        """Send over a reused or new connection; returns it."""
        conn = await self.connect(host, port, server_hostname=server_hostname)
        conn.write(data)
        return conn

    async def _sweep(self) -> None:
        period = min(x for x in (self.idle_timeout, self.keepalive_interval) if x is not None)
        while True:
            await asyncio.sleep(max(period / 2, 0.05))
            now = time.monotonic()
            for conn in list(self.connections.values()):
                idle = now - conn.last_activity
                if self.idle_timeout is not None and idle > self.idle_timeout:
                    conn.close()
                elif (self.keepalive_interval is not None and conn.outbound
                      and idle > self.keepalive_interval):
                    with contextlib.suppress(ConnectionError):
                        conn.ping()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        conns = list(self.connections.values())
        for c in conns:
            c.close()
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
