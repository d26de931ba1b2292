"""SIP over TCP and TLS (RFC 3261 §18.3 framing, RFC 5626 §3.5.1 keep-alives), with the
connection caps of DESIGN §10: a plain TCP listener, `ConnectionGate` at accept, TLS only
after admission (`loop.start_tls`), a handshake / first-message deadline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl as _ssl
import time
from collections import Counter

from vipr.daemon import MemoryReleaser
from vipr.limits import SIP_LIMITS, ConnectionGate, SipLimits
from vipr.logsetup import printable
from vipr.metrics import watch_listener
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.framing import StreamFramer
from vipr.proxy.sip.source import (
    ErrorCallback,
    MessageCallback,
    Source,
    _bare,
    _deliver,
    _log_error,
    cert_dns_names,
)

log = logging.getLogger("vipr.proxy.sip.transport")

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
        self._raw: asyncio.Transport | None = None   # the TCP transport under TLS
        self._evicted = False

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
        g = o.gate
        if (g.open >= g.limits.max_connections and o.unauthenticated
                and g.held_by(host) < g.limits.max_connections_per_address):
            # full: the oldest connection still without a handshake (or first message)
            # makes room, so a flood of silent peers cannot lock out an honest one, whose
            # handshake takes milliseconds (DESIGN §10)
            o.evict_oldest_unauthenticated()
        refusal = g.admit(host)
        if refusal is not None:
            transport.abort()   # before any TLS state or buffer (DESIGN §10)
            log.debug("refused a connection from %s on %s: %s", host, o.label, refusal.value)
            self._finished()
            return
        self._gate_host = host
        self._raw = transport
        o.unauthenticated[self] = None
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
            if not self._evicted:
                o.closed_by["handshake_timeout" if timeout else "handshake_failed"] += 1
            # a flood must not become a flood of log lines: timeouts and evictions are
            # counted in status; a handshake that failed (e.g. a bad certificate) is logged
            log.log(logging.DEBUG if timeout or self._evicted else logging.INFO,
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
        o.unauthenticated.pop(self, None)
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

    def evict(self) -> None:
        """Make room for a newer connection (listener full; this one is unauthenticated)."""
        self.owner.closed_by["evicted"] += 1
        self._evicted = True
        self._release()
        if self._raw is not None:
            self._raw.abort()

    def _release(self) -> None:
        self.owner.unauthenticated.pop(self, None)
        if self._gate_host is not None:
            self.owner.gate.release(self._gate_host)
            self.owner.memory.ended()
            self._gate_host = None

    def _finished(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _established(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)   # None once gone
        sock = transport.get_extra_info("sockname") or ("", 0)
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
            o.unauthenticated.pop(self, None)
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
        # accepted connections not yet authenticated (TLS handshake / first message), oldest
        # first: the ones a full listener evicts
        self.unauthenticated: dict[Connection, None] = {}
        # admitted connections that ended: their memory is given back in bursts (DESIGN §10)
        self.memory = MemoryReleaser()
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
            watch_listener(f"sip_{self.label}", self)
        if idle_timeout is not None or keepalive_interval is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return self

    @property
    def state(self) -> str:
        """open (accepting), client (no listener), or closed (for `status`)."""
        if self._server is None:
            return "client"
        return "open" if self._server.is_serving() else "closed"

    def evict_oldest_unauthenticated(self) -> None:
        """Close the oldest connection that has not authenticated yet, freeing its slot."""
        victim = next(iter(self.unauthenticated))
        victim.evict()

    def status(self) -> dict[str, object]:
        """Gate counters (open, sources, refusals by reason) and closes by reason."""
        out = self.gate.status()
        out["unauthenticated"] = len(self.unauthenticated)
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
