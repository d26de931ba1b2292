"""PVP decoy timing: can a client tell a real VCR with a wrong password from an unknown VCR?

  python bench/pvp_timing.py [--quick] [--n N]

DESIGN §5/§10: when the server has no VCR for a login it answers with a decoy verifier, and
the two paths must do the same work, so that timing does not tell whether a call exists.
Over loopback TCP, a PVP server in a child process (the real `PvpServer`, SQLite store, the
validation log; its own process, so that its work after closing a connection cannot delay the
client's clock as it would on a shared event loop) and a client here that makes `n` attempts of
each kind, interleaved in random order within each pair:

  real   a login that matches a terminating VCR, with a wrong password (each real attempt
         uses its own VCR, so none is burned and the real path stays real)
  decoy  a login for a callee the server has no VCR for

Per attempt two times are taken from the moment the client starts connecting: until the
handshake fails at the client (the server's alert arrives) and until the server has closed the
connection (EOF). The second includes everything the server does before closing, so it is the
one compared: medians, and a two-sided Mann-Whitney U test (normal approximation with tie
correction and continuity correction, written here: scipy is not a dependency). p > 0.05 means
the samples give no evidence that the two cases differ. The alert-time test is printed too.
`--plant-us X` (calibration) makes the real path X µs slower on purpose: it shows which
difference a run can detect at the machine's current noise.
Prints a table, then one JSON line: {"n", "median_real_ms", "median_decoy_ms", "p_value",
"ratio" (real/decoy median), ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "pvp"))
sys.path.insert(0, str(REPO))

from pvp_harness import CALLER, cleanup, provider, short_dir, vcr  # noqa: E402

from vipr.daemon import tune_gc  # noqa: E402
from vipr.pvp.credentials import Login, client_credentials  # noqa: E402
from vipr.pvp.server import PvpServer  # noqa: E402
from vipr.pvp.srp import SrpConnection, SrpError  # noqa: E402
from vipr.store import Vcr  # noqa: E402

Q = 10.0


def mann_whitney_u(a: list[float], b: list[float]) -> tuple[float, float]:
    """(U of `a`, two-sided p) by the normal approximation, with the tie correction of the
    variance and a continuity correction of 0.5."""
    n1, n2 = len(a), len(b)
    n = n1 + n2
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * n
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2 + 1  # ranks start at 1
        for k in range(i, j + 1):
            ranks[k] = avg
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    return u1, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


class _Probe(SrpConnection):
    """A client connection that notes when it first and last wrote, when the server's first
    bytes came and when the server's EOF arrived."""

    def __init__(self) -> None:
        super().__init__(lifetime=30)
        self.closed_at: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.first_write = self.last_write = self.first_data = 0.0

    def _flush(self) -> None:
        with self.bio.lock:
            pending = bool(self.bio.outbuf)
        super()._flush()
        if pending:
            self.last_write = time.perf_counter()
            self.first_write = self.first_write or self.last_write

    def data_received(self, data: bytes) -> None:
        self.first_data = self.first_data or time.perf_counter()
        super().data_received(data)

    def _note(self) -> None:
        if not self.closed_at.done():
            self.closed_at.set_result(time.perf_counter())

    def eof_received(self) -> bool | None:
        self._note()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._note()
        super().connection_lost(exc)


METRICS = {
    "close": "connect → server's EOF (the whole attempt)",
    "alert": "connect → the handshake failed at the client",
    "hello": "ClientHello written → first server bytes (lookup, verifier)",
    "finish": "client's last flight written → server's EOF (the failure path)",
}


async def attempt(host: str, port: int, username: str, password: str) -> dict[str, float]:
    """One wrong-password try: the METRICS in ms."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    _, conn = await loop.create_connection(_Probe, host, port)
    try:
        await conn.handshake_client(username, password)
    except SrpError as e:
        if e.kind != "wrong-password":
            raise RuntimeError(f"unexpected failure {e}") from None
    else:
        raise RuntimeError("a wrong password was accepted")
    t_fail = time.perf_counter()
    t_close = await asyncio.wait_for(conn.closed_at, 30)
    conn.abort()
    ms = 1000
    return {"close": (t_close - t0) * ms, "alert": (t_fail - t0) * ms,
            "hello": (conn.first_data - conn.first_write) * ms,
            "finish": (t_close - conn.last_write) * ms}


def credentials(i: int, now: float) -> tuple[tuple[str, str], tuple[str, str]]:
    """Attempt `i`'s (login, password) pairs: the right login of VCR `i` with a wrong password
    (its stop 9 minutes off), and a login for a callee the server has no VCR for."""
    start = now - 3600 + i * 0.01
    callee = f"+4930{i:07d}"
    right = client_credentials(CALLER, callee, start, start + 60, Q)
    wrong = client_credentials(CALLER, callee, start, start + 600, Q).password
    unknown = client_credentials(CALLER, f"+4940{i:07d}", start, start + 60, Q)
    return (right.username, wrong), (unknown.username, unknown.password)


def plant(server: PvpServer, us: float) -> None:
    """Calibration: make the real path `us` µs slower (a busy wait after a VCR was found),
    to see which difference the run can detect at the machine's current noise."""
    find = server._find_vcr

    async def slower(login: Login, now: float) -> Vcr | None:
        v = await find(login, now)
        if v is not None:
            end = time.perf_counter() + us / 1e6
            while time.perf_counter() < end:
                pass
        return v

    server._find_vcr = slower  # type: ignore[method-assign]


