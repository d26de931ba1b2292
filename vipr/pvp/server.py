"""PVP server: the terminating side of a validation (DESIGN §5, §6).

Per connection: admission at accept by the listener's `ConnectionGate` (`pvp.limits`: a global
and a per-source cap, DESIGN §10), refused at once and counted by reason, before any TLS state
exists → rate limit by remote address → wait for the ClientHello and read the SRP login
→ find the terminating VCR (`credentials.search_range`, most recent candidate) → answer with
its verifier, or with a decoy verifier for a random password when there is none (the same
work, so the timing tells nothing) → TLS-SRP handshake → read `validate`, check the caller's
domain, mint a ticket, answer `valinfo`. A wrong password counts against the VCR; at
`pvp.max_vcr_failures` it is burned. Every attempt goes to the validation log; connections
refused at accept do not (a flood must not turn into writes): they are counted and summarised in
the text log at most every REFUSAL_LOG_INTERVAL seconds.

A connection's handshake must finish within `pvp.limits.handshake_timeout` of the accept; the
whole connection within `pvp.handshake_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from vipr.config import ProviderConfig
from vipr.limits import ConnectionGate, ListenerLimits, Refusal
from vipr.listen_error import listen_error
from vipr.logsetup import fields
from vipr.metrics import count_validation, watch_listener
from vipr.pvp.credentials import Login, LoginError, parse_login, search_range, server_password
from vipr.pvp.messages import (
    ErrorMsg,
    Framer,
    MessageError,
    Validate,
    ValInfo,
    encode_message,
)
from vipr.pvp.outer import OuterTls, PeerIdentity
from vipr.pvp.pause import StoreWatch
from vipr.pvp.srp import (
    SrpConnection,
    SrpError,
    VerifierEntry,
    default_offload,
    loop_turn,
    make_verifier,
)
from vipr.pvp.vlog import ValidationLog
from vipr.store import Store, StoreError, TicketKey, ValidationRecord, Vcr
from vipr.tickets import mint_ticket

__all__ = ["DomainPolicy", "PvpServer", "RateLimiter", "read_message"]

log = logging.getLogger("vipr.pvp.server")

RATE_WINDOW = 60.0
KEY_CACHE = 10.0  # seconds
MAX_TRACKED_ADDRESSES = 10_000
REFUSAL_LOG_INTERVAL = 10.0  # seconds: at most one summary line of refused connections


class RateLimiter:
    """At most `limit` attempts per remote address in any `window` seconds. Pure: `now` is an
    argument. Refused attempts are not counted (a flood does not extend its own ban)."""

    def __init__(self, limit: int, window: float = RATE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str, now: float) -> bool:
        q = self._seen.get(address)
        if q is None:
            if len(self._seen) >= MAX_TRACKED_ADDRESSES:
                self._expire(now)
            q = self._seen.setdefault(address, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        return True

    def _expire(self, now: float) -> None:
        for addr in [a for a, q in self._seen.items() if not q or q[-1] <= now - self.window]:
            del self._seen[addr]


class DomainPolicy:
    """The caller's SIP domain against `deny_domains` then `allow_domains` (empty = all).
    An entry `example.net` matches that domain only; `*.example.net` its subdomains."""

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        self.allow = tuple(d.lower().rstrip(".") for d in allow)
        self.deny = tuple(d.lower().rstrip(".") for d in deny)

    @staticmethod
    def _match(domain: str, entries: tuple[str, ...]) -> bool:
        for e in entries:
            if e.startswith("*."):
                if domain.endswith(e[1:]):
                    return True
            elif domain == e:
                return True
        return False

    def permits_user(self, user: str) -> bool:
        """The domain of the caller's certificate user name (rfc822Name `name@domain`,
        profile v2) against `deny_domains`: a provider denied by domain stays denied whatever
        domain it claims in `validate`."""
        return not self._match(user.rsplit("@", 1)[-1].lower().rstrip("."), self.deny)

    def permits(self, domain: str) -> bool:
        d = domain.lower().rstrip(".")
        if self._match(d, self.deny):
            return False
        return not self.allow or self._match(d, self.allow)


async def read_message(conn: SrpConnection, framer: Framer) -> Any:
    """The next PVP message on an established TLS connection (MessageError, SrpError), within
    the connection's lifetime."""
    while True:
        data = await conn.read()
        if not data:
            raise SrpError("closed", "before a complete message")
        msgs = framer.feed(data)
        if msgs:
            return msgs[0]


