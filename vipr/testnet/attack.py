"""The attack campaigns of issue 13, shared by `bench/attack.py` and tests/attack/.

Every campaign is bounded in inputs and time, runs from source addresses 127.0.0.2-9
(ATTACK_SOURCES; legitimate traffic comes from 127.0.0.1, so per-address caps do not hit it)
and is framed by `run_campaign`: peaks reset, the attack runs while legitimate calls and
validations are made (`during`), then crashes (daemons that died), listeners alive, a
legitimate call and validation after, and memory per daemon (start-up, peak, after).

    anet = await AttackNet.start(root)
    res = await run_campaign(anet, "sip_udp", lambda during: sip_datagrams(anet, during, n=500))
    res.as_dict()
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from vipr.pvp.credentials import client_credentials
from vipr.pvp.srp import SrpConnection, SrpError
from vipr.testnet.attack_flood import ATTACK_SOURCES, Flood
from vipr.testnet.attack_inputs import (
    crash_datagrams,
    invite,
    oversized_requests,
    reload_frames,
    sip_mutations,
    tls_garbage,
    torture_corpus,
)
from vipr.testnet.attack_net import AttackNet, LegitResult, Listener, stream_exchange

__all__ = [
    "CampaignResult", "Attack", "connection_flood", "kill_roles", "pvp_brute_force",
    "reload_fuzz", "run_campaign", "sip_datagrams", "sip_stream", "slowloris",
]

During = Callable[[], Awaitable[None]]
Attack = Callable[[During], Awaitable[dict[str, Any]]]

RSS_PEAK_LIMIT_MB = 300.0
RSS_AFTER_FACTOR = 1.2
RSS_ABORT_MB = 2500.0  # a daemon past this is killed by the bench (and the campaign fails)


@dataclass
class CampaignResult:
    name: str
    inputs: dict[str, int] = field(default_factory=dict)     # listener:port → inputs tried
    crashes: list[str] = field(default_factory=list)
    listeners_alive_after: dict[str, bool] = field(default_factory=dict)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    during: list[LegitResult] = field(default_factory=list)
    after: list[LegitResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    rss_judged: tuple[str, ...] = ()     # daemons held to the RSS targets (the flooded one)
    seconds: float = 0.0
    error: str | None = None

    def problems(self) -> list[str]:
        out = []
        if self.error:
            out.append(f"error: {self.error}")
        if self.crashes:
            out.append(f"crashed: {', '.join(self.crashes)}")
        dead = [n for n, ok in self.listeners_alive_after.items() if not ok]
        if dead:
            out.append(f"listeners dead after: {', '.join(dead)}")
        for when, rs in (("during", self.during), ("after", self.after)):
            bad = [r for r in rs if not r.ok]
            if not rs or bad:
                out.append(f"legit {when}: " + ("none made" if not rs else
                                                "; ".join(str(r.detail) for r in bad)))
        for n, r in self.rss.items():
            if n in self.rss_judged:
                if r["peak_mb"] >= RSS_PEAK_LIMIT_MB:
                    out.append(f"{n} peak RSS {r['peak_mb']:.0f} MB")
                if r["after_mb"] > r["startup_mb"] * RSS_AFTER_FACTOR:
                    out.append(f"{n} RSS after {r['after_mb']:.0f} MB > 120 % of start-up "
                               f"{r['startup_mb']:.0f} MB")
        if self.extra.get("victim_validation_ok") is False:
            out.append(f"squatted number {self.extra.get('victim')}: "
                       f"{self.extra.get('victim_detail')}")
        slow = self.extra.get("slowloris", {})
        for mode in ("pre_handshake", "plain"):      # handshake_timeout must close these
            m = slow.get(mode)
            if m and m["closed_by_server"] < m["opened"]:
                out.append(f"slowloris {mode}: {m['opened'] - m['closed_by_server']} of "
                           f"{m['opened']} slow peers still open after {slow['held_s']} s")
        for listener, answers in self.extra.get("oversized_answers", {}).items():
            for shape, status in answers.items():
                want = (513,) if shape == "body_70k" else (400, 513)
                if (status is not None or shape == "body_70k") and status not in want:
                    out.append(f"{listener} {shape}: answered {status}, expected "
                               f"{' or '.join(map(str, want))}")
        if self.extra.get("false_accepts"):
            out.append(f"{self.extra['false_accepts']} wrong passwords accepted")
        for n in self.extra.get("rss_aborted", []):
            out.append(f"{n} killed by the bench at RSS > {RSS_ABORT_MB:.0f} MB")
        if self.extra.get("vcr_missing"):
            out.append(f"{self.extra['vcr_missing']} answered calls without a VCR")
        return out

    def as_dict(self) -> dict[str, Any]:
        def legit(rs: list[LegitResult]) -> dict[str, int]:
            return {"calls_ok": sum(r.call_ok and r.vipr_call_ok is not False for r in rs),
                    "validations_ok": sum(r.validation_ok for r in rs), "tried": len(rs)}

        return {
            "inputs": self.inputs, "crashes": len(self.crashes), "crashed": self.crashes,
            "listeners_alive_after": self.listeners_alive_after,
            "all_listeners_alive_after": all(self.listeners_alive_after.values()),
            "peak_rss_mb": {n: round(r["peak_mb"], 1) for n, r in self.rss.items()},
            "after_rss_mb": {n: round(r["after_mb"], 1) for n, r in self.rss.items()},
            "startup_rss_mb": {n: round(r["startup_mb"], 1) for n, r in self.rss.items()},
            "legit_calls_ok_during": legit(self.during)["calls_ok"],
            "legit_validations_ok_during": legit(self.during)["validations_ok"],
            "legit_during_tried": len(self.during),
            "legit_calls_ok_after": legit(self.after)["calls_ok"],
            "legit_validations_ok_after": legit(self.after)["validations_ok"],
            "legit_after_tried": len(self.after),
            **self.extra, "seconds": round(self.seconds, 1), "error": self.error,
        }


async def run_campaign(anet: AttackNet, name: str, attack: Attack, *, rss_settle: float = 0.0,
                       legit_during: int = 1, rss_judged: tuple[str, ...] = ()
                       ) -> CampaignResult:
    """Run `attack`; it calls `during()` while its attack is in progress (legit traffic).
    `rss_judged`: daemons held to the memory targets (peak < 300 MB, after ≤ 120 % of
    start-up). A daemon left deaf or bloated is restarted after the verdict, so that the next
    campaign starts from a working network."""
    res = CampaignResult(name, rss_judged=rss_judged)
    t0 = time.monotonic()
    anet.reset_peaks()
    sampled: dict[str, float] = {}
    stop = asyncio.Event()

    aborted: list[str] = []

    async def sample() -> None:            # VmRSS now and then, besides VmHWM
        while not stop.is_set():
            for n, (rss, hwm) in anet.rss().items():
                sampled[n] = max(sampled.get(n, 0.0), rss, hwm)
                if rss > RSS_ABORT_MB and n not in aborted:   # protect the shared machine
                    aborted.append(n)
                    await anet.kill9(n)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def during() -> None:
        for _ in range(legit_during):
            res.during.append(await anet.legit())

    sampler = asyncio.ensure_future(sample())
    try:
        res.extra.update(await attack(during))
    except Exception as exc:       # a broken campaign still reports what it saw
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        for n, (rss, hwm) in anet.rss().items():
            sampled[n] = max(sampled.get(n, 0.0), rss, hwm)
        stop.set()
        await sampler
    res.inputs = res.extra.pop("inputs", {})
    if aborted:
        res.extra["rss_aborted"] = aborted
    for n in aborted:
        await anet.revive(n)
    res.crashes = await anet.collect_crashes()
    res.listeners_alive_after = await anet.listeners_alive()
    res.after.append(await anet.legit())
    # a daemon whose listener died stays up but deaf (defect 1): restart it after the
    # verdict so that the next campaign starts from a working network again
    deaf = sorted({x.daemon for x in anet.listeners if not res.listeners_alive_after[x.name]})
    if deaf:
        res.extra["restarted_deaf"] = deaf
    for n in deaf:
        await anet.kill9(n)
        await anet.revive(n)
    deadline = time.monotonic() + rss_settle      # memory given back once the attack ended
    while True:
        now = anet.rss()
        back = all(r[0] <= anet.startup_rss.get(n, r[0]) * RSS_AFTER_FACTOR
                   for n, r in now.items())
        if back or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    res.rss = {n: {"startup_mb": anet.startup_rss.get(n, 0.0), "peak_mb": sampled.get(n, r[1]),
                   "after_mb": r[0]} for n, r in now.items()}
    bloated = sorted(n for n, r in res.rss.items()
                     if r["after_mb"] > r["startup_mb"] * RSS_AFTER_FACTOR and n not in deaf)
    if bloated:
        res.extra["restarted_bloated"] = bloated
    for n in bloated:
        await anet.kill9(n)
        await anet.revive(n)
        anet.startup_rss.pop(n, None)
    for n, (rss, _) in anet.rss().items():
        anet.startup_rss.setdefault(n, rss)     # a restarted daemon: its new start-up RSS
    res.seconds = time.monotonic() - t0
    return res


def _sources() -> list[str]:
    return list(ATTACK_SOURCES)


# ---------------------------------------------------------------------- SIP


async def sip_datagrams(anet: AttackNet, during: During, *, mutations: int,
                        targets: list[Listener] | None = None, seed: int = 13) -> dict[str, Any]:
    """SIP over UDP: torture corpus, mutations of a valid INVITE, oversized datagrams and the
    defect-1 datagrams (NUL / not UTF-8 in the Via host) from the attack sources."""
    rng = random.Random(seed)
    targets = targets or [x for x in anet.listeners
                          if x.kind == "sip_udp" and x.daemon == f"proxy-{anet.b}"]
    inputs: Counter[str] = Counter()
    answers: dict[str, dict[str, int | None]] = {}
    loop = asyncio.get_running_loop()
    corpus = torture_corpus()

    async def one_target(x: Listener) -> None:
        dst = (x.host, x.port)
        socks = []
        for src in _sources():
            import socket as _s
            s = _s.socket(_s.AF_INET, _s.SOCK_DGRAM)
            s.setblocking(False)
            s.bind((src, 0))
            socks.append(s)
        try:
            valid = invite("udp", socks[0].getsockname()[0], dst, rng)
            muts = sip_mutations(valid, rng)
            batch = [*corpus, *(next(muts)[:65000] for _ in range(mutations))]
            for i, data in enumerate(batch):
                with contextlib.suppress(OSError):
                    socks[i % len(socks)].sendto(data, dst)
                inputs[f"{x.name}:{x.port}"] += 1
                if i % 20 == 0:
                    await asyncio.sleep(0.002)      # let the daemon (and us) breathe
            # the oversized shapes: what does the proxy answer (513 / 400 expected)?
            got: dict[str, int | None] = {}
            for shape, data in oversized_requests("udp", "127.0.0.2", dst, rng,
                                                  stream=False).items():
                s = socks[1]
                with contextlib.suppress(OSError):
                    s.sendto(data, dst)
                inputs[f"{x.name}:{x.port}"] += 1
                got[shape] = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3.0):
                        while True:
                            resp = await loop.sock_recv(s, 65536)
                            if resp.startswith(b"SIP/2.0 ") and resp[8:9] != b"1":
                                got[shape] = int(resp[8:11])
                                break
            answers[x.name] = got
            for data in crash_datagrams("127.0.0.2", dst):   # defect 1: last, they may kill it
                with contextlib.suppress(OSError):
                    socks[2].sendto(data, dst)
                inputs[f"{x.name}:{x.port}"] += 1
        finally:
            for s in socks:
                s.close()

    await asyncio.gather(during(), *(one_target(x) for x in targets))
    return {"inputs": dict(inputs), "oversized_answers": answers,
            "torture_corpus": len(corpus)}


async def sip_stream(anet: AttackNet, during: During, x: Listener, *, mutations: int,
                     parallel: int = 16, seed: int = 14) -> dict[str, Any]:
    """SIP over TCP or TLS (`x.kind`): corpus and mutations, one connection each, and the
    oversized requests (5,000 headers, 800 Vias, 70 KB body): their answers are recorded."""
    rng = random.Random(seed)
    ctx = anet.federation_client_ctx() if x.kind == "sip_tls" else None
    transport = "tls" if ctx else "tcp"
    dst = (x.host, x.port)
    sources = _sources()
    valid = invite(transport, sources[0], dst, rng)
    muts = sip_mutations(valid, rng)
    batch = [*torture_corpus(), *(next(muts) for _ in range(mutations))]
    sem = asyncio.Semaphore(parallel)
    answered: Counter[str] = Counter()

    async def one(i: int, data: bytes) -> None:
        async with sem:
            st = await stream_exchange(dst, data, ctx=ctx, src=sources[i % len(sources)],
                                       timeout=1.0)
            answered["answered" if st is not None else "no_answer"] += 1

    async def attack() -> dict[str, int | None]:
        await asyncio.gather(*(one(i, d) for i, d in enumerate(batch)))
        big = oversized_requests(transport, sources[1], dst, rng, stream=True)
        got = await asyncio.gather(*(stream_exchange(dst, d, ctx=ctx, src=sources[2 + j],
                                                     timeout=10.0)
                                     for j, d in enumerate(big.values())))
        return dict(zip(big, got, strict=True))

    _, oversized = await asyncio.gather(during(), attack())
    return {"inputs": {f"{x.name}:{x.port}": len(batch) + 3},
            "oversized_answers": {x.name: oversized}, "answers": dict(answered)}


async def slowloris(anet: AttackNet, during: During, x: Listener, *, connections: int,
                    duration: float, interval: float = 1.0) -> dict[str, Any]:
    """Partial SIP headers trickled three bytes per `interval` on `connections` connections
    (on a TLS listener half of them after the handshake, half silent before it): how many
    the server closed, and when."""
    ctx = anet.federation_client_ctx() if x.kind == "sip_tls" else None
    sources = _sources()
    head = invite("tls" if ctx else "tcp", sources[0], (x.host, x.port), random.Random(3))
    closed_after: dict[str, list[float]] = {}
    opened: Counter[str] = Counter()

    async def one(i: int, with_tls: bool) -> None:
        # modes: "pre_handshake" (TLS port, silent), "after_handshake" (TLS, trickling),
        # "plain" (TCP, trickling); handshake_timeout covers the first and the last
        mode = "after_handshake" if with_tls else "pre_handshake" if ctx else "plain"
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(duration + 5.0):
                reader, writer = await asyncio.open_connection(
                    x.host, x.port, ssl=ctx if with_tls else None,
                    local_addr=(sources[i % len(sources)], 0),
                    server_hostname="" if with_tls else None)
        except (OSError, TimeoutError, ssl.SSLError):
            return
        opened[mode] += 1
        pos = 0
        try:
            while time.monotonic() - t0 < duration:
                chunk = (b"" if mode == "pre_handshake" else
                         head[pos:pos + 3] if pos + 3 < len(head) - 4 else b"X")
                pos += 3
                writer.write(chunk)
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(4096), interval):
                        closed_after.setdefault(mode, []).append(time.monotonic() - t0)
                        return
        except (OSError, ssl.SSLError):
            closed_after.setdefault(mode, []).append(time.monotonic() - t0)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    tasks = [one(i, ctx is not None and i % 2 == 0) for i in range(connections)]
    await asyncio.gather(during(), *tasks)
    out: dict[str, Any] = {"held_s": duration}
    for mode, n in opened.items():
        ts = sorted(closed_after.get(mode, []))
        out[mode] = {"opened": n, "closed_by_server": len(ts),
                     "median_close_s": round(ts[len(ts) // 2], 1) if ts else None}
    return {"inputs": {f"{x.name}:{x.port}": connections}, "slowloris": out}


# ---------------------------------------------------------------------- floods


async def connection_flood(anet: AttackNet, during: During, x: Listener, *, total: int,
                           garbage: bool = False) -> dict[str, Any]:
    """`total` TCP connections to `x` from the attack sources, held while legitimate traffic
    runs, then closed (one worker process per source: see attack_flood)."""
    flood = Flood(x.host, x.port, total, garbage=garbage)
    async with flood:
        opened_at_peak = flood.opened
        await during()
    r = flood.result
    return {"inputs": {f"{x.name}:{x.port}": total},
            "flood": {**r, "held_open_at_peak": opened_at_peak}}


# ---------------------------------------------------------------------- RELOAD


async def reload_fuzz(anet: AttackNet, during: During, *, connections: int, frames: int,
                      garbage_connections: int, seed: int = 15) -> dict[str, Any]:
    """An enrolled member (the rogue certificate) opens TLS links to B's overlay port and sends
    fuzzed RFC 6940 frames; plus garbage before any TLS handshake."""
    x = anet.listener(f"{anet.b}.overlay")
    rng = random.Random(seed)
    ctx = anet.overlay_client_ctx()
    sources = _sources()
    gen = reload_frames(rng)
    tally: Counter[str] = Counter()
    sent = 0

    async def link(i: int) -> None:
        nonlocal sent
        try:
            async with asyncio.timeout(20.0):
                reader, writer = await asyncio.open_connection(
                    x.host, x.port, ssl=ctx, local_addr=(sources[i % len(sources)], 0),
                    server_hostname="")
                try:
                    for _ in range(frames):
                        writer.write(next(gen))
                        sent += 1
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(65536), 0.5)
                    tally["links"] += 1
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            tally[type(exc).__name__] += 1

    async def raw(i: int) -> None:
        try:
            async with asyncio.timeout(5.0):
                _, writer = await asyncio.open_connection(
                    x.host, x.port, local_addr=(sources[i % len(sources)], 0))
                writer.write(tls_garbage(rng))
                await writer.drain()
                writer.close()
        except (OSError, TimeoutError):
            tally["raw_failed"] += 1

    async def attack() -> None:
        for i in range(0, connections, 8):
            await asyncio.gather(*(link(j) for j in range(i, min(connections, i + 8))))
        await asyncio.gather(*(raw(i) for i in range(garbage_connections)))

    await asyncio.gather(during(), attack())
    return {"inputs": {f"{x.name}:{x.port}": sent + garbage_connections},
            "reload_fuzz": dict(tally)}


# ---------------------------------------------------------------------- PVP


async def pvp_brute_force(anet: AttackNet, during: During, *, attempts: int,
                          parallel: int = 8, garbage: int = 0) -> dict[str, Any]:
    """TLS-SRP logins with wrong passwords against B's PVP server from the attack sources
    (calls that never happened and guessed times of B's real numbers), and garbage."""
    x = anet.listener(f"{anet.b}.pvp")
    rng = random.Random(16)
    caller = anet.lay.spec(anet.a).phone_number
    callee = anet.lay.b_number
    quantum = 10.0
    sources = _sources()
    outcomes: Counter[str] = Counter()
    sem = asyncio.Semaphore(parallel)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        async with sem:
            start = time.time() - rng.uniform(60, 3600)
            creds = client_credentials(caller, callee, start, start + rng.uniform(1, 300),
                                       quantum)
            try:
                async with asyncio.timeout(15.0):
                    _, conn = await loop.create_connection(
                        lambda: SrpConnection(lifetime=15.0), x.host, x.port,
                        local_addr=(sources[i % len(sources)], 0))
                try:
                    await conn.handshake_client(creds.username, creds.password)
                    outcomes["accepted"] += 1            # a guessed password worked
                finally:
                    conn.abort()
            except SrpError as e:
                outcomes[e.kind] += 1
            except (OSError, TimeoutError) as e:
                outcomes[type(e).__name__] += 1

    async def junk(i: int) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5.0):
                reader, writer = await asyncio.open_connection(
                    x.host, x.port, local_addr=(sources[i % len(sources)], 0))
                writer.write(tls_garbage(rng))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(4096), 1.0)
                writer.close()

    async def attack() -> None:
        await asyncio.gather(*(one(i) for i in range(attempts)),
                             *(junk(i) for i in range(garbage)))

    await asyncio.gather(during(), attack())
    return {"inputs": {f"{x.name}:{x.port}": attempts + garbage},
            "brute_force": dict(outcomes), "false_accepts": outcomes["accepted"]}


