"""TLS-SRP (RFC 5054) over asyncio with tlslite-ng (DESIGN §5).

tlslite-ng's handshake/read/write/close generators run over an in-memory "socket" (`_Bio`) that
an `asyncio.Protocol` feeds (pattern C of deps.md §3): a yielded 0 means "wants to read", 1
"wants to write". Bytes tlslite sends are buffered and written to the transport by the event
loop after each step, so a step may also run in a worker thread (`offload=True`): the big-number
work (SRP modexp) then leaves the event loop. Every operation has a deadline.

Settings: TLS 1.2 only (`minVersion = maxVersion = (3, 3)`: tlslite's SRP client offers TLS 1.3
otherwise and the handshake fails, deps.md §3), SRP suites only, group ≥ 2048 bits on the client
(`minKeySize`), the server's verifiers use the RFC 5054 2048-bit group.

The server needs the SRP login before it can pick a verifier, and the store lookup is async:
`SrpConnection.peek_login` waits for the whole ClientHello, reads the SRP extension (RFC 5054
§2.8.1) and leaves the bytes in the buffer for the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import threading
import time
import weakref
from collections.abc import Generator
from concurrent.futures import Executor
from typing import Any

from tlslite import HandshakeSettings, TLSConnection
from tlslite.constants import AlertDescription
from tlslite.errors import (
    TLSAbruptCloseError,
    TLSAlert,
    TLSError,
    TLSLocalAlert,
    TLSRemoteAlert,
)
from tlslite.utils import cryptomath

from vipr.pvp import aes
from vipr.pvp.hello import SrpError, client_hello, srp_identity
from vipr.pvp.outer import OuterLayer, OuterTls, PeerIdentity, protocol_version_alert, sni_name
from vipr.pvp.verifier import VerifierEntry, make_verifier

# Record-layer AES through OpenSSL (`cryptography`), not tlslite's pure Python: see vipr.pvp.aes.
aes.install()


def gmpy2_release_gil() -> None:
    """Let gmpy2 release the GIL during its big-number operations (SRP's modexps, ~0.2-0.3 ms
    each). By default it holds it, and then the store's aiosqlite thread, woken for a
    statement or finishing one, waits for the GIL until the switch interval (5 ms) forces it
    off the busy event loop: bench/pvp.py measured +0.07-0.11 on the full/bare ratio and
    -0.6 ms CPU per validation with it on. mpz values are immutable, so nothing can change
    under a released operation. gmpy2 contexts are per thread: this applies to the calling
