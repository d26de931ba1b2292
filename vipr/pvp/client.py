"""PVP client: the originating side of a validation and its scheduler (DESIGN §5).

For each originating VCR (announced with `vcr_added`, found by the scan at start-up or by the
periodic rescan): wait a random delay in [min_delay, max_delay], skip calls shorter than
`min_duration`, look the callee up in the overlay (`lookup` on overlay.sock), drop our own
claims, AppAttach (`attach`) to each claimant and validate with TLS-SRP; on the first success
store the route and tell the proxy (`route_learned` on proxy.sock).

No claim → the VCR is dropped (deleted) silently. Every claimant failed → the VCR stays. Network
errors are retried with backoff; a wrong password is not retried at once with the same VCR and
peer (also across restarts: the client-side validation log remembers it).

Late call records (DESIGN §11): the terminating side's VCR may arrive after the first attempt
(an hourly CDR import), and a validation against a VCR that does not exist yet fails as a decoy.
So a VCR whose claimants failed with a wrong password is tried again LATE_RETRIES after that
first failure (1 h, 6 h, 24 h), while it is within `retention.vcr` of its call. Each retry
against a VCR that does exist still counts toward that VCR's burn limit on the server (DESIGN
§5), so the schedule gives a guesser no more than `pvp.max_vcr_failures` tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vipr.config import ProviderConfig
from vipr.ipc import IpcError, ipc_call
from vipr.logsetup import fields
from vipr.metrics import VCR_VALIDATIONS, Children, count_validation
from vipr.pvp.credentials import Credentials, client_credentials
from vipr.pvp.messages import ErrorMsg, Framer, MessageError, Validate, ValInfo, encode_message
from vipr.pvp.outer import OuterTls
from vipr.pvp.pause import StoreWatch
from vipr.pvp.server import read_message
from vipr.pvp.srp import SrpConnection, SrpError, default_offload
from vipr.pvp.vlog import ValidationLog
from vipr.store import Route, Store, StoreError, ValidationRecord, Vcr

__all__ = ["Claim", "Outcome", "PvpClient", "PVP_APPLICATION"]

log = logging.getLogger("vipr.pvp.client")

OWN_NODES_TTL = 60.0
MAX_PARALLEL_CLAIMANTS = 16  # claimants validated at once for one VCR
PVP_APPLICATION = 61441  # AppAttach Application-ID of the PVP server (DESIGN §4)
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
# Permanent failures for one (VCR, claimant): never retried with that VCR.
IDLE_REUSE = 2.0  # s an idle outer channel is kept for the next validation to that server
MAX_IDLE_SERVERS = 256
PERMANENT = frozenset({"wrong-password", "unknown-identity", "insufficient-security", "refused",
                       "outer-tls", "wrong-node"})
# Seconds after the first wrong-password failure of a VCR at which it is tried again.
LATE_RETRIES = (3600.0, 6 * 3600.0, 24 * 3600.0)


@dataclass(frozen=True, slots=True)
class Claim:
    node_id: str
    vservice: str
    peer_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one validation of a VCR came to: learned | failed | no-claims | no-vcr | skipped."""

    outcome: str
    detail: str = ""
    number: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "detail": self.detail, "number": self.number}


_VCR_OUTCOMES = Children(VCR_VALIDATIONS)


class _Network(Exception):
    """A transient failure: retried with backoff."""


class _Permanent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ClientCounters:
    queued: int = 0
    learned: int = 0
    failed: int = 0
    no_claims: int = 0
    skipped: int = 0
    retries: int = 0
    late_retries: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def _claims(answer: dict[str, Any]) -> list[Claim]:
    raw = answer.get("claims")
    if not isinstance(raw, list):
        raise _Network("overlay lookup answer without a claims list")
    out: list[Claim] = []
    for c in raw:
        if not isinstance(c, dict):
            continue
        node, vs, peer = c.get("node_id"), c.get("vservice"), c.get("peer_id")
        if (isinstance(node, str) and isinstance(vs, str) and isinstance(peer, str)
                and _HEX32.fullmatch(node) and _HEX16.fullmatch(vs) and _HEX32.fullmatch(peer)):
            out.append(Claim(node, vs, peer))
        else:
            log.warning("ignoring a malformed claim %r", c)
    return out


