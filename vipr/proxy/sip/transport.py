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
import dataclasses
import ipaddress
import logging
import re
import socket
import ssl as _ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vipr.limits import SIP_LIMITS, ConnectionGate, SipLimits
from vipr.logsetup import printable
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.framing import StreamFramer
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import SipMessage, SipRequest
from vipr.proxy.sip.parser import parse_message

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


# --- UDP ---

# The default receive buffer (~208 KB, a few hundred messages) overflowed in bursts at
# 500 calls/s (the loop busy for some ms): each lost datagram costs a retransmission
# 0.5 s later, or a failed call. Asked for on every UDP socket; the kernel caps it.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

# A listener whose socket closed under it is reopened on the same address this often,
# this far apart, before the transport is declared dead (the daemon then exits non-zero).
UDP_REOPEN_TRIES = 5
UDP_REOPEN_DELAY = 0.2


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        o = self.owner
        try:
            src = Source("udp", str(addr[0]), addr[1], o.local_host, o.local_port, None,
                         o.label)
            if data.strip(b"\r\n") == b"":
                return   # keep-alive (RFC 5626 §4.4.1 uses STUN; bare CRLF is common): ignore
            _deliver(data, src, o.on_message, o.on_error, o.limits)
        except Exception as exc:   # one datagram's trouble stays with it (DESIGN §10)
            log.error("error handling a datagram from %s on %s: %s", printable(addr, 80),
                      o.label, printable(repr(exc)))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on %s: %s", self.owner.label, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


