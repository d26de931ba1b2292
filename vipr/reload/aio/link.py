"""TLS-TCP-FH-NO-ICE links (RFC 6940 §6.6): the asyncio shell over TLS 1.2+ with mutual
authentication. `Link`, `connect()` and `serve()` feed the TLS stream to the sans-I/O
`FramingState` (core/framing.py) and carry out what it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography import x509

from vipr.daemon import MemoryReleaser
from vipr.limits import OVERLAY_LIMITS, ConnectionGate, ListenerLimits, Refusal
from vipr.metrics import watch_listener
from vipr.reload.core.framing import (
    DEAD_AFTER,
    DEFAULT_MAX_MESSAGE_SIZE,
    AckFrame,
    DataFrame,
    FramingState,
    TooLarge,
)
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.forwarding import ForwardingHeader
from vipr.reload.wire.security import NodeCredentials, ReloadSecurityError, TrustStore

log = logging.getLogger("vipr.reload.aio.link")

LINGER = 0.5  # seconds a closing link waits for the peer's close_notify/FIN, then aborts


MessageHandler = Callable[["Link", bytes], Awaitable[None] | None]
Tap = Callable[["Link", bool, bytes], None]  # (link, outgoing, stream bytes) — for pcaps
TooLargeHandler = Callable[["Link", ForwardingHeader], Awaitable[bytes | None] | bytes | None]


def make_ssl_context(creds_files: tuple[Path, Path], trust: TrustStore, *,
                     server: bool, keylog: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+, our certificate, peer certificate required and chained to the overlay roots.

    Hostname checks are off: the peer's identity is its Node-ID, checked after the handshake.
    `keylog`: append the session secrets (NSS key log format) for Wireshark (debug capture).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if keylog is not None:
        ctx.keylog_filename = keylog
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(creds_files[0]), str(creds_files[1]))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED  # §6.5.1.11: the TLS server MUST request client auth
    if trust.roots:
        ctx.load_verify_locations(cadata=trust.roots_pem())
    return ctx


class Link:
    """One authenticated TLS framed connection to a peer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_cert: x509.Certificate,
        peer_node_ids: tuple[bytes, ...],
        *,
        on_message: MessageHandler | None = None,
        on_too_large: TooLargeHandler | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        dead_after: float = DEAD_AFTER,
        tap: Tap | None = None,
        outbound: bool,
        first_message_within: float | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer_cert = peer_cert
        self.peer_node_ids = peer_node_ids
        self.peer_node_id = peer_node_ids[0]
        self.outbound = outbound
        self.state = FramingState(max_message_size=max_message_size, dead_after=dead_after)
        self.on_message = on_message
        self.on_too_large = on_too_large
        self.tap = tap
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.acked = asyncio.Event()  # set on every ACK frame (an RTT sample may exist)
        self.close_reason = ""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        # DESIGN §10: an accepted link that carries no RELOAD message this soon is closed.
        self.first_message_within = first_message_within
        self._got_message = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._read_loop())
        self._watch = loop.create_task(self._watchdog())

    @property
    def peer_address(self) -> tuple[str, int] | None:
        peer = self._writer.get_extra_info("peername")
        return (peer[0], peer[1]) if peer else None

    @property
    def local_address(self) -> tuple[str, int] | None:
        own = self._writer.get_extra_info("sockname")
        return (own[0], own[1]) if own else None

    async def send(self, message: bytes) -> None:
        """Frame and send one RELOAD message (refused when over max-message-size)."""
        if self.closed.is_set():
            raise ConnectionError(f"link closed: {self.close_reason}")
        if len(message) > self.state.max_message_size:
            raise ValueError(f"message of {len(message)} bytes exceeds max-message-size")
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._writer.transport.is_closing():  # TLS writes after close fail oddly (3.11)
                raise ConnectionError("link closing")
            self._write(self.state.send_data(message, loop.time()))
            await self._writer.drain()

    def _write(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap(self, True, data)
        self._writer.write(data)

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests: oversize or broken frames)."""
        self._write(data)
        await self._writer.drain()

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        reason = "eof"
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                if self.tap is not None:
                    self.tap(self, False, chunk)
                events, acks = self.state.receive(chunk, loop.time())
                if acks:
                    self._write(acks)
                for ev in events:
                    if isinstance(ev, DataFrame):
                        self._got_message.set()
                        await self._deliver(ev.message)
                    elif isinstance(ev, AckFrame):
                        self.acked.set()
                    elif isinstance(ev, TooLarge):
                        await self._too_large(ev)
                        reason = "message too large"
                        return
        except ReloadDecodeError as e:
            reason = f"framing error: {e}"
        except (ConnectionError, OSError, ssl.SSLError) as e:
            reason = f"connection error: {e}"
        except asyncio.CancelledError:
            reason = "closed"
            raise
        except Exception as e:  # a bug here closes this link only, never the node
            log.exception("link to %s: reader failed", self.peer_node_id.hex()[:8])
            reason = f"internal error: {e!r}"
        finally:
            await self._finish(reason)

    async def _deliver(self, message: bytes) -> None:
        if self.on_message is None:
            self.inbox.put_nowait(message)
            return
        try:
            r = self.on_message(self, message)
            if r is not None:
                await r
        except Exception:  # a handler bug must not kill the link
            log.exception("message handler failed")

    async def _too_large(self, ev: TooLarge) -> None:
        # §6.6: Error_Message_Too_Large, then close; a header larger than the limit → silent close.
        log.info("link to %s: frame of %d bytes over max-message-size %d: closing",
                 self.peer_node_id.hex()[:8], ev.length, self.state.max_message_size)
        if ev.header is None or self.on_too_large is None:
            return
        try:
            r = self.on_too_large(self, ev.header)
            data = await r if asyncio.iscoroutine(r) else r
        except Exception:  # a handler bug must not kill the reader's cleanup
            log.exception("too-large handler failed")
            return
        if isinstance(data, bytes):
            with contextlib.suppress(ConnectionError, OSError):
                self._write(self.state.send_data(data, asyncio.get_running_loop().time()))
                await self._writer.drain()

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        if self.first_message_within is not None:
            try:
                await asyncio.wait_for(self._got_message.wait(), self.first_message_within)
            except TimeoutError:
                log.info("link from %s carried no message within %.3g s: closing",
                         self.peer_node_id.hex()[:8], self.first_message_within)
                self._spawn_close("no message within the handshake timeout")
                return
        while not self.closed.is_set():
            await asyncio.sleep(min(1.0, self.state.dead_after / 4))
            if self.state.dead(loop.time()):
                log.info("link to %s dead: no ACK for %.1fs", self.peer_node_id.hex(),
                         self.state.dead_after)
                await self.close("dead link (no ACK)")
                return

    def _spawn_close(self, reason: str) -> None:
        """Close from the watchdog itself (`close` would cancel and await it)."""
        self.close_reason = self.close_reason or reason
        if self._task is not None:
            self._task.cancel()  # the read loop's `finally` closes the transport

    async def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        self.closed.set()
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), LINGER)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            self._writer.transport.abort()  # the peer does not answer close_notify: drop it

    async def close(self, reason: str = "closed") -> None:
        self.close_reason = self.close_reason or reason
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as e:  # the reader's own failure: logged, the close goes on
                log.info("link to %s: reader ended with %r", self.peer_node_id.hex()[:8], e)
        await self._finish(reason)

    async def receive(self, timeout: float = 5.0) -> bytes:
        """Next message from `inbox` (when no `on_message` handler is set)."""
        return await asyncio.wait_for(self.inbox.get(), timeout)


def _peer_identity(writer: asyncio.StreamWriter, trust: TrustStore,
                   expected: bytes | None) -> tuple[x509.Certificate, tuple[bytes, ...]]:
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if not der:
        raise ReloadSecurityError("peer presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    ids = trust.validate(cert)  # §6.5.1.11 / §13.3: chain, validity, Node-IDs from the cert
    if expected is not None and expected not in ids:
        raise ReloadSecurityError("peer certificate does not hold the expected Node-ID")
    return cert, ids


async def connect(
    host: str,
    port: int,
    creds_files: tuple[Path, Path],
    trust: TrustStore,
    *,
    expected_node_id: bytes | None = None,
    timeout: float = 10.0,
    keylog: str | None = None,
    **link_kwargs: object,
) -> Link:
    """Open a framed TLS link as TLS client; checks the peer's Node-ID when one is expected."""
    ctx = make_ssl_context(creds_files, trust, server=False, keylog=keylog)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx), timeout)
    try:
        cert, ids = _peer_identity(writer, trust, expected_node_id)
    except ReloadSecurityError:
        writer.close()
        raise
    link = Link(reader, writer, cert, ids, outbound=True, **link_kwargs)  # type: ignore[arg-type]
    link.start()
    return link