class RefusalLog:
    """Rate-limited text log of connections refused at accept: the first refusal after a quiet
    interval is logged at once, later ones are summed into one line per `interval`. Pure:
    `note` takes `now` and returns the line to log, if any."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.interval = interval
        self._since: Counter[Refusal] = Counter()
        self._last_at: float | None = None
        self._last_host = ""

    def note(self, refusal: Refusal, host: str, now: float) -> str | None:
        self._since[refusal] += 1
        self._last_host = host
        if self._last_at is not None and now - self._last_at < self.interval:
            return None
        return self._line(now)

    def flush(self, now: float) -> str | None:
        """The pending summary, if any (called when the interval may have passed)."""
        return self._line(now) if self._since else None

    def _line(self, now: float) -> str:
        parts = ", ".join(f"{r.value} {n}" for r, n in sorted(self._since.items()))
        total = sum(self._since.values())
        self._since.clear()
        self._last_at = now
        return f"refused {total} connection(s) at accept ({parts}); last from {self._last_host}"


class _Accepted(SrpConnection):
    """A server-side connection: admitted through the listener's gate in `connection_made`,
    before the TLS state and read buffers exist; counted out again in `connection_lost`."""

    def __init__(self, server: PvpServer) -> None:
        pvp = server.cfg.pvp
        super().__init__(lifetime=pvp.handshake_timeout, executor=server.executor,
                         offload=server.offload, auth_timeout=server.gate.limits.handshake_timeout)
        self.server = server
        self.admitted: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        if not self.server.admit(host):
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        self.admitted = host
        super().connection_made(transport)
        self.server.accepted(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted is not None:
            self.server.gate.release(self.admitted)
            self.admitted = None
        super().connection_lost(exc)


@dataclass
class ServerCounters:
    attempts: int = 0
    ok: int = 0
    failed: int = 0
    refused: int = 0
    rate_limited: int = 0
    burned: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class PvpServer:
    """Listens on `cfg.pvp.listen` (or `listen` given here) and validates callers."""

    def __init__(
        self,
        cfg: ProviderConfig,
        store: Store,
        *,
        tls: OuterTls | None,
        executor: Executor | None = None,
        offload: bool | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        port: int | None = None,
        vlog: ValidationLog | None = None,
        limits: ListenerLimits | None = None,
        watch: StoreWatch | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.tls = tls  # None: TLS-SRP over the plain stream (profile v1; interop tests only)
        self.vlog = vlog or ValidationLog(store)
        self.executor = executor
        self.offload = default_offload() if offload is None else offload
        self.clock = clock
        self.host = host if host is not None else cfg.pvp.listen.host
        self.port = port if port is not None else cfg.pvp.listen.port
        self.limiter = RateLimiter(cfg.pvp.max_attempts_per_minute)
        self.policy = DomainPolicy(cfg.pvp.allow_domains, cfg.pvp.deny_domains)
        self.counters = ServerCounters()
        self.watch = watch   # the database outage pause (pvp.pause); None: never paused
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.gate = ConnectionGate(limits or cfg.pvp.limits)
        watch_listener("pvp", self)
        self.refusal_log = RefusalLog()
        self._refusal_flush: asyncio.TimerHandle | None = None
        self._key: TicketKey | None = None
        self._key_at = 0.0
        self.logged = 0  # attempts written to the validation log
        self._logged_cond = asyncio.Condition()
        fed = cfg.proxy.interfaces.federation
        self.routes: tuple[str, ...] = (fed.advertise,) if fed and fed.advertise else ()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._factory, self.host, self.port)
        except OSError as exc:
            raise listen_error("PVP server", self.host, self.port, exc) from exc
        log.info("pvp server listening on %s:%d", *self.address)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._refusal_flush is not None:
            self._refusal_flush.cancel()
            self._flush_refusals()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        await self.vlog.flush()  # batches linger: write what is queued while the store is open

    def _factory(self) -> SrpConnection:
        # pvp.handshake_timeout bounds the whole connection: hello, handshake and exchange;
        # pvp.limits.handshake_timeout the time until the handshake has finished.
        return _Accepted(self)

    def admit(self, host: str) -> bool:
        """At accept: the gate's verdict; a refusal is counted and (rate-limited) logged.
        While the store is unreachable every connection is refused (pvp.pause)."""
        if self.watch is not None and self.watch.paused:
            self.watch.refused += 1
            return False
        refusal = self.gate.admit(host)
        if refusal is None:
            return True
        line = self.refusal_log.note(refusal, host, time.monotonic())
        if line is not None:
            log.warning("pvp server: %s", line)
        elif self._refusal_flush is None:  # the summary of this interval, when it ends
            self._refusal_flush = asyncio.get_running_loop().call_later(
                self.refusal_log.interval, self._flush_refusals)
        return False

    def _flush_refusals(self) -> None:
        self._refusal_flush = None
        line = self.refusal_log.flush(time.monotonic())
        if line is not None:
            log.warning("pvp server: %s", line)

    def accepted(self, conn: SrpConnection) -> None:
        t = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "listen": "{}:{}".format(*self.address) if self._server else None,
            "attempts": c.attempts, "ok": c.ok, "failed": c.failed, "refused": c.refused,
            "rate_limited": c.rate_limited, "burned": c.burned,
            "reasons": dict(c.reasons),
            "connections": self.gate.status(),
        }

    # ------------------------------------------------------------------ one connection

    async def _log(
        self, outcome: str, reason: str, *, number: str, vcr: Vcr | None, peer: str
    ) -> None:
        c = self.counters
        if outcome == "ok":
            c.ok += 1
        elif outcome == "refused":
            c.refused += 1
        else:
            c.failed += 1
        key = reason.split(" ", 1)[0]
        c.reasons[key] = c.reasons.get(key, 0) + 1
        count_validation("server", outcome, reason)
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "validation from %s for %s: %s (%s)", peer, number or "?", outcome, reason,
                extra=fields(peer=peer, number=number or None, outcome=outcome,
                             reason=key, vcr_id=vcr.id if vcr else None))
        rec = ValidationRecord(
            id=None, at=self.clock(), role="server", number=number,
            vcr_id=vcr.id if vcr else None, peer=peer, outcome=outcome, reason=reason,
        )
        self.vlog.add(rec)
        async with self._logged_cond:
            self.logged += 1
            self._logged_cond.notify_all()

    async def wait_logged(self, n: int, timeout: float = 30.0) -> None:
        """Wait until `n` attempts in all are in the validation log (the client may finish
        before the server has logged)."""
        async with asyncio.timeout(timeout), self._logged_cond:
            await self._logged_cond.wait_for(lambda: self.logged >= n)
        await self.vlog.flush(timeout)

    async def _verifier(self, username: bytes, password: str) -> VerifierEntry:
        if self.offload:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, make_verifier, username, password)
        await loop_turn()
        return make_verifier(username, password)

    async def _serve(self, conn: SrpConnection) -> None:
        try:
            # Profile v2: after a successful validation the client may run another SRP session
            # in the same outer channel (DESIGN §5); each is rate-limited and logged on its own.
            while await self._serve_connected(conn) and await conn.next_inner(server=True):
                pass
            await conn.close()  # close_notify after a finished handshake (RFC 5246 §7.2.1)
        except StoreError as e:
            log.error("pvp server: store error serving %s: %s", conn.peer, e)
            if self.watch is not None:
                await self.watch.probe()   # pause now when it is an outage
            await self._log("failed", f"store-error {e}", number="", vcr=None, peer=conn.peer)
        except Exception:
            log.exception("pvp server: connection from %s failed", conn.peer)
        finally:
            conn.abort()

    async def _find_vcr(self, login: Login, now: float) -> Vcr | None:
        lo, hi = search_range(login)
        cands = await self.store.find_terminating_candidates(
            login.callee, login.caller, lo, hi, now, self.cfg.retention.vcr
        )
        return cands[0] if cands else None  # newest first: DESIGN §5 "the most recent"

    async def _serve_connected(self, conn: SrpConnection) -> bool:
        pvp = self.cfg.pvp
        peer = conn.peer
        host = peer.rsplit(":", 1)[0]
        now = self.clock()
        self.counters.attempts += 1
        if not self.limiter.allow(host, now):
            self.counters.rate_limited += 1
            await self._log("refused", "rate-limited", number="", vcr=None, peer=peer)
            return False
        ident = conn.identity
        try:
            if self.tls is not None and conn.outer is None:  # DESIGN §5 v2: the outer TLS first
                ident = conn.identity = await conn.outer_accept(self.tls)
                log.info("pvp server: %s authenticated as %s", peer, _esc(ident.describe()))
            username = await conn.peek_login()
        except SrpError as e:
            await self._log("failed", f"{e.kind} {e.detail}", number="", vcr=None, peer=peer)
            return False
        login: Login | None = None
        vcr: Vcr | None = None
        why = ""
        try:
            login = parse_login(username, pvp.quantum)
        except LoginError as e:
            why = f"bad-login {e.reason}"
        if login is not None:
            vcr = await self._find_vcr(login, now)
            why = "" if vcr else "no-vcr"
        if login is not None and vcr is not None:
            password = server_password(login, vcr.start, vcr.stop, pvp.quantum)
        else:
            password = secrets.token_hex(16)  # decoy: same work, the handshake fails
        number = login.callee if login else ""
        entry = await self._verifier(username, password)
        try:
            await conn.handshake_server(username, entry)
        except SrpError as e:
            # Close before any store work: what the peer can time ends here, the same for a
            # real VCR and a decoy (DESIGN §10); the alert went out with the failing step.
            await conn.closed()
            reason = why or e.kind
            if e.kind == "wrong-password" and vcr is not None and vcr.id is not None:
                after = await self.store.record_vcr_failure(vcr.id, pvp.max_vcr_failures)
                if after.burned:
                    self.counters.burned += 1
                    reason += f" (VCR {vcr.id} burned after {after.failures} failures)"
                else:
                    reason += f" (VCR {vcr.id}: {after.failures} failures)"
            elif e.kind == "wrong-password" and login is not None:
                await self.store.record_decoy_failure(pvp.max_vcr_failures)  # the same write
            await self._log("failed", reason, number=number, vcr=vcr, peer=peer)
            return False
        if login is None or vcr is None:  # pragma: no cover - a 128-bit random password
            await self._log("failed", why, number=number, vcr=vcr, peer=peer)
            return False
        return await self._exchange(conn, login, vcr, peer, ident)

    async def _ticket_key(self, now: float) -> TicketKey:
        """The current ticket key, re-read from the store at most every KEY_CACHE seconds (a
        rotation reaches new tickets within that time; older epochs stay valid anyway)."""
        if self._key is None or now - self._key_at > KEY_CACHE or now < self._key_at:
            key = await self.store.current_ticket_key()
            if key is None:
                key = await self.store.create_ticket_key(now)
            self._key, self._key_at = key, now
        return self._key

    async def _send(self, conn: SrpConnection, msg: ErrorMsg | ValInfo, *,
                    more: bool = False) -> None:
        await conn.write(encode_message(msg), more=more)

    async def _exchange(self, conn: SrpConnection, login: Login, vcr: Vcr, peer: str,
                        ident: PeerIdentity | None) -> bool:
        number = login.callee
        who = f" from {_esc(ident.describe())}" if ident is not None else ""
        try:
            msg = await read_message(conn, Framer())
        except MessageError as e:
            with contextlib.suppress(SrpError):
                await self._send(conn, ErrorMsg(400, f"bad message: {e.reason}"))
            await self._log("failed", f"bad-message {e.reason}", number=number, vcr=vcr,
                            peer=peer)
            return False
        except SrpError as e:
            await self._log("failed", f"exchange {e.kind}", number=number, vcr=vcr, peer=peer)
            return False
        if not isinstance(msg, Validate):
            await self._send(conn, ErrorMsg(400, "expected validate"))
            await self._log("failed", "bad-message not validate", number=number, vcr=vcr,
                            peer=peer)
            return False
        if not self.policy.permits(msg.domain):
            await self._send(conn, ErrorMsg(403, "domain not allowed"))
            await self._log("refused", f"domain-denied {_esc(msg.domain)}{who}", number=number,
                            vcr=vcr, peer=peer)
            return False
        if ident is not None and not self.policy.permits_user(ident.user):
            await self._send(conn, ErrorMsg(403, "domain not allowed"))
            await self._log("refused", f"user-denied {_esc(ident.describe())}", number=number,
                            vcr=vcr, peer=peer)
            return False
        if not self.routes:
            await self._send(conn, ErrorMsg(503, "no federation route configured"))
            await self._log("failed", "no-route configured", number=number, vcr=vcr, peer=peer)
            return False
        now = self.clock()
        key = await self._ticket_key(now)
        lifetime = self.cfg.tickets.lifetime
        ticket = mint_ticket(key, number, msg.domain, now, lifetime)
        # held for the close_notify that ends this SRP session (`_serve`: next_inner or
        # close), so the client reads both on one wake-up
        await self._send(conn, ValInfo(number, self.routes, ticket, int(now) + int(lifetime)),
                         more=True)
        await self._log("ok", f"ticket for {_esc(msg.domain)} (epoch {key.epoch}){who}",
                        number=number, vcr=vcr, peer=peer)

        return True

def _esc(text: str) -> str:
    """Peer-supplied text made safe for a one-line text log (DESIGN §10)."""
    return text.encode("unicode_escape").decode("ascii")[:300]
