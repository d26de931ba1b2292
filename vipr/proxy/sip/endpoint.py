"""asyncio glue between transports and the sans-I/O transactions (RFC 3261 §17, §18).

`SipEndpoint` owns transports, matches incoming messages to transactions, runs the
transaction timers on the event loop (`now` = `loop.time()`) and sends what the
transactions emit. The transaction user gets:

    async def on_request(request, source, server):  # server is None for a 2xx ACK
        server.respond(200, to_tag="x")             # ServerHandle; retransmits itself
    ep = SipEndpoint(on_request)
    udp = await ep.listen("udp", "127.0.0.1", 0)
    client = await ep.send_request(req, "udp", "127.0.0.1", 5060)
    final = await client.final(timeout=40)          # raises TimeoutError (B/F) etc.
    await ep.send_stateless(ack, "udp", "127.0.0.1", 5060)   # ACK for 2xx, proxying
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from vipr.limits import SIP_LIMITS, SipLimits
from vipr.logsetup import printable
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.message import SipMessage, SipRequest, SipResponse, make_response
from vipr.proxy.sip.parser import salvage_request
from vipr.proxy.sip.transaction import (
    DEFAULT_TIMERS,
    AckReceived,
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    Terminated,
    TimerValues,
    Transaction,
    TransactionTimeout,
    Transmit,
    TransportFailed,
    client_key,
    new_client_transaction,
    new_server_transaction,
    server_key,
)
from vipr.proxy.sip.transport import (
    BadDestination,
    Source,
    StreamTransport,
    UdpTransport,
    ip_destination,
    response_destination,
)

log = logging.getLogger(__name__)

RequestHandler = Callable[[SipRequest, Source, "ServerHandle | None"], Awaitable[None] | None]
ResponseHandler = Callable[[SipResponse, Source], None]


class ServerHandle:
    """The transaction user's side of a server transaction."""

    def __init__(self, endpoint: SipEndpoint, txn: ServerTransaction, source: Source) -> None:
        self.endpoint = endpoint
        self.txn = txn
        self.source = source
        self._acked: asyncio.Event | None = None   # made on first use: most never need it
        self._ack_seen = False

    @property
    def acked(self) -> asyncio.Event:
        """Set when an ACK matched this (INVITE, 2xx-answered) transaction."""
        if self._acked is None:
            self._acked = asyncio.Event()
            if self._ack_seen:
                self._acked.set()
        return self._acked

    def _set_acked(self) -> None:
        self._ack_seen = True
        if self._acked is not None:
            self._acked.set()

    @property
    def request(self) -> SipRequest:
        """The request that created the transaction."""
        return self.txn.request

    def respond(self, status: int, reason: str | None = None, *, to_tag: str | None = None,
                headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> SipResponse:
        """Build (RFC 3261 §8.2.6) and send a response."""
        r = make_response(self.txn.request, status, reason, to_tag=to_tag, headers=headers,
                          body=body)
        self.send(r)
        return r

    def send(self, response: SipResponse) -> None:
        """Send a response through the transaction."""
        self.txn.send_response(response, self.endpoint.now())
        self.endpoint._drain(self.txn)


class ClientHandle:
    """The transaction user's side of a client transaction.

    Responses arrive in `responses` (a queue) and, when set, through the `on_response`
    callback (a proxy forwards each at once); `on_failure` gets TimeoutError (Timer B/F)
    or ConnectionError (transport). `final()` awaits the final response.
    """

    def __init__(self, txn: ClientTransaction) -> None:
        self.txn = txn
        self._responses: asyncio.Queue[SipResponse] | None = None   # made on first use
        self._received: list[SipResponse] = []
        self.on_response: Callable[[SipResponse], None] | None = None
        self.on_failure: Callable[[Exception], None] | None = None
        self._final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

    @property
    def request(self) -> SipRequest:
        """The request sent."""
        return self.txn.request

    @property
    def responses(self) -> asyncio.Queue[SipResponse]:
        """Every response received (provisional and final), in order."""
        if self._responses is None:
            self._responses = asyncio.Queue()
            for r in self._received:
                self._responses.put_nowait(r)
            self._received = []
        return self._responses

    def _add_response(self, response: SipResponse) -> None:
        if self._responses is not None:
            self._responses.put_nowait(response)
        else:
            self._received.append(response)

    async def final(self, timeout: float | None = None) -> SipResponse:
        """The final response; TimeoutError on Timer B/F, ConnectionError on transport failure.

        Without `timeout` it waits for the transaction, whose Timer B/F ends it anyway."""
        if self._final.done():
            return self._final.result()
        if timeout is None:
            return await asyncio.shield(self._final)
        return await asyncio.wait_for(asyncio.shield(self._final), timeout)

    def _fail(self, exc: Exception) -> None:
        if not self._final.done():
            self._final.set_exception(exc)
            self._final.exception()
            if self.on_failure is not None:
                self.on_failure(exc)


Transport = UdpTransport | StreamTransport


class SipEndpoint:
    """Transports + transaction tables + timers on the running loop."""

    def __init__(self, on_request: RequestHandler, *,
                 on_stray_response: ResponseHandler | None = None,
                 timers: TimerValues = DEFAULT_TIMERS, validate: bool = True,
                 on_transport_dead: Callable[[str, str], None] | None = None) -> None:
        """`validate`: run `msg.validate()` (strict grammar) on every new request and
        answer failures with 400 before the transaction user sees them.
        `on_transport_dead(name, reason)`: a UDP listener closed and could not be reopened."""
        self.on_request = on_request
        self.on_transport_dead = on_transport_dead
        self.validate = validate
        self.on_stray_response = on_stray_response
        self.timers = timers
        self.transports: dict[str, Transport] = {}
        self.loop = asyncio.get_running_loop()
        self._clients: dict[tuple[str, ...], ClientHandle] = {}
        self._servers: dict[tuple[str, ...], ServerHandle] = {}
        self._dest: dict[int, tuple[str, str, int]] = {}
        # Transaction timers: one heap of (when, seq, txn) and one loop timer for the
        # earliest, instead of a loop TimerHandle per transaction re-armed (and cancelled)
        # on every state change. `_due` holds each transaction's current deadline; heap
        # entries that no longer match it are stale and skipped.
        self._due: dict[Transaction, float] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = itertools.count()
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        """The clock the transactions run on."""
        return self.loop.time()

    async def listen(self, transport: str, host: str, port: int, *,
                     ssl: _ssl.SSLContext | None = None,
                     client_ssl: _ssl.SSLContext | None = None,
                     name: str | None = None, limits: SipLimits = SIP_LIMITS) -> Transport:
        """Open a `udp`, `tcp` or `tls` transport (port 0 = free port).

        `name` (default: the transport kind) is the key to send with and arrives as
        `Source.interface`, so one endpoint can serve several interfaces (e.g. a proxy's
        `internal` and `pstn` UDP sockets); responses leave by the interface the request
        came in on. `limits` (DESIGN §10): message, header and Via caps on every
        transport; connection caps and the handshake timeout on a stream listener.
        """
        key = name or transport
        if key in self.transports:
            raise ValueError(f"transport {key!r} already open")
        tr: Transport
        if transport == "udp":
            tr = await UdpTransport.listen(host, port, self._on_message,
                                           on_error=self._on_bad_message, label=key,
                                           limits=limits, on_dead=self._transport_dead)
        elif transport in ("tcp", "tls"):
            if transport == "tls" and ssl is None and client_ssl is None:
                raise ValueError("TLS needs an SSL context")
            tr = await StreamTransport.listen(host, port, self._on_message,
                                              on_error=self._on_bad_message, ssl=ssl,
                                              client_ssl=client_ssl, accept=ssl is not None
                                              or transport == "tcp", label=key,
                                              limits=limits)
        else:
            raise ValueError(f"unknown transport {transport!r}")
        self.transports[key] = tr
        return tr

    def _transport_dead(self, name: str, reason: str) -> None:
        if self.on_transport_dead is not None:
            self.on_transport_dead(name, reason)

    async def close(self) -> None:
        """Cancel timers and close every transport."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        self._due.clear()
        self._heap.clear()
        for t in list(self._tasks):
            t.cancel()
        for tr in self.transports.values():
            if isinstance(tr, UdpTransport):
                tr.close()
            else:
                await tr.close()

    # --- sending ---

    async def send_request(self, request: SipRequest, transport: str, host: str,
                           port: int, *, server_hostname: str | None = None,
                           on_response: Callable[[SipResponse], None] | None = None,
                           on_failure: Callable[[Exception], None] | None = None,
                           ) -> ClientHandle:
        """Start a client transaction for `request` (not ACK) towards host:port over the
        transport named `transport` (the `name` given to `listen`, else its kind).

        Stream transports connect first (ConnectionError if that fails); TLS verifies the
        peer against `server_hostname` (default: host) when the client context checks it.
        """
        tr = self.transports[transport]
        txn = new_client_transaction(request, reliable=tr.reliable, timers=self.timers)
        handle = ClientHandle(txn)
        handle.on_response, handle.on_failure = on_response, on_failure
        self._clients[txn.key] = handle
        self._dest[id(txn)] = (transport, host, port)
        if isinstance(tr, StreamTransport):
            try:
                await tr.connect(host, port, server_hostname=server_hostname)
            except Exception as exc:   # also a bad host or port (ValueError, UnicodeError)
                del self._clients[txn.key]
                del self._dest[id(txn)]
                raise ConnectionError(f"connect to {printable(host, 80)}:{printable(port)} "
                                      f"failed: {printable(exc)}") from exc
        txn.start(self.now())
        self._drain(txn)
        return handle

    async def send_stateless(self, msg: SipMessage, transport: str, host: str,
                             port: int) -> None:
        """Send without a transaction (ACK for 2xx, stateless forwarding)."""
        await self.transports[transport].send(msg.serialize(), host, port)

    def find_invite_server(self, cancel: SipRequest) -> ServerHandle | None:
        """The INVITE server transaction a CANCEL targets (RFC 3261 §9.2)."""
        try:
            return self._servers.get(server_key(cancel, method="INVITE"))
        except SipParseError:
            return None

    # --- receiving ---

    def _on_message(self, msg: SipMessage, source: Source) -> None:
        try:
            if isinstance(msg, SipRequest):
                self._on_request(msg, source)
            elif isinstance(msg, SipResponse):
                self._on_response(msg, source)
        except SipParseError as exc:
            # RFC 3261 §8.2: answer what we can with 400, drop the rest
            log.info("bad %s from %s:%s: %s", type(msg).__name__, source.host, source.port,
                     printable(exc.reason))
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                self._reply_stateless(msg, source, exc)
        except Exception:
            # a bug above must not take the transport down with it (DESIGN §9)
            log.exception("error handling a %s from %s:%s", type(msg).__name__, source.host,
                          source.port)

    def _on_bad_message(self, data: bytes, source: Source, exc: SipParseError) -> None:
        """Unparseable input: answer a readable request with exc.status, drop the rest."""
        log.info("malformed SIP from %s:%s/%s: %s", source.host, source.port,
                 source.transport, printable(exc.reason))
        req = salvage_request(data)
        if req is not None:
            self._reply_stateless(req, source, exc)

    def _reply_stateless(self, req: SipRequest, source: Source, exc: SipParseError) -> None:
        try:
            r = make_response(req, exc.status)
            if exc.status == 400:
                r.reason = f"Bad Request ({printable(exc.reason, 60)})"
            self._send_response_bytes(r.serialize(), req, source, None)
        except SipParseError:
            pass
        except Exception as err:   # never let a reply take the listener down (DESIGN §10)
            log.error("cannot answer bad input from %s:%s: %s", source.host, source.port,
                      printable(repr(err)))

    def _on_request(self, req: SipRequest, source: Source) -> None:
        key = server_key(req)
        handle = self._servers.get(key)
        if handle is not None:
            handle.txn.receive_request(req, self.now())
            self._drain(handle.txn)
            return
        if req.method == "ACK":
            self._call(req, source, None)   # ACK for a 2xx: no transaction (§17)
            return
        if self.validate:
            req.validate()
        txn = new_server_transaction(req, reliable=source.reliable, now=self.now(),
                                     timers=self.timers)
        handle = ServerHandle(self, txn, source)
        self._servers[key] = handle
        self._drain(txn)
        self._call(req, source, handle)

    def _call(self, req: SipRequest, source: Source, handle: ServerHandle | None) -> None:
        try:
            res = self.on_request(req, source, handle)
        except SipParseError as exc:
            # the handler read a header the strict check does not cover: 400
            self._handler_failed(handle, 400, exc.reason)
            return
        except Exception:
            log.exception("request handler failed")
            self._handler_failed(handle, 500, "handler error")
            return
        if asyncio.iscoroutine(res):
            task = self.loop.create_task(res)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._handler_done(t, handle))

    def _handler_failed(self, handle: ServerHandle | None, status: int, reason: str) -> None:
        """Answer for a failed handler so that the transaction does not linger."""
        if handle is not None and handle.txn.state in ("trying", "proceeding"):
            handle.respond(status, f"Bad Request ({reason[:60]})" if status == 400 else None)

    def _handler_done(self, task: asyncio.Task[None], handle: ServerHandle | None) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, SipParseError):
            self._handler_failed(handle, 400, exc.reason)
        elif exc is not None:
            log.error("endpoint task failed", exc_info=exc)
            self._handler_failed(handle, 500, "handler error")

    def _on_response(self, resp: SipResponse, source: Source) -> None:
        handle = self._clients.get(client_key(resp))
        if handle is None:
            if self.on_stray_response is not None:
                self.on_stray_response(resp, source)
            return
        handle.txn.receive_response(resp, self.now())
        self._drain(handle.txn)

    # --- transaction events ---

    def _drain(self, txn: Transaction) -> None:
        while (ev := txn.next_event()) is not None:
            if isinstance(ev, Transmit):
                self._transmit(txn, ev.data)
            elif isinstance(ev, ResponseReceived):
                ch = self._clients.get(txn.key)
                if ch is not None:
                    ch._add_response(ev.response)
                    if ch.on_response is not None:
                        ch.on_response(ev.response)
                    if ev.response.status >= 200 and not ch._final.done():
                        ch._final.set_result(ev.response)
            elif isinstance(ev, AckReceived | TransactionTimeout | TransportFailed):
                self._notify(txn, ev)
            elif isinstance(ev, Terminated):
                self._forget(txn)
        self._schedule(txn)

    def _notify(self, txn: Transaction, ev: AckReceived | TransactionTimeout | TransportFailed
                ) -> None:
        if isinstance(txn, ClientTransaction):
            ch = self._clients.get(txn.key)
            if ch is not None:
                exc: Exception = (TimeoutError(f"timer {ev.timer}")
                                  if isinstance(ev, TransactionTimeout)
                                  else ConnectionError("transport failed"))
                ch._fail(exc)
        elif isinstance(ev, AckReceived):
            sh = self._servers.get(txn.key)
            if sh is not None:
                sh._set_acked()

    def _forget(self, txn: Transaction) -> None:
        table: dict[tuple[str, ...], ClientHandle] | dict[tuple[str, ...], ServerHandle]
        table = self._clients if isinstance(txn, ClientTransaction) else self._servers
        h = table.get(txn.key)
        if h is not None and h.txn is txn:
            del table[txn.key]
        if isinstance(h, ClientHandle):
            h._fail(TimeoutError("transaction ended without a final response"))
        self._dest.pop(id(txn), None)
        self._due.pop(txn, None)

    def _schedule(self, txn: Transaction) -> None:
        when = txn.get_timer()
        due = self._due
        if when is None or txn.terminated:
            due.pop(txn, None)
            return
        if due.get(txn) == when:
            return
        due[txn] = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), txn))
        if len(heap) > 2 * len(due) + 1024:
            # mostly stale entries (deadlines moved, transactions gone): rebuild
            self._heap = heap = [e for e in heap if due.get(e[2]) == e[0]]
            heapq.heapify(heap)
        if when < self._wake_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = when
        self._wake = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._wake = None
        fired_at = self._wake_at
        self._wake_at = float("inf")
        # the loop runs a timer up to its clock resolution early: not before its deadline
        now = max(self.now(), fired_at)
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            when, _, txn = heapq.heappop(heap)
            if due.get(txn) != when:
                continue   # stale
            del due[txn]
            try:
                txn.handle_timer(now)
                self._drain(txn)
            except Exception:
                log.exception("transaction timer failed")
            heap = self._heap   # _drain may have rebuilt it
        if heap and heap[0][0] < self._wake_at:
            self._arm(heap[0][0])

    def _transmit(self, txn: Transaction, data: bytes) -> None:
        if isinstance(txn, ClientTransaction):
            transport, host, port = self._dest[id(txn)]
            self._send_now(txn, transport, host, port, data)
        else:
            sh = self._servers.get(txn.key)
            if sh is not None:
                self._send_response_bytes(data, txn.request, sh.source, txn)

    def _send_response_bytes(self, data: bytes, req: SipRequest, source: Source,
                             txn: Transaction | None) -> None:
        """RFC 3261 §18.2.2: over the request's connection, else received/rport."""
        conn = source.connection
        if conn is not None and conn.is_open:
            conn.write(data)
            return
        host, port = response_destination(req.top_via_view(), source)
        self._send_now(txn, source.interface or source.transport, host, port, data)

    def _send_now(self, txn: Transaction | None, transport: str, host: str, port: int,
                  data: bytes) -> None:
        """Send at once when no connect is needed (UDP, open connection), else in a task."""
        tr = self.transports.get(transport)
        try:
            if isinstance(tr, UdpTransport):
                try:
                    ip_destination(host, port)
                except BadDestination:
                    pass   # a configured host name: resolved in a task (no DNS here)
                else:
                    tr.sendto(data, host, port)
                    return
            else:
                conn = tr.get_connection(host, port) if tr is not None else None
                if conn is not None:
                    conn.write(data)
                    return
        except Exception as exc:   # contained to this message (DESIGN §10)
            log.info("send to %s:%s/%s failed: %s", printable(host, 80), printable(port),
                     transport, printable(exc))
            if txn is not None:
                self.loop.call_soon(self._fail, txn)
            return
        self._spawn(self._send_or_fail(txn, transport, host, port, data))

    def _fail(self, txn: Transaction) -> None:
        txn.transport_error(self.now())
        self._drain(txn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._handler_done(t, None))

    async def _send_or_fail(self, txn: Transaction | None, transport: str, host: str, port: int,
                            data: bytes) -> None:
        try:
            await self.transports[transport].send(data, host, port)
        except Exception as exc:   # contained to this message (DESIGN §10)
            log.info("send to %s:%s/%s failed: %s", printable(host, 80), printable(port),
                     transport, printable(exc))
            if txn is not None:
                self._fail(txn)
