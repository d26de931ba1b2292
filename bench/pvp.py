"""PVP benchmark: full validations/s against bare tlslite-ng SRP handshakes/s, and loop stalls.

  python bench/pvp.py [--quick] [--no-gmpy2]

In one process and one event loop, over loopback TCP, interleaved in rounds:

  bare   tlslite-ng's SRP handshake only (client + server generators over an in-memory socket,
         the handshake generators driven by hand), verifier precomputed: the library's own
         cost.
  full   a whole PVP validation (profile v2): the outer TLS 1.3 channel with overlay node
         certificates (RSA-2048, resumed with the server's ticket after the first contact,
         as a provider validating against the same peer again does), then our client
         (TLS-SRP, `validate`, `valinfo`) against our server (login parsing, VCR lookup in
         SQLite, verifier computation, handshake, domain check, ticket minted with the current
         key, validation log) and the client storing the route and logging
         (`PvpClient.validate_at` + the learn step).

Both with 4 in flight (a server's throughput, not one client's latency); rates are medians
over rounds, ratio = median of per-round full / bare, where a round runs bare, full, bare
and takes the mean of its two bare rates (a machine whose load drifts during the round
shifts both sides alike). `full` starts each phase from 4 kept channels, made untimed (the
steady state of a provider validating against the same peer again); the offload flag is
set before the channels are made (a kept channel keeps the mode it was made in).
CPU time per operation (process time, all threads) is also reported: it moves much less with
the machine's load than the rates. Both use the same crypto backends (gmpy2
or not; record-layer AES from `cryptography` via vipr.pvp.aes).
A diagnostic rate "first contact" repeats `full` with the client's TLS session cache emptied
before each validation: a full TLS 1.3 handshake with two RSA-2048 signatures every time.
A diagnostic rate "no writes", repeats `full` with the store's writes (route + VCR
mark, validation log) replaced by no-ops, to show what SQLite costs a validation.
Then the event-loop stall: the longest gap seen by a 1 ms ticker while 20 validations run at
once, with the big-number work on the loop (offload off) and in worker threads (offload on),
and on the loop for 20 first contacts (full outer handshakes).
Without `--no-gmpy2` a child process repeats the rate measurement with gmpy2 hidden.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if "--no-gmpy2" in sys.argv:
    sys.modules["gmpy2"] = None  # type: ignore[assignment]  # tlslite falls back to pure Python

from tlslite import HandshakeSettings, TLSConnection, VerifierDB
from tlslite.utils import cryptomath

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "pvp"))
sys.path.insert(0, str(REPO))

from pvp_harness import CALLER, cleanup, provider, short_dir, vcr  # noqa: E402

from vipr.daemon import tune_gc  # noqa: E402
from vipr.pvp.client import Claim  # noqa: E402
from vipr.pvp.credentials import client_credentials  # noqa: E402
from vipr.pvp.daemon import WORKERS  # noqa: E402
from vipr.pvp.srp import client_settings, gmpy2_release_gil, server_settings  # noqa: E402

USER, PASSWORD = "pvp1;+14085550100;+4930123456;1;0.000;0.000", "1;2"
Q = 10.0
CONCURRENCY = 4  # validations (or handshakes) in flight: a server's steady state, not latency


# ---------------------------------------------------------------- bare tlslite (baseline)


class _Bio:
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.inbuf = bytearray()
        self.eof = False
        self.event = asyncio.Event()

    def recv(self, n: int) -> bytes:
        if not self.inbuf:
            if self.eof:
                return b""
            raise BlockingIOError(errno.EWOULDBLOCK, "would block")
        d = bytes(self.inbuf[:n])
        del self.inbuf[:n]
        return d

    def send(self, data: bytes) -> int:
        self.transport.write(bytes(data))
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.transport.write(bytes(data))

    def close(self) -> None:
        self.transport.close()

    def shutdown(self, how: int) -> None:
        pass

    def getpeername(self) -> Any:
        return self.transport.get_extra_info("peername")

    def getsockname(self) -> Any:
        return self.transport.get_extra_info("sockname")

    def settimeout(self, v: object) -> None:
        pass

    def gettimeout(self) -> None:
        return None


class _Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.bio: _Bio | None = None
        self.made = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.bio = _Bio(transport)  # type: ignore[arg-type]
        self.made.set()

    def data_received(self, data: bytes) -> None:
        assert self.bio is not None
        self.bio.inbuf += data
        self.bio.event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.bio is not None:
            self.bio.eof = True
            self.bio.event.set()


async def _drive(bio: _Bio, gen: Any) -> None:
    for r in gen:
        if r == 0:
            bio.event.clear()
            if not bio.inbuf and not bio.eof:
                await bio.event.wait()
        elif r == 1:
            await asyncio.sleep(0)


async def bare_rate(n: int, conc: int) -> float:
    loop = asyncio.get_running_loop()
    db = VerifierDB()
    db.create()
    db[USER.encode()] = VerifierDB.makeVerifier(USER, PASSWORD, 2048)
    done: list[asyncio.Task[None]] = []

    async def serve(p: _Proto) -> None:
        await p.made.wait()
        assert p.bio is not None
        await _drive(p.bio, TLSConnection(p.bio).handshakeServerAsync(
            verifierDB=db, settings=server_settings()))
        p.bio.close()

    def factory() -> _Proto:
        p = _Proto()
        done.append(loop.create_task(serve(p)))
        return p

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]

    async def worker(k: int) -> None:
        for _ in range(k):
            _, p = await loop.create_connection(_Proto, "127.0.0.1", port)
            assert p.bio is not None
            settings: HandshakeSettings = client_settings()
            await _drive(p.bio, TLSConnection(p.bio).handshakeClientSRP(
                USER, PASSWORD, settings=settings, async_=True))
            p.bio.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
    elapsed = time.perf_counter() - t0
    n = n // conc * conc
    await asyncio.gather(*done)
    srv.close()
    return n / elapsed


# ---------------------------------------------------------------- full PVP validations


async def _noop(*args: object, **kw: object) -> int:
    return 0


class Full:
    """Provider A (client) and B (server) with `size` matching VCR pairs to validate."""

    def __init__(self, base: Path, size: int) -> None:
        self.base = base
        self.size = size
        self.next = 0
        self.resume = True  # False: every validation is a first contact (full outer handshake)
        self.cpu_ms = 0.0  # process time per validation in the last `rate`, all threads

    async def __aenter__(self) -> Full:
        self._a = provider(self.base, "a", "a" * 32, proxy=False)
        # 20 validations at once from 127.0.0.1 in the stall test: above the per-address cap
        self._b = provider(self.base, "b", "b" * 32, proxy=False,
                           pvp={"limits": "{max_connections_per_address: 256}"})
        self.a = await self._a.__aenter__()
        self.b = await self._b.__aenter__()
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-srp",
                                           initializer=gmpy2_release_gil)
        now = time.time()
        self.vcrs = []
        for i in range(self.size):
            callee = f"+4930{i:07d}"
            start = now - 3600 + i * 0.01
            await self.b.store.add_vcr(vcr("terminating", callee=callee, start=start,
                                           call_id=f"c{i}"))
            oid = await self.a.store.add_vcr(vcr("originating", callee=callee, start=start,
                                                 call_id=f"c{i}"))
            v = await self.a.store.get_vcr(oid or 0)
            assert v is not None
            self.vcrs.append(v)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._b.__aexit__(None, None, None)
        await self._a.__aexit__(None, None, None)
        self.executor.shutdown()

    def store_writes(self, on: bool) -> None:
        """Diagnostic: with `on=False` the route/VCR write and the validation log are no-ops
        (reads stay), to show what the SQLite writes cost a validation."""
        for st in (self.a.store, self.b.store):
            for name in ("learn_route", "log_validations"):
                if on:
                    st.__dict__.pop(name, None)
                else:
                    setattr(st, name, _noop)

    def offload(self, on: bool) -> None:
        """Big-number steps in worker threads: the pool `vipr pvp` uses (WORKERS threads).
        A connection takes the flag when it is made, so the kept outer channels are closed:
        a channel made in the other mode would otherwise carry it into this measurement."""
        for side in (self.a.client, self.b.server):
            side.offload = on
            side.executor = self.executor
        self.a.client.drop_idle()

    async def one(self) -> None:
        v = self.vcrs[self.next % self.size]
        self.next += 1
        creds = client_credentials(CALLER, v.callee, v.start, v.stop, Q)
        host, port = self.b.server.address
        if not self.resume and self.a.tls is not None:
            self.a.client.drop_idle()
            self.a.tls.forget((host, port, self.b.node))
        info = await self.a.client.validate_at(host, port, creds, self.b.node)
        await self.a.client._learned(v, Claim("b" * 32, "0" * 16, "b" * 32), info,
                                     f"{host}:{port}")

    async def rate(self, n: int, conc: int) -> float:
        async def worker(k: int) -> None:
            for _ in range(k):
                await self.one()

        if self.resume:
            # Steady state, as a provider validating against the same peer again and again:
            # `conc` kept channels, made untimed. Without this a phase of 20 validations made
            # its 4 channels (resumed outer handshakes) inside the timing, and how many it had
            # to make depended on what the phase before had left (first contact: none kept).
            # First contacts are measured on their own (`resume = False`).
            await asyncio.gather(*(self.one() for _ in range(conc)))
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
        elapsed = time.perf_counter() - t0
        self.cpu_ms = (time.process_time() - c0) * 1000 / (n // conc * conc)
        return n // conc * conc / elapsed

    async def stall(self, concurrent: int) -> float:
        """Longest event-loop stall (ms) seen by a 1 ms ticker during `concurrent` validations."""
        worst = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                worst = max(worst, now - last - 0.001)
                last = now

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        await asyncio.gather(*(self.one() for _ in range(concurrent)))
        stop.set()
        await t
        return worst * 1000


async def measure(quick: bool, stall: bool) -> dict[str, Any]:
    rounds, per = (5, 20) if quick else (9, 60)
    base = short_dir()
    try:
        async with Full(base, 400) as full:
            full.b.server.limiter.limit = 10**9
            full.offload(False)  # the harness makes both sides with offload on
            await full.rate(3, 1)  # warm-up (imports, first ticket key)
            await bare_rate(3, 1)
            tune_gc()  # as `vipr pvp` does once started (both sides, bare and full alike)
            bare, fulls, fulls_off, nowrite, ratios, first = [], [], [], [], [], []
            cpu_bare: list[float] = []
            cpu_full: list[float] = []
            for _ in range(rounds):
                c0 = time.process_time()
                b = await bare_rate(per, CONCURRENCY)
                c1 = time.process_time()
                full.offload(False)
                f = await full.rate(per, CONCURRENCY)
                cpu_full.append(full.cpu_ms)  # the timed part only, not the warm-up
                c2 = time.process_time()
                b2 = await bare_rate(per, CONCURRENCY)  # bare, full, bare: a drift cancels
                c3 = time.process_time()
                cpu_bare.append((c1 - c0 + c3 - c2) * 500 / (per // CONCURRENCY * CONCURRENCY))
                full.offload(True)
                fo = await full.rate(per, CONCURRENCY)
                full.offload(False)
                full.store_writes(False)
                nowrite.append(await full.rate(per, CONCURRENCY))
                full.store_writes(True)
                full.resume = False
                first.append(await full.rate(per, CONCURRENCY))
                full.resume = True
                b = (b + b2) / 2
                bare.append(b)
                fulls.append(f)
                fulls_off.append(fo)
                ratios.append(f / b)
            out: dict[str, Any] = {
                "gmpy2": bool(cryptomath.GMPY2_LOADED),
                "bare_handshakes_per_s": round(statistics.median(bare), 1),
                "full_validations_per_s": round(statistics.median(fulls), 1),
                "full_validations_per_s_offload": round(statistics.median(fulls_off), 1),
                "ratio": round(statistics.median(ratios), 3),
                "full_no_store_writes_per_s": round(statistics.median(nowrite), 1),
                "first_contact_per_s": round(statistics.median(first), 1),
                "ratio_first_contact": round(statistics.median(
                    [f / b for f, b in zip(first, bare, strict=True)]), 3),
                "cpu_ms_per_handshake": round(statistics.median(cpu_bare), 2),
                "cpu_ms_per_validation": round(statistics.median(cpu_full), 2),
                "cpu_ratio": round(statistics.median(cpu_bare) / statistics.median(cpu_full), 3),
                "ratio_no_store_writes": round(statistics.median(
                    [w / b for w, b in zip(nowrite, bare, strict=True)]), 3),
            }
            if stall:
                reps = 3 if quick else 5
                for on in (False, True):
                    full.offload(on)
                    worst = [await full.stall(20) for _ in range(reps)]
                    key = "stall_ms_offload" if on else "stall_ms_on_loop"
                    out[key] = round(statistics.median(worst), 1)
                    out[key + "_max"] = round(max(worst), 1)
                full.offload(False)
                full.resume = False
                worst = [await full.stall(20) for _ in range(reps)]
                full.resume = True
                out["stall_ms_first_contact"] = round(statistics.median(worst), 1)
                out["stall_ms_first_contact_max"] = round(max(worst), 1)
            return out
    finally:
        cleanup(base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (CI)")
    ap.add_argument("--no-gmpy2", action="store_true", help="pure-Python big numbers")
    args = ap.parse_args()
    res = asyncio.run(measure(args.quick, stall=True))
    if args.no_gmpy2:
        print(json.dumps(res))
        return
    cmd = [sys.executable, __file__, "--no-gmpy2"] + (["--quick"] if args.quick else [])
    child = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    pure = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"{'backend':<10} {'bare hs/s':>10} {'full val/s':>11} {'(offload)':>10} {'ratio':>6}"
          f" {'no writes':>10} {'ratio':>6}")
    for r in (res, pure):
        name = "gmpy2" if r["gmpy2"] else "pure"
        print(f"{name:<10} {r['bare_handshakes_per_s']:>10} {r['full_validations_per_s']:>11}"
              f" {r['full_validations_per_s_offload']:>10} {r['ratio']:>6}"
              f" {r['full_no_store_writes_per_s']:>10} {r['ratio_no_store_writes']:>6}")
    for r in (res, pure):
        name = "gmpy2" if r["gmpy2"] else "pure"
        print(f"CPU ({name}): {r['cpu_ms_per_handshake']} ms per bare handshake,"
              f" {r['cpu_ms_per_validation']} ms per full validation (process time, all threads),"
              f" ratio {r['cpu_ratio']}")
    for r in (res, pure):
        name = "gmpy2" if r["gmpy2"] else "pure"
        print(f"first contact ({name}): {r['first_contact_per_s']} val/s, ratio to bare"
              f" {r['ratio_first_contact']}")
    for r in (res, pure):
        name = "gmpy2" if r["gmpy2"] else "pure"
        print(f"loop stall, 20 concurrent validations ({name}): on loop"
              f" {r['stall_ms_on_loop']} ms (max {r['stall_ms_on_loop_max']}), offloaded"
              f" {r['stall_ms_offload']} ms (max {r['stall_ms_offload_max']}), first contacts"
              f" on loop {r['stall_ms_first_contact']} ms"
              f" (max {r['stall_ms_first_contact_max']})")
    print(json.dumps({
        "bench": "pvp", "quick": args.quick,
        "gmpy2": {k: v for k, v in res.items() if k != "gmpy2"},
        "pure_python": {k: v for k, v in pure.items() if k != "gmpy2"},
    }))


if __name__ == "__main__":
    main()