# ---------------------------------------------------------------------- kill -9


async def kill_roles(anet: AttackNet, during: During, *, proxy_kills: int,
                     calls_per_kill: int = 3, hold: float = 2.0,
                     roles: tuple[str, ...] = ("overlay", "pvp", "proxy")) -> dict[str, Any]:
    """kill -9 of B's overlay and pvp (once each) and proxy (`proxy_kills` times) while calls
    to B are up; every answered call must have a VCR on B (defect 6)."""
    b = anet.b
    restart_s: dict[str, list[float]] = {}
    answered: list[str] = []
    outcomes: Counter[str] = Counter()
    since = time.time() - 1.0

    async def load_and_kill(name: str) -> None:
        numbers = [anet.fresh_number() for _ in range(calls_per_kill)]
        phone_b = anet.net.phones[b]
        rings0 = len(phone_b.rings)
        calls = [asyncio.ensure_future(anet.call(n, hold=hold, timeout=15.0)) for n in numbers]
        with contextlib.suppress(TimeoutError):      # kill once the calls are up
            async with asyncio.timeout(8.0):
                while len(phone_b.rings) - rings0 < len(numbers):
                    await asyncio.sleep(0.05)
        await anet.kill9(name)
        restart_s.setdefault(name, []).append(round(await anet.revive(name), 2))
        for n, r in zip(numbers, await asyncio.gather(*calls, return_exceptions=True),
                        strict=True):
            if isinstance(r, BaseException):
                outcomes["error"] += 1
                continue
            outcomes[f"{r.status}"] += 1
            if r.status == 200:
                answered.append(n)

    kills = [f"{r}-{b}" for r in roles if r != "proxy"]
    kills += [f"proxy-{b}"] * (proxy_kills if "proxy" in roles else 0)
    for name in kills:
        await load_and_kill(name)
    await during()

    missing = list(answered)          # a restarted proxy may close its records a bit later
    deadline = time.monotonic() + 10.0
    while missing and time.monotonic() < deadline:
        missing = [n for n in missing if not await anet.net.vcrs(b, n, since)]
        if missing:
            await asyncio.sleep(0.5)
    return {"inputs": {f"kill-9:{b}": len(kills)}, "kills": len(kills),
            "restart_s": restart_s, "calls": dict(outcomes), "answered_calls": len(answered),
            "vcr_missing": len(missing)}