thread's. Called at import (the loop's thread) and by each offload worker (its initializer)."""
    if cryptomath.GMPY2_LOADED:
        import gmpy2

        gmpy2.get_context().allow_release_gil = True


gmpy2_release_gil()

__all__ = [
    "SRP_BITS",
    "SrpConnection",
    "SrpError",
    "VerifierEntry",
    "client_settings",
    "gmpy2_release_gil",
    "loop_turn",
    "make_verifier",
    "server_settings",
    "srp_identity",
]

SRP_BITS = 2048
MAX_INBUF = 64 * 1024  # unread input bytes before the transport stops reading (backpressure)



def _settings() -> HandshakeSettings:
    s = HandshakeSettings()
    s.minVersion = (3, 3)
    s.maxVersion = (3, 3)
    s.minKeySize = SRP_BITS
    # SRP suites with AES-CBC/SHA-1 (RFC 5054 defines only these); AES-256 preferred.
    s.cipherNames = ["aes256", "aes128"]
    return s


def client_settings() -> HandshakeSettings:
    return _settings()


def server_settings() -> HandshakeSettings:
    return _settings()


# Shared by every connection: tlslite only reads them (each handshake validates a copy).
_CLIENT_SETTINGS = client_settings()
_SERVER_SETTINGS = server_settings()


def default_offload() -> bool:
    """Whether big-number steps run in worker threads by default: no, with gmpy2 or without.
    On the loop, time-sliced (`_LoopSlice`), the longest loop stall under 20 concurrent
    validations measured 7-11 ms with gmpy2 and 21-35 ms in pure Python. In the daemon's
    worker threads it was 5-11 ms with gmpy2 (which releases the GIL there too) at 5-20 %
    less throughput, and 69-145 ms in pure Python (the workers hold the GIL for whole switch
    intervals while the loop waits for it) (bench/pvp.py, docs/benchmarks.md ## PVP).
    `offload=True` remains for an embedding whose loop cannot take a whole step (2 ms with
    gmpy2, 10-20 ms without) at once."""
    return False


def _alert_name(e: TLSAlert) -> str:
    return str(AlertDescription.toStr(e.description))


def classify(e: BaseException) -> SrpError:
    """tlslite's exceptions → SrpError with a stable kind."""
    if isinstance(e, SrpError):
        return e
    if isinstance(e, TLSRemoteAlert | TLSLocalAlert):
        d = e.description
        name = _alert_name(e)
        if d in (AlertDescription.bad_record_mac, AlertDescription.decrypt_error):
            return SrpError("wrong-password", name)
        if d == AlertDescription.unknown_psk_identity:
            return SrpError("unknown-identity", name)
        if d == AlertDescription.insufficient_security:
            return SrpError("insufficient-security", name)
        side = "remote" if isinstance(e, TLSRemoteAlert) else "local"
        return SrpError("tls", f"{side} alert {name}")
    if isinstance(e, TLSAbruptCloseError | ConnectionError | EOFError):
        return SrpError("closed", type(e).__name__)
    if isinstance(e, TLSError):
        return SrpError("tls", f"{type(e).__name__}: {e!r}"[:200])
    return SrpError("tls", f"{type(e).__name__}"[:200])


class _Bio:
    """The socket tlslite's BufferedSocket sees: input fed by the protocol, output collected
    for the loop to write. Thread-safe, so a generator step may run in a worker thread."""

    def __init__(self, peer: tuple[Any, ...] | None, local: tuple[Any, ...] | None) -> None:
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        self.lock = threading.Lock()
        self._peer = peer
        self._local = local

    def recv(self, n: int) -> bytes:
        with self.lock:
            if not self.inbuf:
                if self.eof:
                    return b""
                raise BlockingIOError(errno.EWOULDBLOCK, "would block")
            d = bytes(self.inbuf[:n])
            del self.inbuf[:n]
            return d

    def send(self, data: bytes | bytearray) -> int:
        with self.lock:
            self.outbuf += data
        return len(data)

    def sendall(self, data: bytes | bytearray) -> None:
        self.send(data)

    def take_output(self) -> bytes:
        with self.lock:
            out = bytes(self.outbuf)
            self.outbuf.clear()
            return out

    def close(self) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def getpeername(self) -> tuple[Any, ...] | None:
        return self._peer

    def getsockname(self) -> tuple[Any, ...] | None:
        return self._local

    def settimeout(self, v: float | None) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None


_DONE = object()

_REC_ALERT = 21
_REC_HANDSHAKE = 22
_MAX_ALERT_RECORD = 256  # an encrypted 2-byte alert: MAC, IV and padding at most add ~100

LOOP_SLICE = 0.002  # s of TLS work on the loop before a connection lets the loop turn


class _LoopSlice:
    """Cooperative time slicing among the connections whose TLS steps run on one loop.

    A step (an SRP modexp, a flight's parsing) takes 0.3-2 ms with gmpy2, several ms without.
    When many connections become ready in the same loop iteration their steps would run back
    to back, and nothing else would run meanwhile (timers, other I/O). Before each step a
    connection asks for a `turn`: once TLS work has run for `LOOP_SLICE` since the slice
    began, it yields (`sleep(0)` resumes it in the next iteration, after the loop has polled
    I/O and run due timers), and the first callback of that next iteration opens a new slice.
    The TLS steps of one iteration so take about one slice plus one step. With 20 validations
    at once the longest stall went from ~50 ms to 9-11 ms (2 ms slices, bench/pvp.py)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.start = time.perf_counter()
        self.opening = False

    def _open(self) -> None:
        self.start = time.perf_counter()
        self.opening = False

    async def turn(self) -> None:
        while time.perf_counter() - self.start > LOOP_SLICE:
            if not self.opening:
                self.opening = True
                self.loop.call_soon(self._open)  # runs before the tasks yielding now
            await asyncio.sleep(0)


_slices: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSlice] = (
    weakref.WeakKeyDictionary()
)


def _loop_slice() -> _LoopSlice:
    loop = asyncio.get_running_loop()
    sl = _slices.get(loop)
    if sl is None:
        sl = _slices[loop] = _LoopSlice(loop)
    return sl


async def loop_turn() -> None:
    """Wait for a turn before CPU-heavy work on the loop (see `_LoopSlice`)."""
    await _loop_slice().turn()


def _step(gen: Generator[Any, None, None]) -> Any:
    try:
        return next(gen)
    except StopIteration:
        return _DONE


class SrpConnection(asyncio.Protocol):
    """One TCP connection carrying TLS-SRP. Create it with `loop.create_connection` or
    `loop.create_server` (a factory), then call the async methods.

    The connection's whole life is bounded by one deadline, `lifetime` seconds after
    `connection_made`: then the transport is aborted and a waiting or later operation raises
    SrpError("timeout"). One timer per connection, not one per step: a validation is a dozen
    steps, and a timer each cost the loop more than the rest of this class's plumbing
    (docs/benchmarks.md ## PVP, "Third round"). `auth_timeout`, when given, is a second and
    shorter deadline that only a finished handshake cancels (DESIGN §10: an unauthenticated
    peer holds a connection for a few seconds at most).

    Memory before the handshake (DESIGN §10): the tlslite connection object is created only
    when a handshake starts, and the input buffer is bounded: over `MAX_INBUF` unread bytes
    the transport stops reading until tlslite has taken some (a TLS record is at most
    2^14 + 2048 bytes, RFC 5246 §6.2.3, so a step never needs more)."""

    def __init__(
        self, *, lifetime: float, executor: Executor | None = None, offload: bool = False,
        auth_timeout: float | None = None,
    ) -> None:
        self.lifetime = lifetime
        self.auth_timeout = auth_timeout
        self.executor = executor
        self.offload = offload
        self.transport: asyncio.Transport | None = None
        self.bio = _Bio(None, None)
        self.tls: TLSConnection | None = None
        self._data = asyncio.Event()
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self.lost = False
        self.expired = False
        self.authenticated = False
        self._why = ""
        self._expiry: asyncio.TimerHandle | None = None
        self._auth_expiry: asyncio.TimerHandle | None = None
        self._paused = False
        self.outer: OuterLayer | None = None  # profile v2's outer TLS, once started
        self.identity: PeerIdentity | None = None  # the peer's, once the outer TLS is up
        self._outer_error = ""
        self._received = 0  # data_received calls
        self._corked = False  # `write(more=True)`: output held for the next flush

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.bio = _Bio(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
        self._start_timers()
        self.connected.set()

    def _start_timers(self) -> None:
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            self.lifetime, self._expire, f"connection older than {self.lifetime:g} s")
        if self.auth_timeout is not None:
            self._auth_expiry = loop.call_later(
                self.auth_timeout, self._expire,
                f"no finished handshake within {self.auth_timeout:g} s")

    def data_received(self, data: bytes) -> None:
        self._received += 1
        if self.outer is not None:
            try:
                data = self.outer.feed(data)
            except ssl.SSLError as e:
                self._outer_error = _ssl_reason(e)
                self.bio.eof = True
                self._data.set()
                return
            if self.outer.closed:
                self.bio.eof = True
            self._send_raw(self.outer.take_out())  # e.g. a KeyUpdate answer
            if (self.outer.incoming.pending >= MAX_INBUF and not self._paused
                    and self.transport is not None):  # a handshake flight is far smaller
                self._paused = True
                self.transport.pause_reading()
        with self.bio.lock:
            self.bio.inbuf += data
            full = len(self.bio.inbuf) >= MAX_INBUF
        if full and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._data.set()

    def eof_received(self) -> bool | None:
        self.bio.eof = True
        self._data.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.bio.eof = True
        self.lost = True
        self._cancel_timers()
        self._data.set()
        self._lost.set()

    def _cancel_timers(self) -> None:
        for t in (self._expiry, self._auth_expiry):
            if t is not None:
                t.cancel()

    def _expire(self, why: str) -> None:
        self.expired = True
        self._why = why
        self._data.set()
        self.abort()

    def _authenticated(self) -> None:
        self.authenticated = True
        if self._auth_expiry is not None:
            self._auth_expiry.cancel()
            self._auth_expiry = None

    def _tls(self) -> TLSConnection:
        if self.tls is None:
            self.tls = TLSConnection(self.bio)
        return self.tls

    # ------------------------------------------------------------ driving tlslite

    @property
    def peer(self) -> str:
        p = self.bio.getpeername()
        if not p:
            return "?"
        return f"[{p[0]}]:{p[1]}" if ":" in str(p[0]) else f"{p[0]}:{p[1]}"

    def _timeout(self, what: str) -> SrpError:
        return SrpError("timeout", f"{what}: {self._why or 'expired'}")

    def _send_raw(self, out: bytes) -> None:
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _flush(self) -> None:
        if self._corked:
            return
        out = self.bio.take_output()
        if self.outer is not None and out:
            out = self.outer.wrap(out)
        self._send_raw(out)

    # ------------------------------------------------------------ the outer TLS (profile v2)

    async def _outer_wait(self, what: str, seen: int) -> None:
        """Wait for raw input beyond the `seen`-th chunk during the outer handshake (what is
        buffered now, OpenSSL has taken: a partial record waits for more)."""
        self._data.clear()
        assert self.outer is not None
        if self._paused and self.outer.incoming.pending < MAX_INBUF and self.transport:
            self._paused = False
            self.transport.resume_reading()
        if self._received == seen and not self.bio.eof:
            await self._data.wait()
        if self.expired:
            raise self._timeout(what)

    async def _outer_handshake(self, what: str) -> None:
        outer = self.outer
        assert outer is not None
        while True:
            if self.expired:
                raise self._timeout(what)
            await _loop_slice().turn()  # an RSA signature is ~2 ms of CPU
            seen = self._received
            try:
                done = outer.handshake()
            except ssl.SSLError as e:
                self._send_raw(outer.take_out())  # our alert
                raise SrpError("outer-tls", _ssl_reason(e)) from None
            self._send_raw(outer.take_out())
            if done:
                break
            if self.bio.eof and not outer.incoming.pending:
                raise SrpError("closed", f"{what}: {self._outer_error or 'connection closed'}")
            await self._outer_wait(what, seen)
        plain = outer.feed(b"")  # what came with the peer's last flight
        if plain:
            with self.bio.lock:
                self.bio.inbuf += plain

    async def outer_connect(self, tls: OuterTls, node_id: str) -> PeerIdentity:
        """Client: the outer TLS to the server of Node-ID `node_id` (hex). Returns once the
        server has confirmed the handshake, before any SRP byte; SrpError otherwise."""
        p = self.bio.getpeername()
        key = (str(p[0]) if p else "?", int(p[1]) if p else 0, node_id)
        outer = self.outer = OuterLayer(tls.client_context, server_side=False,
                                        server_hostname=sni_name(node_id),
                                        session=tls.session(key))
        try:
            await self._outer_handshake("outer handshake")
            try:
                ident = tls.identify(outer.peer_der())
            except ValueError as e:
                raise SrpError("outer-tls", f"server certificate: {e}") from None
            if node_id not in ident.node_ids:
                raise SrpError("wrong-node", f"server certificate is for {ident.describe()}, "
                                             f"not node {node_id}")
            # The server's go-ahead (see vipr.pvp.outer): its ticket follows our Finished, so
            # it cannot be here yet. Reading `session` costs ~0.3 ms (CPython copies it), so
            # it is read only after new input.
            session: ssl.SSLSession | None = None
            seen = self._received
            while session is None or not session.has_ticket:
                self._data.clear()
                if self._received == seen and not self.bio.eof:
                    await self._data.wait()
                seen = self._received
                if self.expired:
                    raise self._timeout("outer handshake confirmation")
                if self.bio.eof:
                    why = self._outer_error or "connection closed"
                    raise SrpError("outer-tls", f"server refused the handshake: {why}")
                session = outer.obj.session
        except SrpError:
            tls.forget(key)
            raise
        tls.remember(key, session)
        self.identity = ident
        return ident

    async def outer_accept(self, tls: OuterTls) -> PeerIdentity:
        """Server: the outer TLS from a client; its certificate's identity. A profile-v1
        client (a raw TLS-SRP ClientHello) gets a protocol_version alert: SrpError v1-client."""
        hello = await self.peek_hello()
        try:
            srp_identity(hello)
        except SrpError:
            pass  # no SRP extension: a TLS 1.3 ClientHello, as profile v2 wants
        else:
            self._send_raw(protocol_version_alert())
            raise SrpError("v1-client", "raw TLS-SRP ClientHello without the outer TLS "
                                        "(profile v2 wants TLS 1.3 with ALPN vipr-pvp/2)")
        self.outer = OuterLayer(tls.server_context, server_side=True)
        with self.bio.lock:
            raw = bytes(self.bio.inbuf)
            self.bio.inbuf.clear()
        self.outer.incoming.write(raw)
        await self._outer_handshake("outer handshake")
        try:
            return tls.identify(self.outer.peer_der())
        except ValueError as e:
            raise SrpError("outer-tls", f"client certificate: {e}") from None

    async def _wait_data(self, what: str) -> None:
        self._data.clear()
        with self.bio.lock:
            ready = bool(self.bio.inbuf) or self.bio.eof
            drained = len(self.bio.inbuf) < MAX_INBUF
        if self._paused and drained and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if not ready:
            await self._data.wait()
        if self.expired:
            raise self._timeout(what)

    async def _drive(self, what: str, gen: Generator[Any, None, None]) -> Any:
        loop = asyncio.get_running_loop()
        loop_slice = _loop_slice()
        while True:
            try:
                if self.offload:
                    r = await loop.run_in_executor(self.executor, _step, gen)
                else:
                    await loop_slice.turn()
                    r = _step(gen)
            finally:
                self._flush()  # an alert tlslite sends before raising goes out too
            if r is _DONE:
                return None
            if r == 0:
                await self._wait_data(what)
            elif r == 1:
                await asyncio.sleep(0)
            else:
                return r

    async def _run(self, what: str, gen: Generator[Any, None, None]) -> Any:
        if self.expired:
            raise self._timeout(what)
        try:
            return await self._drive(what, gen)
        except (TLSError, OSError, EOFError) as e:
            raise classify(e) from None
        except (ValueError, TypeError, AssertionError, IndexError, SyntaxError) as e:
            # tlslite's parser raises these on some malformed input
            raise SrpError("tls", f"{what}: {type(e).__name__}") from None

    async def handshake_client(
        self, username: str, password: str, settings: HandshakeSettings | None = None
    ) -> None:
        gen = self._tls().handshakeClientSRP(
            username, password, settings=settings or _CLIENT_SETTINGS, async_=True
        )
        await self._run("handshake", gen)
        self._authenticated()

    async def peek_login(self) -> bytes:
        """Wait for the complete ClientHello and return its SRP login (left in the buffer)."""
        return srp_identity(await self.peek_hello())

    async def peek_hello(self) -> bytes:
        """Wait for the complete ClientHello and return it (left in the buffer)."""
        while True:
            with self.bio.lock:
                buf = bytes(self.bio.inbuf)
            hello = client_hello(buf)
            if hello is not None:
                return hello
            if self.bio.eof:
                if self.expired:
                    raise self._timeout("no ClientHello")
                raise SrpError("closed", "before the ClientHello")
            # Wait for bytes beyond the incomplete hello we hold (`_wait_data` returns at once
            # while the buffer is not empty: that spun the loop on a partial hello).
            self._data.clear()
            with self.bio.lock:
                grew = len(self.bio.inbuf) != len(buf) or self.bio.eof
            if not grew:
                await self._data.wait()
            if self.expired:
                raise self._timeout("no ClientHello")

    async def handshake_server(
        self, username: bytes, entry: VerifierEntry, settings: HandshakeSettings | None = None
    ) -> None:
        gen = self._tls().handshakeServerAsync(
            verifierDB={username: entry}, settings=settings or _SERVER_SETTINGS
        )
        await self._run("handshake", gen)
        self._authenticated()

    async def read(self, max_bytes: int = 16384) -> bytes:
        """Application data; b"" at a clean close."""
        assert self.tls is not None
        r = await self._run("read", self.tls.readAsync(max=max_bytes))
        return bytes(r) if r is not None else b""

    async def write(self, data: bytes, *, more: bool = False) -> None:
        """Application data. `more`: the record waits for whatever this connection sends
        next (`next_inner`'s close_notify, `close`, `abort`), so that both leave in one outer
        TLS record and one TCP segment, and the peer reads both on one wake-up: the server's
        valinfo and its close_notify (docs/benchmarks.md ## PVP, issue 18)."""
        assert self.tls is not None
        self._corked = more
        try:
            await self._run("write", self.tls.writeAsync(bytearray(data)))
        except BaseException:
            self._corked = False
            with contextlib.suppress(ssl.SSLError):
                self._flush()  # what tlslite sent before failing (an alert) goes out now
            raise
        self._corked = False

    async def next_inner(self, *, server: bool) -> bool:
        """Profile v2 channel reuse (DESIGN §5): end the finished SRP session and ready this
        connection for another in the same outer channel, with fresh deadlines. The server
        sends its close_notify (RFC 5246 §7.2.1) as always; the client reads it (tlslite
        takes whatever records it finds buffered, so only tlslite may read it) and then sends
        the next ClientHello in place of its own close_notify, which tlslite can no longer
        send. False when the connection cannot be reused (no outer channel, a failure, the
        peer gone): close it then."""
        tls = self.tls
        if (self.outer is None or tls is None or tls.session is None or tls.closed
                or self.lost or self.expired):
            return False
        try:
            if server:
                await self._run("close", tls.closeAsync())
            elif await self.read() != b"":
                return False
        except SrpError:
            return False
        self._cancel_timers()
        self._start_timers()
        if server and not await self._next_hello():
            return False
        self.tls = None  # what follows in the buffer is the next ClientHello
        self.authenticated = False
        return True

    async def _next_hello(self) -> bool:
        """Server, on a kept channel: wait for the client's next ClientHello (a handshake
        record, type 22; a close_notify, type 21, from a client that sent one is dropped
        first). False for anything else, or the channel closing or expiring first (an idle
        channel ending: not an attempt)."""
        while True:
            self._data.clear()
            with self.bio.lock:
                buf = self.bio.inbuf
                if len(buf) >= 5:
                    n = int.from_bytes(buf[3:5], "big")
                    if buf[0] == _REC_HANDSHAKE and buf[1] == 3:
                        return True
                    if buf[0] != _REC_ALERT or buf[1] != 3 or n > _MAX_ALERT_RECORD:
                        return False
                    if len(buf) >= 5 + n:
                        del buf[: 5 + n]
                        continue
            if self.bio.eof or self.expired or self.lost:
                return False
            await self._data.wait()

    @property
    def reusable(self) -> bool:
        """An idle outer channel that can carry another SRP session."""
        return (self.outer is not None and self.tls is None and not self.lost
                and not self.expired and not self.bio.eof)

    async def close(self, *, notify: bool = True) -> None:
        """Close the TCP connection, after a TLS close_notify once a handshake has finished
        (RFC 5246 §7.2.1: each party sends one before closing its write side; it need not
        wait for the peer's). Best effort: a failure to send it still closes. After a fatal
        alert tlslite has shut the session down and no close_notify follows it."""
        try:
            with contextlib.suppress(ssl.SSLError):
                self._flush()  # a record held by `write(more=True)` goes before the close
            if (notify and self.tls is not None and not self.tls.closed
                    and self.tls.session is not None and not self.lost):
                await self._run("close", self.tls.closeAsync())
            if notify and self.outer is not None and self.outer.established and not self.lost:
                self._send_raw(self.outer.close_notify())
        except SrpError:
            pass
        finally:
            self.abort()

    async def closed(self) -> None:
        """Close now and return once the socket is closed: asyncio closes it from a callback
        in the next loop iteration, so work done right after `abort` would still run before
        the peer sees the TCP close. Unsent output is dropped (`transport.abort`), so a peer
        that stops reading cannot hold this up."""
        self._cancel_timers()
        if self.transport is not None:
            self.transport.abort()
            await self._lost.wait()

    def abort(self) -> None:
        self._cancel_timers()
        if self.transport is not None:
            if not self.transport.is_closing() and self.bio.outbuf:
                with contextlib.suppress(ssl.SSLError):
                    self._flush()  # a record held by `write(more=True)`
            self.transport.close()


def _ssl_reason(e: ssl.SSLError) -> str:
    """A short reason: OpenSSL's (e.g. CERTIFICATE_VERIFY_FAILED, certificate has expired)."""
    verify = getattr(e, "verify_message", None)
    reason = getattr(e, "reason", None) or str(e)
    return f"{reason} ({verify})" if verify else str(reason)[:200]
