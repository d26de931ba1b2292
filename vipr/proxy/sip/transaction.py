"""RFC 3261 §17 transactions as sans-I/O state machines (with the RFC 6026 Accepted state).

Each transaction is fed messages and the current time (`now`, seconds, any monotonic
origin) and produces events, drained with `next_event()`. The owner arms one timer at
`get_timer()` and calls `handle_timer(now)` when it fires. Nothing here reads a clock
or touches a socket: a `Transmit` event carries the bytes to send to the transaction's
peer (the owner knows where that is), retransmissions included.

Timers (RFC 3261 Table 4): A/B/D (INVITE client), E/F/K (non-INVITE client), G/H/I
(INVITE server), J (non-INVITE server), and RFC 6026's L (INVITE server) and M (INVITE
client) for the Accepted state, which absorbs 2xx retransmissions and late ACKs.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections import deque
from dataclasses import dataclass

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import split_list
from vipr.proxy.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    header_key,
    make_response,
)

MAGIC_COOKIE = "z9hG4bK"   # RFC 3261 §8.1.1.7


_BRANCH_PREFIX = [MAGIC_COOKIE + secrets.token_hex(8), os.getpid()]
_branch_seq = itertools.count()


def new_branch() -> str:
    """A fresh, globally unique branch id with the RFC 3261 §8.1.1.7 magic cookie.

    A random per-process prefix (64 bits) and a counter: unique like a random id per
    branch, without a system call per branch (a forked child gets a new prefix)."""
    if _BRANCH_PREFIX[1] != os.getpid():
        _BRANCH_PREFIX[:] = [MAGIC_COOKIE + secrets.token_hex(8), os.getpid()]
    return f"{_BRANCH_PREFIX[0]}.{next(_branch_seq):x}"


@dataclass(frozen=True, slots=True)
class TimerValues:
    """RFC 3261 §17.1.1.1 T1 (RTT estimate), T2 (max non-INVITE retransmit), T4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


DEFAULT_TIMERS = TimerValues()


# --- events ---

@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes to the transaction's peer (`retransmission` for timer resends)."""

    data: bytes
    message: SipMessage
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """Client: a response for the transaction user (retransmitted non-2xx are absorbed)."""

    response: SipResponse