def _route_host(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.split(":", 1)[0]


class PvpClient:
    """Schedules and runs validations of originating VCRs."""

    def __init__(
        self,
        cfg: ProviderConfig,
        store: Store,
        *,
        tls: OuterTls | None,
        executor: Executor | None = None,
        offload: bool | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        backoff: Sequence[float] = (2.0, 8.0, 30.0),
        max_concurrent: int = 8,
        rescan_interval: float = 300.0,
        overlay_sock: Path | None = None,
        proxy_sock: Path | None = None,
        vlog: ValidationLog | None = None,
        late_retries: Sequence[float] = LATE_RETRIES,
        watch: StoreWatch | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.tls = tls  # None: TLS-SRP over the plain stream (profile v1; interop tests only)
        self.vlog = vlog or ValidationLog(store)
        self.executor = executor
        self.offload = default_offload() if offload is None else offload
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff = tuple(backoff)
        self.rescan_interval = rescan_interval
        self.overlay_sock = overlay_sock or cfg.runtime_dir / "overlay.sock"
        self.proxy_sock = proxy_sock or cfg.runtime_dir / "proxy.sock"
        self.counters = ClientCounters()
        self.watch = watch or StoreWatch(store)   # the database outage pause (pvp.pause)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._scheduled: dict[int, asyncio.Task[Outcome]] = {}
        self._finished: set[int] = set()  # failed in this process: not rescheduled by rescans
        self._wrong: set[tuple[int, str]] = set()  # (vcr id, peer id) with a wrong password
        self.late_retries = tuple(sorted(late_retries))
        self._first_wrong: dict[int, float] = {}   # vcr id → its first wrong-password failure
        self._late_done: dict[int, int] = {}       # vcr id → late retries already made
        self._rescan: asyncio.Task[None] | None = None
        self._own: tuple[float, set[str]] | None = None
        self._idle: dict[tuple[str, int, str], list[tuple[float, SrpConnection]]] = {}
        self._max_idle = max_concurrent

    def _attempt_fn(self, claim: Claim, creds: Credentials) -> Callable[[], Any]:
        return lambda: self._attempt(claim, creds)

    # ------------------------------------------------------------------ scheduling

    async def start(self) -> None:
        """Remember past wrong passwords, queue every pending VCR, start the periodic rescan."""
        since = self.clock() - self.cfg.retention.vcr
        tries: dict[tuple[int, str], int] = {}
        try:
            for rec in await self.store.list_validations(limit=None, since=since):
                if (rec.role == "client" and rec.reason.startswith("wrong-password")
                        and rec.vcr_id is not None):
                    self._wrong.add((rec.vcr_id, rec.peer))
                    first = self._first_wrong.get(rec.vcr_id, rec.at)
                    self._first_wrong[rec.vcr_id] = min(first, rec.at)
                    tries[rec.vcr_id, rec.peer] = tries.get((rec.vcr_id, rec.peer), 0) + 1
            for (vid, _peer), n in tries.items():   # attempts beyond the first were retries
                self._late_done[vid] = max(self._late_done.get(vid, 0), n - 1)
        except StoreError as e:
            log.warning("cannot read the validation log: %s", e)
        await self.scan()
        self._rescan = asyncio.create_task(self._rescan_loop())

    async def close(self) -> None:
        self.drop_idle()
        await self.vlog.flush()
        tasks = list(self._scheduled.values())
        if self._rescan is not None:
            tasks.append(self._rescan)  # type: ignore[arg-type]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until no validation is scheduled or running (tests, `vipr validate`)."""
        while self._scheduled:
            await asyncio.gather(*list(self._scheduled.values()), return_exceptions=True)

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_interval)
            try:
                await self.scan()
            except StoreError as e:
                log.warning("rescan failed: %s", e)

    async def scan(self) -> int:
        """Queue every pending originating VCR within the retention time; how many were new."""
        now = self.clock()
        n = 0
        for v in await self.store.pending_originating_vcrs(self.cfg.pvp.min_duration):
            if v.start >= now - self.cfg.retention.vcr and self._schedule(v):
                n += 1
        return n

    async def enqueue(self, vcr_id: int) -> bool:
        """`vcr_added`: queue one VCR; False when it is not a pending originating one. While
        the store is unreachable the VCR is held and looked at when it answers again."""
        try:
            v = await self.store.get_vcr(vcr_id)
        except StoreError:
            if await self.watch.probe():
                raise
            return self._schedule_id(vcr_id)   # its delay as usual, then held until back
        if (v is None or v.direction != "originating" or v.validated is not None or v.burned
                or v.state != "complete"):
            return False
        if v.duration < self.cfg.pvp.min_duration:
            self.counters.skipped += 1
            log.debug("VCR %d: call of %.1f s is too short", vcr_id, v.duration)
            return False
        return self._schedule(v)

    def _schedule(self, v: Vcr, delay: float | None = None, *, late: bool = False) -> bool:
        assert v.id is not None
        return self._schedule_id(v.id, delay, late=late)

    def _schedule_id(self, vid: int, delay: float | None = None, *, late: bool = False) -> bool:
        if not late and (vid in self._scheduled or vid in self._finished):
            return False
        if delay is None:
            delay = self.rng.uniform(self.cfg.pvp.min_delay, self.cfg.pvp.max_delay)
        self.counters.queued += 1
        task = asyncio.create_task(self._delayed(vid, delay, late))
        self._scheduled[vid] = task

        def done(t: asyncio.Task[Outcome]) -> None:
            if self._scheduled.get(vid) is t:   # not a late retry scheduled by this task
                del self._scheduled[vid]

        task.add_done_callback(done)
        return True

    def _next_late(self, v: Vcr) -> float | None:
        """Seconds until the next late retry of `v` (DESIGN §11), or None when there is none:
        no claimant failed with a wrong password, the schedule is used up, or the VCR would be
        purged (retention.vcr) before then."""
        vid = v.id
        if vid is None or not any(w[0] == vid for w in self._wrong):
            return None
        now = self.clock()
        first = self._first_wrong.setdefault(vid, now)
        k = self._late_done.get(vid, 0)
        if k >= len(self.late_retries):
            return None
        at = first + self.late_retries[k]
        if at >= v.start + self.cfg.retention.vcr:
            return None
        return max(at - now, 0.0)

    async def _hold(self) -> None:
        """While the store is unreachable (pvp.pause): wait until it answers again."""
        if self.watch.paused:
            self.watch.held += 1
            await self.watch.wait_open()

    async def _delayed(self, vcr_id: int, delay: float, late: bool = False) -> Outcome:
        await asyncio.sleep(delay)
        while True:
            await self._hold()
            try:
                v = await self.store.get_vcr(vcr_id)
                if (v is None or v.validated is not None or v.burned
                        or v.direction != "originating"):
                    return Outcome("no-vcr", "gone, not originating or already validated")
                if late:   # the claimants that failed with a wrong password get one more try
                    self._late_done[vcr_id] = self._late_done.get(vcr_id, 0) + 1
                    self._wrong = {w for w in self._wrong if w[0] != vcr_id}
                    self.counters.late_retries += 1
                out = await self.validate_vcr(v)
                break
            except StoreError as e:
                if not await self.watch.probe():   # an outage: held, run when it is back
                    log.info("validation of VCR %d held: store error %s", vcr_id, e)
                    continue
                log.error("validation of VCR %d: store error %s (retried at the next rescan)",
                          vcr_id, e)
                return Outcome("failed", f"store error {e}")
        if out.outcome != "learned":
            nxt = self._next_late(v)
            if nxt is not None:
                log.info("VCR %d: validation failed; tried again in %.0f s (late call record?)",
                         vcr_id, nxt)
                self._schedule(v, nxt, late=True)
            else:
                self._finished.add(vcr_id)
        return out

    async def validate_number(self, number: str) -> Outcome:
        """`vipr validate NUMBER`: validate from the latest originating VCR to it, now."""
        v = await self.store.latest_originating_vcr(number)
        if v is None:
            return Outcome("no-vcr", f"no originating VCR to {number}", number)
        out = await self.validate_vcr(v)
        await self.vlog.flush()  # `vipr validations list` right after shows this attempt
        return out

    # ------------------------------------------------------------------ one VCR

    async def _log(self, v: Vcr, peer: str, outcome: str, reason: str) -> None:
        # the reason of a success names routes and an address: its label is "ticket"
        count_validation("client", outcome, "ticket" if outcome == "learned" else reason)
        log.log(logging.WARNING if outcome == "failed" else logging.INFO,
                "validation of VCR %s (%s) with %s: %s (%s)", v.id, v.callee, peer, outcome,
                reason, extra=fields(vcr_id=v.id, call_id=v.call_id, number=v.callee,
                                     peer=peer, outcome=outcome,
                                     reason=reason.split(" ", 1)[0]))
        self.vlog.add(ValidationRecord(
            id=None, at=self.clock(), role="client", number=v.callee, vcr_id=v.id,
            peer=peer, outcome=outcome, reason=reason,
        ))

    def _count(self, out: Outcome) -> Outcome:
        c = self.counters
        c.outcomes[out.outcome] = c.outcomes.get(out.outcome, 0) + 1
        _VCR_OUTCOMES.inc(out.outcome)
        if out.outcome == "learned":
            c.learned += 1
        elif out.outcome == "no-claims":
            c.no_claims += 1
        elif out.outcome == "failed":
            c.failed += 1
        return out

    async def validate_vcr(self, v: Vcr) -> Outcome:
        async with self._slots:
            return self._count(await self._validate(v))

    async def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run `fn` (a coroutine function); on _Network retry after each backoff step."""
        for i in range(len(self.backoff) + 1):
            try:
                return await fn()
            except _Network as e:
                if i == len(self.backoff):
                    raise
                self.counters.retries += 1
                log.info("%s: %s; retrying in %.3g s", what, e, self.backoff[i])
                await asyncio.sleep(self.backoff[i])
        raise AssertionError("unreachable")

    async def _lookup(self, number: str) -> list[Claim]:
        async def once() -> list[Claim]:
            try:
                ans = await ipc_call(self.overlay_sock, "lookup", {"number": number}, 15.0)
            except IpcError as e:
                raise _Network(f"overlay lookup: {e}") from None
            return _claims(ans)
        return await self._retrying(f"lookup {number}", once)  # type: ignore[no-any-return]

    async def _own_nodes(self) -> set[str]:
        """Our overlay's Node-IDs (from its `status`, cached for OWN_NODES_TTL seconds)."""
        now = time.monotonic()
        if self._own is not None and now - self._own[0] < OWN_NODES_TTL:
            return self._own[1]
        try:
            st = await ipc_call(self.overlay_sock, "status", {}, 10.0)
        except IpcError as e:
            log.warning("overlay status: %s; own claims recognised by vservice only", e)
            return set()
        nodes = st.get("nodes")
        if not isinstance(nodes, list):
            return set()
        own = {str(n.get("node_id")) for n in nodes if isinstance(n, dict)}
        self._own = (now, own)
        return own

    async def _validate(self, v: Vcr) -> Outcome:
        if v.state != "complete":   # DESIGN §7: open or unterminated, no real stop time
            self.counters.skipped += 1
            return Outcome("skipped", f"call is {v.state}, not complete", v.callee)
        if v.duration < self.cfg.pvp.min_duration:
            self.counters.skipped += 1
            return Outcome("skipped", f"call of {v.duration:.1f} s is too short", v.callee)
        try:
            claims = await self._lookup(v.callee)
        except _Network as e:
            await self._log(v, "overlay", "failed", f"network {e}")
            return Outcome("failed", str(e), v.callee)
        own = await self._own_nodes()
        mine = self.cfg.provider.vservice.lower()
        others: list[Claim] = []
        for c in claims:  # foreign claims, one per PVP peer (a provider may store several)
            if (c.node_id in own or c.peer_id in own or (not own and c.vservice == mine)
                    or any(o.peer_id == c.peer_id for o in others)):
                continue
            others.append(c)
        if not others:
            # DESIGN §5 (seed): nobody else claims the number: drop the VCR silently.
            await self._log(v, "overlay", "no-claims", f"{len(claims)} claims, none foreign")
            if v.id is not None:
                with contextlib.suppress(StoreError):
                    await self.store.delete_vcr(v.id)
            return Outcome("no-claims", "", v.callee)
        creds = client_credentials(v.caller, v.callee, v.start, v.stop, self.cfg.pvp.quantum)
        reasons: list[str] = []
        gate = asyncio.Semaphore(MAX_PARALLEL_CLAIMANTS)

        async def attempt(claim: Claim) -> tuple[Claim, ValInfo, str] | None:
            if v.id is not None and (v.id, claim.peer_id) in self._wrong:
                reasons.append(f"{claim.peer_id[:8]}: wrong-password before")
                return None
            async with gate:
                try:
                    info, addr = await self._retrying(
                        f"validate {v.callee} at {claim.peer_id[:8]}",
                        self._attempt_fn(claim, creds),
                    )
                except _Network as e:
                    reasons.append(f"{claim.peer_id[:8]}: {e}")
                    await self._log(v, claim.peer_id, "failed", f"network {e}")
                    return None
                except _Permanent as e:
                    reasons.append(f"{claim.peer_id[:8]}: {e.reason}")
                    if v.id is not None:
                        self._wrong.add((v.id, claim.peer_id))
                    await self._log(v, claim.peer_id, "failed", e.reason)
                    return None
            if info.number != v.callee:
                reasons.append(f"{claim.peer_id[:8]}: valinfo for {info.number}")
                await self._log(v, claim.peer_id, "failed", f"number-mismatch {info.number}")
                return None
            return claim, info, addr

        # DESIGN §5/§10: every claimant at once, the first that proves the call wins. Tried one
        # after another, a member storing claims whose peers never answer AppAttach would hold
        # the real owner's validation back by one attach timeout (and its retries) per claim.
        tasks = [asyncio.create_task(attempt(c)) for c in others]
        try:
            for next_done in asyncio.as_completed(tasks):
                won = await next_done
                if won is not None:
                    claim, info, addr = won
                    await self._learned(v, claim, info, addr)
                    return Outcome("learned", f"{info.routes[0]} via {claim.peer_id}", v.callee)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return Outcome("failed", "; ".join(reasons), v.callee)

    async def _attempt(self, claim: Claim, creds: Credentials) -> tuple[ValInfo, str]:
        try:
            ans = await ipc_call(
                self.overlay_sock, "attach",
                {"peer_id": claim.peer_id, "application": PVP_APPLICATION}, 15.0,
            )
            host, port = str(ans["host"]), int(ans["port"])
        except IpcError as e:
            raise _Network(f"attach: {e}") from None
        except (KeyError, TypeError, ValueError):
            raise _Network("attach: malformed answer") from None
        return await self.validate_at(host, port, creds, claim.peer_id), f"{host}:{port}"

    async def validate_at(self, host: str, port: int, creds: Credentials, node_id: str
                          ) -> ValInfo:
        """One validation against the PVP server AppAttached at Node-ID `node_id` (hex):
        the outer TLS (profile v2, unless `tls` is None), TLS-SRP, `validate`, in the idle
        channel kept from the last validation to that server when there is one. No retries
        (not even when an idle channel fails: the server may have refused this attempt, and
        `_retrying` retries network errors after a backoff). _Network | _Permanent."""
        key = (host, port, node_id)
        conn = self._take_idle(key)
        if conn is not None:
            return await self._validate_on(conn, creds, key, fresh=False)
        loop = asyncio.get_running_loop()
        timeout = self.cfg.pvp.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: SrpConnection(lifetime=timeout, executor=self.executor,
                                          offload=self.offload),
                    host, port,
                )
        except (OSError, TimeoutError) as e:
            raise _Network(f"connect {host}:{port}: {e}") from None
        return await self._validate_on(conn, creds, key, fresh=True)

    async def _validate_on(self, conn: SrpConnection, creds: Credentials,
                           key: tuple[str, int, str], *, fresh: bool) -> ValInfo:
        keep = False
        try:
            if fresh and self.tls is not None:  # DESIGN §5 v2: no SRP byte before this is done
                await conn.outer_connect(self.tls, key[2])
            await conn.handshake_client(creds.username, creds.password)
            dom = self.cfg.provider.domain.lower()
            await conn.write(encode_message(Validate(dom, self.cfg.provider.vservice)))
            msg = await read_message(conn, Framer())
            if isinstance(msg, ValInfo) and self.tls is not None:
                keep = await conn.next_inner(server=False)  # kept for the next validation
        except SrpError as e:
            if e.kind in PERMANENT:
                raise _Permanent(f"{e.kind} {e.detail}".strip()) from None
            raise _Network(f"{e.kind} {e.detail}".strip()) from None
        except MessageError as e:
            raise _Permanent(f"bad-answer {e.reason}") from None
        finally:
            if keep:
                self._put_idle(key, conn)
            else:
                await conn.close()
        if isinstance(msg, ErrorMsg):
            raise _Permanent(f"refused {msg.code} {msg.reason}")
        if not isinstance(msg, ValInfo):
            raise _Permanent("bad-answer not valinfo")
        return msg

    # ------------------------------------------------------------------ idle outer channels

    def _take_idle(self, key: tuple[str, int, str]) -> SrpConnection | None:
        """The most recent idle channel to that server, if still usable (DESIGN §5)."""
        now = time.monotonic()
        idle = self._idle.get(key, [])
        while idle:
            at, conn = idle.pop()
            if now - at < IDLE_REUSE and conn.reusable:
                return conn
            conn.abort()
        self._idle.pop(key, None)
        return None

    def _put_idle(self, key: tuple[str, int, str], conn: SrpConnection) -> None:
        now = time.monotonic()
        if len(self._idle) > MAX_IDLE_SERVERS:  # forget servers not validated against lately
            for k in [k for k, v in self._idle.items() if not v or now - v[-1][0] >= IDLE_REUSE]:
                for _, c in self._idle.pop(k):
                    c.abort()
        idle = self._idle.setdefault(key, [])
        idle.append((now, conn))
        while len(idle) > self._max_idle:
            idle.pop(0)[1].abort()

    def drop_idle(self) -> None:
        """Close every idle channel (the next validations start afresh)."""
        for idle in self._idle.values():
            for _, conn in idle:
                conn.abort()
        self._idle.clear()

    async def _learned(self, v: Vcr, claim: Claim, info: ValInfo, addr: str) -> None:
        now = self.clock()
        route = Route(
            number=info.number, routes=info.routes, ticket=info.ticket,
            ticket_expires=float(info.ticket_expires),
            expires=min(float(info.ticket_expires), now + self.cfg.tickets.lifetime),
            learned_from_node=claim.node_id, learned_from_domain=_route_host(info.routes[0]),
            validated_at=now,
        )
        await self.store.learn_route(route, v.id)
        await self._log(v, claim.peer_id, "learned", f"{', '.join(info.routes)} from {addr}")
        log.info("learned a route to %s: %s", info.number, ", ".join(info.routes))
        if not self.proxy_sock.exists():  # cheaper than a failing connect on every route
            log.info("proxy not told about %s (no %s)", info.number, self.proxy_sock)
            return
        try:
            await ipc_call(self.proxy_sock, "route_learned", {"number": info.number}, 5.0)
        except IpcError as e:
            log.info("proxy not told about %s (%s); it reloads routes later", info.number, e)

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "queued": c.queued, "scheduled": len(self._scheduled), "learned": c.learned,
            "failed": c.failed, "no_claims": c.no_claims, "skipped": c.skipped,
            "retries": c.retries, "late_retries": c.late_retries, "held": self.watch.held,
        }
