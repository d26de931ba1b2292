"""PVP server: the terminating side of a validation (DESIGN §5, §6).

Per connection: rate limit by remote address → wait for the ClientHello and read the SRP login
→ find the terminating VCR (`credentials.search_range`, most recent candidate) → answer with
its verifier, or with a decoy verifier for a random password when there is none (the same
work, so the timing tells nothing) → TLS-SRP handshake → read `validate`, check the caller's
domain, mint a ticket, answer `valinfo`. A wrong password counts against the VCR; at
`pvp.max_vcr_failures` it is burned. Every attempt goes to the validation log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from vipr.config import ProviderConfig
from vipr.listen_error import listen_error
from vipr.pvp.credentials import Login, LoginError, parse_login, search_range, server_password
from vipr.pvp.messages import (
    ErrorMsg,
    Framer,
    MessageError,
    Validate,
    ValInfo,
    encode_message,
)
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
MAX_CONNECTIONS = 256  # in progress at once; more are refused ("busy") before any crypto
MAX_TRACKED_ADDRESSES = 10_000


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


@dataclass
class ServerCounters:
    attempts: int = 0
    ok: int = 0
    failed: int = 0
    refused: int = 0
    rate_limited: int = 0
    busy: int = 0
    burned: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class PvpServer:
    """Listens on `cfg.pvp.listen` (or `listen` given here) and validates callers."""

    def __init__(
        self,
        cfg: ProviderConfig,
        store: Store,
        *,
        executor: Executor | None = None,
        offload: bool | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        port: int | None = None,
        vlog: ValidationLog | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.vlog = vlog or ValidationLog(store)
        self.executor = executor
        self.offload = default_offload() if offload is None else offload
        self.clock = clock
        self.host = host if host is not None else cfg.pvp.listen.host
        self.port = port if port is not None else cfg.pvp.listen.port
        self.limiter = RateLimiter(cfg.pvp.max_attempts_per_minute)
        self.policy = DomainPolicy(cfg.pvp.allow_domains, cfg.pvp.deny_domains)
        self.counters = ServerCounters()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_connections = max_connections
        self._active = 0
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
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        await self.vlog.flush()  # batches linger: write what is queued while the store is open

    def _factory(self) -> SrpConnection:
        # pvp.handshake_timeout bounds the whole connection: hello, handshake and exchange.
        conn = SrpConnection(lifetime=self.cfg.pvp.handshake_timeout, executor=self.executor,
                             offload=self.offload)
        t = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return conn

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "listen": "{}:{}".format(*self.address) if self._server else None,
            "attempts": c.attempts, "ok": c.ok, "failed": c.failed, "refused": c.refused,
            "rate_limited": c.rate_limited, "busy": c.busy, "burned": c.burned,
            "reasons": dict(c.reasons),
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
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "validation from %s for %s: %s (%s)", peer, number or "?", outcome, reason)
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
        self._active += 1
        try:
            await conn.connected.wait()
            await self._serve_connected(conn)
        except StoreError as e:
            log.error("pvp server: store error serving %s: %s", conn.peer, e)
            await self._log("failed", f"store-error {e}", number="", vcr=None, peer=conn.peer)
        except Exception:
            log.exception("pvp server: connection from %s failed", conn.peer)
        finally:
            self._active -= 1
            conn.abort()

    async def _find_vcr(self, login: Login, now: float) -> Vcr | None:
        lo, hi = search_range(login)
        cands = await self.store.find_terminating_candidates(
            login.callee, login.caller, lo, hi, now, self.cfg.retention.vcr
        )
        return cands[0] if cands else None  # newest first: DESIGN §5 "the most recent"

    async def _serve_connected(self, conn: SrpConnection) -> None:
        pvp = self.cfg.pvp
        peer = conn.peer
        host = peer.rsplit(":", 1)[0]
        now = self.clock()
        self.counters.attempts += 1
        if self._active > self.max_connections:
            self.counters.busy += 1
            await self._log("refused", "busy", number="", vcr=None, peer=peer)
            return
        if not self.limiter.allow(host, now):
            self.counters.rate_limited += 1
            await self._log("refused", "rate-limited", number="", vcr=None, peer=peer)
            return
        try:
            username = await conn.peek_login()
        except SrpError as e:
            await self._log("failed", f"{e.kind} {e.detail}", number="", vcr=None, peer=peer)
            return
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
            reason = why or e.kind
            if e.kind == "wrong-password" and vcr is not None and vcr.id is not None:
                after = await self.store.record_vcr_failure(vcr.id, pvp.max_vcr_failures)
                if after.burned:
                    self.counters.burned += 1
                    reason += f" (VCR {vcr.id} burned after {after.failures} failures)"
                else:
                    reason += f" (VCR {vcr.id}: {after.failures} failures)"
            await self._log("failed", reason, number=number, vcr=vcr, peer=peer)
            return
        if login is None or vcr is None:  # pragma: no cover - a 128-bit random password
            await self._log("failed", why, number=number, vcr=vcr, peer=peer)
            return
        await self._exchange(conn, login, vcr, peer)

    async def _ticket_key(self, now: float) -> TicketKey:
        """The current ticket key, re-read from the store at most every KEY_CACHE seconds (a
        rotation reaches new tickets within that time; older epochs stay valid anyway)."""
        if self._key is None or now - self._key_at > KEY_CACHE or now < self._key_at:
            key = await self.store.current_ticket_key()
            if key is None:
                key = await self.store.create_ticket_key(now)
            self._key, self._key_at = key, now
        return self._key

    async def _send(self, conn: SrpConnection, msg: ErrorMsg | ValInfo) -> None:
        await conn.write(encode_message(msg))

    async def _exchange(self, conn: SrpConnection, login: Login, vcr: Vcr, peer: str) -> None:
        number = login.callee
        try:
            msg = await read_message(conn, Framer())
        except MessageError as e:
            with contextlib.suppress(SrpError):
                await self._send(conn, ErrorMsg(400, f"bad message: {e.reason}"))
            await self._log("failed", f"bad-message {e.reason}", number=number, vcr=vcr,
                            peer=peer)
            return
        except SrpError as e:
            await self._log("failed", f"exchange {e.kind}", number=number, vcr=vcr, peer=peer)
            return
        if not isinstance(msg, Validate):
            await self._send(conn, ErrorMsg(400, "expected validate"))
            await self._log("failed", "bad-message not validate", number=number, vcr=vcr,
                            peer=peer)
            return
        if not self.policy.permits(msg.domain):
            await self._send(conn, ErrorMsg(403, "domain not allowed"))
            await self._log("refused", f"domain-denied {msg.domain}", number=number, vcr=vcr,
                            peer=peer)
            return
        if not self.routes:
            await self._send(conn, ErrorMsg(503, "no federation route configured"))
            await self._log("failed", "no-route configured", number=number, vcr=vcr, peer=peer)
            return
        now = self.clock()
        key = await self._ticket_key(now)
        lifetime = self.cfg.tickets.lifetime
        ticket = mint_ticket(key, number, msg.domain, now, lifetime)
        await self._send(conn, ValInfo(number, self.routes, ticket, int(now) + int(lifetime)))
        await self._log("ok", f"ticket for {msg.domain} (epoch {key.epoch})", number=number,
                        vcr=vcr, peer=peer)
        await conn.close()