@dataclass(frozen=True, slots=True)
class AckReceived:
    """INVITE server in Accepted state: an ACK matched this transaction (RFC 6026 §8.7)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B, F or H fired: no (final) answer; the transaction user acts (408 etc.)."""

    timer: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The owner reported a transport error (RFC 3261 §17.1.4, §17.2.4)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; drop it from the table."""


Event = (Transmit | ResponseReceived | AckReceived | TransactionTimeout | TransportFailed
         | Terminated)


class TransactionStateError(RuntimeError):
    """The transaction user did something the state machine does not allow."""


# --- keys (RFC 3261 §17.1.3, §17.2.3) ---

def _top_via_text(msg: SipMessage) -> str:
    v = msg.headers.get("via")
    if v is None:
        raise SipParseError("missing Via header")
    parts = split_list(v)
    if not parts:
        raise SipParseError("empty Via header")
    return parts[0]


def client_key(msg: SipMessage) -> tuple[str, str]:
    """Key matching a response to its client transaction: (top branch, CSeq method)."""
    branch = msg.top_via_view().branch
    if not branch:
        raise SipParseError("Via without branch")
    return branch, msg.cseq.method


def server_key(req: SipRequest, method: str | None = None) -> tuple[str, ...]:
    """Key matching a request to its server transaction; ACK maps to its INVITE.

    RFC 3261 §17.2.3: branch + sent-by + method when the branch has the magic cookie,
    else the RFC 2543 rule (Request-URI, tags, Call-ID, CSeq, top Via). `method`
    overrides the request's (CANCEL looks up its INVITE with method="INVITE").
    """
    m = method or req.method
    if m == "ACK":
        m = "INVITE"
    via = req.top_via_view()
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return (branch, via.sent_by.lower(), m)
    # RFC 2543 fallback; the ACK's To tag is that of the response, so it is left out.
    return ("2543", req.uri, req.from_tag or "", req.call_id, str(req.cseq.seq), m,
            _top_via_text(req))


# --- base ---

class Transaction:
    """Common machinery: event queue and named timers."""

    __slots__ = ("_events", "_intervals", "_timers", "key", "reliable", "request", "state",
                 "timers")

    def __init__(self, request: SipRequest, *, reliable: bool,
                 timers: TimerValues = DEFAULT_TIMERS) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = "init"
        self.key: tuple[str, ...] = ()
        self._events: deque[Event] = deque()
        self._timers: dict[str, float] = {}
        self._intervals: dict[str, float] = {}

    @property
    def terminated(self) -> bool:
        """True once the Terminated event has been queued."""
        return self.state == "terminated"

    def next_event(self) -> Event | None:
        """Pop the next event, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Pop all queued events."""
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called, or None."""
        return min(self._timers.values()) if self._timers else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first."""
        while self._timers and self.state != "terminated":
            name = min(self._timers, key=self._timers.__getitem__)
            if self._timers[name] > now:
                return
            del self._timers[name]
            self._on_timer(name, now)

    def transport_error(self, now: float) -> None:
        """The owner failed to send: report and terminate (§17.1.4, §17.2.4)."""
        if self.state != "terminated":
            self._events.append(TransportFailed("transport error"))
            self._terminate()

    def _on_timer(self, name: str, now: float) -> None:
        raise NotImplementedError

    def _arm(self, name: str, now: float, interval: float) -> None:
        self._intervals[name] = interval
        self._timers[name] = now + interval

    def _send(self, msg: SipMessage, retransmission: bool = False) -> None:
        self._events.append(Transmit(msg.serialize(), msg, retransmission))

    def _resend(self, ev: Transmit | None) -> None:
        if ev is not None:
            self._events.append(Transmit(ev.data, ev.message, True))

    def _terminate(self) -> None:
        self.state = "terminated"
        self._timers.clear()
        self._events.append(Terminated())

    def _wait_or_end(self, name: str, now: float, interval: float) -> None:
        """Arm a wait timer (D, I, J, K) or terminate at once on reliable transports."""
        if interval <= 0:
            self._terminate()
        else:
            self._arm(name, now, interval)


# --- clients ---

class ClientTransaction(Transaction):
    """Base of the client transactions; `start(now)` sends the request."""

    __slots__ = ("_request_tx",)

    def __init__(self, request: SipRequest, *, reliable: bool,
                 timers: TimerValues = DEFAULT_TIMERS) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.key = client_key(request)
        self._request_tx: Transmit | None = None

    def start(self, now: float) -> None:
        """Send the request and arm the timers."""
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> None:
        """Feed a response matched by `client_key`."""
        raise NotImplementedError

    def _send_request(self) -> None:
        self._send(self.request)
        self._request_tx = self._events[-1]  # type: ignore[assignment]


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 (Figure 5) with RFC 6026 §7.2 Accepted state.

    States: calling, proceeding, accepted, completed, terminated.
    """

    __slots__ = ("_ack_tx",)

    def __init__(self, request: SipRequest, *, reliable: bool,
                 timers: TimerValues = DEFAULT_TIMERS) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self._ack_tx: Transmit | None = None

    def start(self, now: float) -> None:
        if self.state != "init":
            raise TransactionStateError("already started")
        self.state = "calling"
        self._send_request()
        t1 = self.timers.t1
        if not self.reliable:
            self._arm("A", now, t1)
        self._arm("B", now, 64 * t1)

    def receive_response(self, response: SipResponse, now: float) -> None:
        st, code = self.state, response.status
        if st in ("calling", "proceeding"):
            if code < 200:
                if st == "calling":
                    self.state = "proceeding"
                    self._timers.pop("A", None)
                    self._timers.pop("B", None)
                self._events.append(ResponseReceived(response))
            elif code < 300:
                # RFC 6026 §7.2: Accepted; the TU sends the ACK for a 2xx itself
                self.state = "accepted"
                self._timers.clear()
                self._arm("M", now, 64 * self.timers.t1)
                self._events.append(ResponseReceived(response))
            else:
                self.state = "completed"
                self._timers.clear()
                self._send(self.make_ack(response))
                self._ack_tx = self._events[-1]  # type: ignore[assignment]
                self._events.append(ResponseReceived(response))
                # Timer D: >= 32 s on unreliable transports, 0 on reliable (§17.1.1.2)
                d = 0.0 if self.reliable else max(32.0, 64 * self.timers.t1)
                self._wait_or_end("D", now, d)
        elif st == "accepted":
            if 200 <= code < 300:
                self._events.append(ResponseReceived(response))   # 2xx retransmission to TU
        elif st == "completed" and code >= 300:
            self._resend(self._ack_tx)   # retransmitted final: ACK again, absorb

    def make_ack(self, response: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        req = self.request
        h = Headers()
        h.add("Via", _top_via_text(req))
        for name, value in req.headers:
            if header_key(name) == "route":   # same Route set as the INVITE
                h.add(name, value)
        h.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            src = response if name == "To" else req
            v = src.headers.get(name)
            if v is not None:
                h.add(name, v)
        h.add("CSeq", f"{req.cseq.seq} ACK")
        return SipRequest("ACK", req.uri, h)

    def _on_timer(self, name: str, now: float) -> None:
        if name == "A" and self.state == "calling":
            # Timer A doubles each time, without the T2 cap (§17.1.1.2)
            self._resend(self._request_tx)
            self._arm("A", now, 2 * self._intervals["A"])
        elif name == "B" and self.state == "calling":
            self._events.append(TransactionTimeout("B"))
            self._terminate()
        elif name in ("D", "M"):
            self._terminate()


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6). States: trying, proceeding, completed, terminated."""

    __slots__ = ()

    def start(self, now: float) -> None:
        if self.state != "init":
            raise TransactionStateError("already started")
        self.state = "trying"
        self._send_request()
        if not self.reliable:
            self._arm("E", now, self.timers.t1)
        self._arm("F", now, 64 * self.timers.t1)

    def receive_response(self, response: SipResponse, now: float) -> None:
        if self.state not in ("trying", "proceeding"):
            return   # completed: retransmitted finals are absorbed
        if response.status < 200:
            self.state = "proceeding"
            self._events.append(ResponseReceived(response))
            return
        self.state = "completed"
        self._timers.clear()
        self._events.append(ResponseReceived(response))
        self._wait_or_end("K", now, 0.0 if self.reliable else self.timers.t4)

    def _on_timer(self, name: str, now: float) -> None:
        if name == "E" and self.state in ("trying", "proceeding"):
            self._resend(self._request_tx)
            # doubling up to T2 in Trying; T2 once Proceeding (§17.1.2.2)
            nxt = self.timers.t2 if self.state == "proceeding" else min(
                2 * self._intervals["E"], self.timers.t2)
            self._arm("E", now, nxt)
        elif name == "F" and self.state in ("trying", "proceeding"):
            self._events.append(TransactionTimeout("F"))
            self._terminate()
        elif name == "K":
            self._terminate()


def new_client_transaction(request: SipRequest, *, reliable: bool,
                           timers: TimerValues = DEFAULT_TIMERS) -> ClientTransaction:
    """The right client transaction for the method (ACK has none: §17.1)."""
    if request.method == "ACK":
        raise TransactionStateError("ACK is sent without a client transaction")
    cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
    return cls(request, reliable=reliable, timers=timers)


# --- servers ---

class ServerTransaction(Transaction):
    """Base of the server transactions; created for a new request."""

    __slots__ = ("_last_tx", "last_response")

    def __init__(self, request: SipRequest, *, reliable: bool,
                 timers: TimerValues = DEFAULT_TIMERS) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.key = server_key(request)
        self._last_tx: Transmit | None = None
        self.last_response: SipResponse | None = None

    def receive_request(self, request: SipRequest, now: float) -> None:
        """Feed a retransmission (or, for INVITE, the ACK) matched by `server_key`."""
        raise NotImplementedError

    def send_response(self, response: SipResponse, now: float) -> None:
        """The transaction user answers."""
        raise NotImplementedError

    def respond(self, status: int, now: float, reason: str | None = None, *,
                to_tag: str | None = None, headers: tuple[tuple[str, str], ...] = (),
                body: bytes = b"") -> SipResponse:
        """Build a response with `make_response` and send it."""
        r = make_response(self.request, status, reason, to_tag=to_tag, headers=headers, body=body)
        self.send_response(r, now)
        return r

    def _transmit_response(self, response: SipResponse) -> None:
        self.last_response = response
        self._send(response)
        self._last_tx = self._events[-1]  # type: ignore[assignment]


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 (Figure 7) with RFC 6026 §7.1 Accepted state.

    States: proceeding, accepted, completed, confirmed, terminated. With `send_trying`
    the transaction answers 100 Trying at once (§17.2.1: unless the TU answers in 200 ms).
    """

    __slots__ = ()

    def __init__(self, request: SipRequest, *, reliable: bool, now: float,
                 timers: TimerValues = DEFAULT_TIMERS, send_trying: bool = True) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = "proceeding"
        if send_trying:
            self._transmit_response(make_response(request, 100))

    def receive_request(self, request: SipRequest, now: float) -> None:
        st = self.state
        if request.method == "ACK":
            if st == "completed":
                self.state = "confirmed"
                self._timers.clear()
                # Timer I: T4 on unreliable transports, 0 on reliable (§17.2.1)
                self._wait_or_end("I", now, 0.0 if self.reliable else self.timers.t4)
            elif st == "accepted":
                self._events.append(AckReceived(request))
            return
        if st in ("proceeding", "completed"):
            self._resend(self._last_tx)   # §17.2.1: retransmit the last response

    def send_response(self, response: SipResponse, now: float) -> None:
        st, code = self.state, response.status
        if st == "accepted" and 200 <= code < 300:
            self._transmit_response(response)   # TU retransmits its 2xx (RFC 6026 §8.5)
            return
        if st != "proceeding":
            raise TransactionStateError(f"cannot send {code} in state {st}")
        self._transmit_response(response)
        if code < 200:
            return
        t1 = self.timers.t1
        if code < 300:
            self.state = "accepted"
            self._arm("L", now, 64 * t1)
        else:
            self.state = "completed"
            if not self.reliable:
                self._arm("G", now, t1)
            self._arm("H", now, 64 * t1)

    def _on_timer(self, name: str, now: float) -> None:
        if name == "G" and self.state == "completed":
            self._resend(self._last_tx)
            self._arm("G", now, min(2 * self._intervals["G"], self.timers.t2))
        elif name == "H" and self.state == "completed":
            self._events.append(TransactionTimeout("H"))   # no ACK arrived
            self._terminate()
        elif name in ("I", "L"):
            self._terminate()


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8). States: trying, proceeding, completed, terminated."""

    __slots__ = ()

    def __init__(self, request: SipRequest, *, reliable: bool, now: float,
                 timers: TimerValues = DEFAULT_TIMERS) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = "trying"

    def receive_request(self, request: SipRequest, now: float) -> None:
        if self.state in ("proceeding", "completed"):
            self._resend(self._last_tx)
        # trying: retransmissions are absorbed silently (§17.2.2)

    def send_response(self, response: SipResponse, now: float) -> None:
        if self.state not in ("trying", "proceeding"):
            raise TransactionStateError(f"cannot send {response.status} in state {self.state}")
        self._transmit_response(response)
        if response.status < 200:
            self.state = "proceeding"
            return
        self.state = "completed"
        # Timer J: 64*T1 on unreliable transports, 0 on reliable
        self._wait_or_end("J", now, 0.0 if self.reliable else 64 * self.timers.t1)

    def _on_timer(self, name: str, now: float) -> None:
        if name == "J":
            self._terminate()


def new_server_transaction(request: SipRequest, *, reliable: bool, now: float,
                           timers: TimerValues = DEFAULT_TIMERS,
                           send_trying: bool = True) -> ServerTransaction:
    """The right server transaction for a new request (not for ACK)."""
    if request.method == "ACK":
        raise TransactionStateError("ACK does not create a server transaction")
    if request.method == "INVITE":
        return InviteServerTransaction(request, reliable=reliable, now=now, timers=timers,
                                       send_trying=send_trying)
    return NonInviteServerTransaction(request, reliable=reliable, now=now, timers=timers)