async def serve(count: int, now: float, plant_us: float) -> None:
    """The server process: a provider with `count` terminating VCRs; prints its port, serves
    until stdin closes, then prints how many VCRs were burned (must be 0)."""
    base = short_dir()
    try:
        async with provider(base, "b", "b" * 32, proxy=False) as b:
            b.server.limiter.limit = 10**9
            if plant_us:
                plant(b.server, plant_us)
            for i in range(count):
                start = now - 3600 + i * 0.01
                await b.store.add_vcr(vcr("terminating", callee=f"+4930{i:07d}", start=start,
                                          call_id=f"c{i}"))
            tune_gc()  # as `vipr pvp` does once started
            print(json.dumps({"port": b.server.address[1]}), flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)
            await b.server.wait_logged(2 * count, 60)
            print(json.dumps({"burned": b.server.counters.burned,
                              "attempts": b.server.counters.attempts}), flush=True)
    finally:
        cleanup(base)


async def measure(n: int, warmup: int, plant_us: float = 0.0) -> dict[str, Any]:
    count = n + warmup
    now = time.time()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(count), repr(now), "--plant-us", str(plant_us),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        port = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))["port"]
        rng = random.Random(13)
        res: dict[str, list[dict[str, float]]] = {"real": [], "decoy": []}
        for i in range(count):
            real, decoy = credentials(i, now)
            pair = [("real", real), ("decoy", decoy)]
            rng.shuffle(pair)
            for kind, (user, pw) in pair:
                t = await attempt("127.0.0.1", port, user, pw)
                if i >= warmup:
                    res[kind].append(t)
        child.stdin.close()
        done = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.stdin.close()
            await asyncio.wait_for(child.wait(), 30)
    if done["burned"] or done["attempts"] != 2 * count:
        raise RuntimeError(f"server: {done}: the real path did not stay real")
    out: dict[str, Any] = {"n": n}
    for m in METRICS:
        real = [t[m] for t in res["real"]]
        decoy = [t[m] for t in res["decoy"]]
        _, p = mann_whitney_u(real, decoy)
        key = "" if m == "close" else f"_{m}"
        out[f"median_real{key}_ms"] = round(statistics.median(real), 3)
        out[f"median_decoy{key}_ms"] = round(statistics.median(decoy), 3)
        out[f"p_value{key}"] = round(p, 4)
        if m == "close":
            out["ratio"] = round(statistics.median(real) / statistics.median(decoy), 4)
    out["plant_us"] = plant_us
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 100 (CI)")
    ap.add_argument("--n", type=int, default=None, help="attempts of each kind (default 400)")
    ap.add_argument("--plant-us", type=float, default=0.0,
                    help="calibration: make the real path this many µs slower")
    ap.add_argument("--serve", nargs=2, metavar=("COUNT", "NOW"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    # the server logs every failed attempt: keep the records (same work both ways), drop the
    # output (stderr writes would only add noise)
    logging.getLogger("vipr").addHandler(logging.NullHandler())
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), float(args.serve[1]), args.plant_us))
        return
    n = args.n or (100 if args.quick else 400)
    r = asyncio.run(measure(n, warmup=20, plant_us=args.plant_us))
    print(f"{'ms, median of ' + str(n):<28} {'real VCR':>9} {'unknown':>9} {'p (U test)':>11}")
    for m, what in METRICS.items():
        key = "" if m == "close" else f"_{m}"
        print(f"{m:<28} {r[f'median_real{key}_ms']:>9} {r[f'median_decoy{key}_ms']:>9}"
              f" {r[f'p_value{key}']:>11}   {what}")
    print(f"ratio real/decoy (close) {r['ratio']}; attempts interleaved"
          + (f"; planted {args.plant_us:g} µs on the real path" if args.plant_us else ""))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