class UdpTransport:
    """A UDP socket: datagrams in, datagrams out.

    Sends go only to IP literals (`ip_destination`); `send` may resolve a configured host
    name first. Should the socket close anyway, it is reopened on the same address;
    `on_dead(label, reason)` is called if that fails. `state`: open, reopening, dead, closed.
    """

    name = "udp"
    reliable = False

    def __init__(self, on_message: MessageCallback, on_error: ErrorCallback | None,
                 limits: SipLimits, label: str | None = None,
                 on_dead: DeadCallback | None = None) -> None:
        self.label = label or "udp"
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.limits = limits
        self.max_size = limits.max_message_size
        self.on_dead = on_dead
        self.local_host = ""
        self.local_port = 0
        self.reopened = 0
        self._closed = False
        self._dead = False
        self._family = socket.AF_INET
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _UdpProtocol | None = None
        self._reopen: asyncio.Task[None] | None = None

    @classmethod
    async def listen(cls, host: str, port: int, on_message: MessageCallback, *,
                     on_error: ErrorCallback | None = None, max_size: int | None = None,
                     limits: SipLimits = SIP_LIMITS, label: str | None = None,
                     on_dead: DeadCallback | None = None) -> UdpTransport:
        """Bind host:port (port 0 picks a free one; see `local_port`). `max_size`
        overrides `limits.max_message_size`."""
        if max_size is not None:
            limits = dataclasses.replace(limits, max_message_size=max_size)
        self = cls(on_message, on_error, limits, label, on_dead)
        await self._open(host, port)
        return self

    async def _open(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        proto = _UdpProtocol(self)
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=(host, port))
        self._transport, self._protocol = tr, proto
        raw = tr.get_extra_info("socket")
        if raw is not None:
            self._family = raw.family
            with contextlib.suppress(OSError):   # best effort: the kernel caps it (rmem_max)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        sock = tr.get_extra_info("sockname")
        self.local_host, self.local_port = sock[0], sock[1]

    @property
    def state(self) -> str:
        """The socket as it is: open, reopening, dead or closed (for `status`)."""
        if self._closed:
            return "closed"
        if self._dead:
            return "dead"
        if self._transport is None or self._transport.is_closing():
            return "reopening"
        return "open"

    def _lost(self, proto: _UdpProtocol, exc: Exception | None) -> None:
        if self._closed or proto is not self._protocol:
            return
        log.error("UDP listener %s on %s:%s closed (%s): reopening", self.label,
                  self.local_host, self.local_port, printable(repr(exc)))
        self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop())

    async def _reopen_loop(self) -> None:
        err = "?"
        for attempt in range(UDP_REOPEN_TRIES):
            if self._closed:
                return
            try:
                await self._open(self.local_host, self.local_port)
            except OSError as exc:
                err = str(exc)
                await asyncio.sleep(UDP_REOPEN_DELAY * (attempt + 1))
                continue
            self.reopened += 1
            log.warning("UDP listener %s reopened on %s:%s", self.label, self.local_host,
                        self.local_port)
            return
        self._dead = True
        log.error("UDP listener %s on %s:%s could not be reopened: %s", self.label,
                  self.local_host, self.local_port, err)
        if self.on_dead is not None:
            self.on_dead(self.label, err)

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram now to an IP literal (BadDestination otherwise; RFC 3261
        §18.1.1 size rules are the caller's concern). Never closes the socket."""
        dest = ip_destination(host, port, self._family)
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("UDP transport closed")
        try:
            self._transport.sendto(data, dest)
        except (OSError, ValueError, TypeError) as exc:   # defensive: the address is checked
            raise ConnectionError(f"send failed: {exc}") from exc

    async def send(self, data: bytes, host: str, port: int) -> None:
        """Same as `sendto`; a host name (from the configuration, never from a peer's
        message on the receive path) is resolved first, without blocking the loop."""
        bare = _bare(host)
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if _HOSTNAME_RE.fullmatch(bare) is None:
                raise BadDestination(f"not a host name: {printable(host, 80)!r}") from None
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(bare, port, family=self._family,
                                               type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                raise BadDestination(f"cannot resolve {bare}: {exc}") from exc
            if not infos:
                raise BadDestination(f"cannot resolve {bare}") from None
            bare = str(infos[0][4][0])
        self.sendto(data, bare, port)

    def close(self) -> None:
        """Close the socket."""
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        if self._transport is not None:
            self._transport.close()


# --- TCP / TLS ---

class Connection(asyncio.Protocol):
    """One TCP or TLS connection, framed by Content-Length.

    Accepted connections pass the listener's `ConnectionGate` first (DESIGN §10): refused
    ones are aborted before any TLS object or read buffer exists. An admitted TLS
    connection is upgraded with `loop.start_tls` (handshake within `handshake_timeout`);
    an admitted plain TCP connection must deliver its first whole message within
    `handshake_timeout`. Either way the slot is released when the connection ends.
    """

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
        self._gate_host: str | None = None   # holds a gate slot for this source address
        self._deadline: asyncio.TimerHandle | None = None
        self._upgrade: asyncio.Task[None] | None = None
        self._early = bytearray()

    @property
    def is_open(self) -> bool:
        """False once closing started."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        o = self.owner
        if self.outbound:
            self._established(transport)
            return
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        refusal = o.gate.admit(host)
        if refusal is not None:
            transport.abort()   # before any TLS state or buffer (DESIGN §10)
            log.debug("refused a connection from %s on %s: %s", host, o.label, refusal.value)
            self._finished()
            return
        self._gate_host = host
        loop = asyncio.get_running_loop()
        if o.ssl is not None:
            # not a byte to us before start_tls takes over: the ClientHello may already be
            # on its way, and it belongs to the TLS layer (start_tls resumes reading)
            transport.pause_reading()
            self._upgrade = loop.create_task(self._start_tls(transport, o.ssl))
            return
        self._deadline = loop.call_later(o.limits.handshake_timeout, self._too_slow)
        self._established(transport)

    async def _start_tls(self, raw: asyncio.Transport, ctx: _ssl.SSLContext) -> None:
        o = self.owner
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw, self, ctx, server_side=True,
                ssl_handshake_timeout=o.limits.handshake_timeout)
        except asyncio.CancelledError:
            raw.abort()
            self._release()
            raise
        except Exception as exc:   # handshake failed or took too long: start_tls closed it
            # asyncio aborts a handshake past ssl_handshake_timeout with ConnectionAbortedError
            timeout = isinstance(exc, ConnectionAbortedError)
            o.closed_by["handshake_timeout" if timeout else "handshake_failed"] += 1
            log.log(logging.DEBUG if timeout else logging.INFO,
                    "TLS handshake from %s on %s failed: %s", self._gate_host, o.label,
                    printable(str(exc) or type(exc).__name__))
            # the traceback holds start_tls's frame, which holds the future holding the
            # exception: a cycle keeping ~300 KB per connection until the (tuned, rare)
            # cyclic GC runs. Broken here, so a refused handshake frees its memory at once.
            exc.__traceback__ = None
            del exc
            raw.abort()
            self._release()
            self._finished()
            return
        if tls is None or self.closed.done():   # the peer went away as the handshake ended
            self._release()
            self._finished()
            return
        self._established(tls)
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self.data_received(early)

    def _too_slow(self) -> None:
        """No whole first message within handshake_timeout (plain TCP): close."""
        self._deadline = None
        self.owner.closed_by["first_message_timeout"] += 1
        log.debug("closing %s:%s on %s: no whole message within %.3g s", self.remote[0],
                 self.remote[1], self.owner.label, self.owner.limits.handshake_timeout)
        if self.transport is not None:
            self.transport.abort()

    def _release(self) -> None:
        if self._gate_host is not None:
            self.owner.gate.release(self._gate_host)
            self.owner.ended += 1
            self._gate_host = None

    def _finished(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _established(self, transport: asyncio.Transport) -> None:
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
        if src is None:
            # TLS: asyncio hands over data that came with the handshake's end before
            # start_tls returns to _start_tls; kept (bounded) until _established
            self._early += data
            if len(self._early) > self.owner.max_size + 65536 and self.transport is None:
                self._early.clear()
                self.owner.closed_by["too_large"] += 1
                if self._upgrade is not None:
                    self._upgrade.cancel()
            return
        o = self.owner
        try:
            raws = self.framer.feed(data)
        except SipParseError as exc:
            # RFC 3261 §18.3 / RFC 4475 §3.3.9: a stream cannot be resynchronised
            self._framing_failed(data, src, exc)
            return
        if self.framer.pings:
            self.write(b"\r\n" * self.framer.take_pings())   # RFC 5626 §3.5.1: one pong each
        if raws and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        for raw in raws:
            try:
                _deliver(raw, src, o.on_message, o.on_error, o.limits)
            except Exception as exc:   # one message's trouble stays with it (DESIGN §10)
                log.error("error handling a message from %s:%s on %s: %s", src.host, src.port,
                          o.label, printable(repr(exc)))
        if self.framer.error is not None:
            self._framing_failed(data, src, self.framer.error)

    def _framing_failed(self, data: bytes, src: Source, exc: SipParseError) -> None:
        """Answer what can be answered (513 with the rejected header section), then close."""
        head = self.framer.rejected_head
        self.owner.closed_by["too_large" if exc.status == 513 else "framing_error"] += 1
        try:
            self.owner.on_error(head if head is not None else data, src, exc)
        except Exception as err:
            log.error("error answering bad input from %s:%s: %s", src.host, src.port,
                      printable(repr(err)))
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._upgrade is not None and not self._upgrade.done():
            self._upgrade.cancel()   # lost before start_tls took the transport over
        self._release()
        self.owner._unregister(self)
        self._finished()

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
    mutual authentication); `client_ssl` is used for outgoing TLS connections. The
    listener is plain TCP: accepted connections pass `gate` (caps of `limits`) and only
    then get TLS (DESIGN §10). `closed_by` counts connections closed for bad behaviour.
    """

    reliable = True

    def __init__(self, on_message: MessageCallback, on_error: ErrorCallback | None, *,
                 ssl: _ssl.SSLContext | None, client_ssl: _ssl.SSLContext | None,
                 limits: SipLimits, idle_timeout: float | None, connect_timeout: float,
                 keepalive_interval: float | None, label: str | None = None) -> None:
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.ssl = ssl
        self.client_ssl = client_ssl
        self.name = "tls" if (ssl is not None or client_ssl is not None) else "tcp"
        self.label = label or self.name
        self.limits = limits
        self.max_size = limits.max_message_size
        self.gate = ConnectionGate(limits)
        self.ended = 0   # admitted connections that have ended (for memory housekeeping)
        self.closed_by: Counter[str] = Counter()
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
                     client_ssl: _ssl.SSLContext | None = None, max_size: int | None = None,
                     limits: SipLimits = SIP_LIMITS,
                     idle_timeout: float | None = 600.0, connect_timeout: float = 5.0,
                     keepalive_interval: float | None = None,
                     accept: bool = True, label: str | None = None) -> StreamTransport:
        """Listen on host:port (port 0 = free port). `accept=False` makes a client only.
        `max_size` overrides `limits.max_message_size`."""
        if max_size is not None:
            limits = dataclasses.replace(limits, max_message_size=max_size)
        self = cls(on_message, on_error, ssl=ssl, client_ssl=client_ssl, limits=limits,
                   idle_timeout=idle_timeout, connect_timeout=connect_timeout,
                   keepalive_interval=keepalive_interval, label=label)
        if accept:
            loop = asyncio.get_running_loop()
            # plain TCP: TLS starts only after the gate admitted the connection
            self._server = await loop.create_server(lambda: Connection(self, False), host, port)
            sock = self._server.sockets[0].getsockname()
            self.local_host, self.local_port = sock[0], sock[1]
        if idle_timeout is not None or keepalive_interval is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return self

    @property
    def state(self) -> str:
        """open (accepting), client (no listener), or closed (for `status`)."""
        if self._server is None:
            return "client"
        return "open" if self._server.is_serving() else "closed"

    def status(self) -> dict[str, object]:
        """Gate counters (open, sources, refusals by reason) and closes by reason."""
        out = self.gate.status()
        out["closed"] = dict(sorted(self.closed_by.items()))
        return out

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
