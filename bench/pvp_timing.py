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
from vipr.pvp.credentials import client_credentials  # noqa: E402
from vipr.pvp.srp import SrpConnection, SrpError  # noqa: E402

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
    """A client connection that notes when the server's EOF arrives."""

    def __init__(self) -> None:
        super().__init__(lifetime=30)
        self.closed_at: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def _note(self) -> None:
        if not self.closed_at.done():
            self.closed_at.set_result(time.perf_counter())

    def eof_received(self) -> bool | None:
        self._note()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._note()
        super().connection_lost(exc)


async def attempt(host: str, port: int, username: str, password: str) -> tuple[float, float]:
    """(ms until the handshake failed, ms until the server closed) for one wrong-password try."""
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
    return (t_fail - t0) * 1000, (t_close - t0) * 1000


def credentials(i: int, now: float) -> tuple[tuple[str, str], tuple[str, str]]:
    """Attempt `i`'s (login, password) pairs: the right login of VCR `i` with a wrong password
    (its stop 9 minutes off), and a login for a callee the server has no VCR for."""
    start = now - 3600 + i * 0.01
    callee = f"+4930{i:07d}"
    right = client_credentials(CALLER, callee, start, start + 60, Q)
    wrong = client_credentials(CALLER, callee, start, start + 600, Q).password
    unknown = client_credentials(CALLER, f"+4940{i:07d}", start, start + 60, Q)
    return (right.username, wrong), (unknown.username, unknown.password)


async def serve(count: int, now: float) -> None:
    """The server process: a provider with `count` terminating VCRs; prints its port, serves
    until stdin closes, then prints how many VCRs were burned (must be 0)."""
    base = short_dir()
    try:
        async with provider(base, "b", "b" * 32, proxy=False) as b:
            b.server.limiter.limit = 10**9
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


async def measure(n: int, warmup: int) -> dict[str, Any]:
    count = n + warmup
    now = time.time()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(count), repr(now),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        port = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))["port"]
        rng = random.Random(13)
        res: dict[str, list[tuple[float, float]]] = {"real": [], "decoy": []}
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
    close_r = [c for _, c in res["real"]]
    close_d = [c for _, c in res["decoy"]]
    fail_r = [f for f, _ in res["real"]]
    fail_d = [f for f, _ in res["decoy"]]
    _, p_close = mann_whitney_u(close_r, close_d)
    _, p_fail = mann_whitney_u(fail_r, fail_d)
    med_r, med_d = statistics.median(close_r), statistics.median(close_d)
    return {
        "n": n,
        "median_real_ms": round(med_r, 3),
        "median_decoy_ms": round(med_d, 3),
        "p_value": round(p_close, 4),
        "ratio": round(med_r / med_d, 4),
        "median_real_alert_ms": round(statistics.median(fail_r), 3),
        "median_decoy_alert_ms": round(statistics.median(fail_d), 3),
        "p_value_alert": round(p_fail, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 100 (CI)")
    ap.add_argument("--n", type=int, default=None, help="attempts of each kind (default 400)")
    ap.add_argument("--serve", nargs=2, metavar=("COUNT", "NOW"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    # the server logs every failed attempt: keep the records (same work both ways), drop the
    # output (stderr writes would only add noise)
    logging.getLogger("vipr").addHandler(logging.NullHandler())
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), float(args.serve[1])))
        return
    n = args.n or (100 if args.quick else 400)
    r = asyncio.run(measure(n, warmup=20))
    print(f"{'':<22} {'real VCR':>10} {'unknown':>10} {'p (Mann-Whitney)':>17}")
    print(f"{'until server closed':<22} {r['median_real_ms']:>10} {r['median_decoy_ms']:>10}"
          f" {r['p_value']:>17}")
    print(f"{'until alert':<22} {r['median_real_alert_ms']:>10} {r['median_decoy_alert_ms']:>10}"
          f" {r['p_value_alert']:>17}")
    print(f"medians in ms, n = {n} of each, interleaved; ratio real/decoy {r['ratio']}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