class Listener:
    """What one RELOAD listener holds (DESIGN §10): `gate` counts the connections that have
    not authenticated yet (per-listener and per-source caps: what an unauthenticated peer may
    hold); `members` counts the links whose peer presented a valid overlay certificate. Both
    together stay under `max_connections`."""

    def __init__(self, limits: ListenerLimits = OVERLAY_LIMITS) -> None:
        self.limits = limits
        self.gate = ConnectionGate(limits)
        self.members = 0
        watch_listener("reload", self)
        self.closed: Counter[str] = Counter()  # unauthenticated connections closed, by reason
        self.memory = MemoryReleaser()  # handshakes that failed or timed out

    def admit(self, source: str) -> Refusal | None:
        if self.gate.open + self.members >= self.limits.max_connections:
            self.gate.refused[Refusal.LISTENER_FULL] += 1
            return Refusal.LISTENER_FULL
        return self.gate.admit(source)

    def status(self) -> dict[str, object]:
        return {**self.gate.status(), "members": self.members, "closed": dict(self.closed)}


async def serve(
    host: str,
    port: int,
    creds_files: tuple[Path, Path],
    trust: TrustStore,
    on_link: Callable[[Link], Awaitable[None] | None],
    *,
    listener: Listener | None = None,
    keylog: str | None = None,
    **link_kwargs: object,
) -> asyncio.Server:
    """Listen for framed TLS links; `on_link` gets each authenticated link (started).

    DESIGN §10: every TCP connection passes the listener's gate before any TLS state exists;
    TLS then starts on the admitted socket, with the gate's `handshake_timeout`. Once the peer's
    certificate checks out the connection leaves the gate (a provider's many nodes share one
    address) and counts as a member link; one that has not sent its first RELOAD message by
    `handshake_timeout` after accept is closed."""
    ctx = make_ssl_context(creds_files, trust, server=True, keylog=keylog)
    lst = listener or Listener()
    limits = lst.limits

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.handshake_timeout
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        refusal = lst.admit(source)
        if refusal is not None:
            log.debug("refusing a connection from %s: %s", source, refusal.value)
            writer.transport.abort()
            return
        try:
            try:
                await writer.start_tls(ctx, ssl_handshake_timeout=limits.handshake_timeout)
                cert, ids = _peer_identity(writer, trust, None)
            finally:
                lst.gate.release(source)
        except (ReloadSecurityError, ValueError, ssl.SSLError, ConnectionError, OSError) as e:
            # asyncio aborts a handshake past ssl_handshake_timeout with ConnectionAbortedError:
            # under a flood those are many, so they are counted in status, not logged at info
            timeout = isinstance(e, ConnectionAbortedError)
            lst.closed[("handshake_timeout" if timeout else "handshake_failed")] += 1
            log.log(logging.DEBUG if timeout else logging.INFO,
                    "rejecting a link from %s: %r", source, e)
            # the traceback holds start_tls's frame, which holds the future holding the
            # exception: a cycle keeping the SSL object and its buffers until the (tuned,
            # rare) cyclic GC. Broken here so that a failed handshake frees its memory.
            e.__traceback__ = None
            del e
            writer.transport.abort()
            lst.memory.ended()
            return
        except asyncio.CancelledError:  # the loop is shutting down
            writer.transport.abort()
            return
        lst.members += 1
        try:
            link = Link(reader, writer, cert, ids, outbound=False,
                        first_message_within=max(0.0, deadline - loop.time()),
                        **link_kwargs)  # type: ignore[arg-type]
            link.start()
            r = on_link(link)
            if r is not None:
                await r
            await link.closed.wait()
        except asyncio.CancelledError:
            writer.transport.abort()
        except Exception:  # one connection's failure never reaches the listener
            log.exception("link from %s failed", source)
            writer.transport.abort()
        finally:
            lst.members -= 1

    return await asyncio.start_server(handle, host, port)


def link_files(creds: NodeCredentials, directory: Path) -> tuple[Path, Path]:
    """Write the node's certificate and key where `ssl` can load them."""
    return creds.write(directory)
