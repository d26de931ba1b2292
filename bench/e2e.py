"""End to end: how soon after a PSTN call the learned route is usable, and how many second
calls go over VIPR, against the PSTN-only path.

    python bench/e2e.py --quick        # 10 numbers of provider B; prints one JSON line last

Runs the demo network (vipr/testnet: every role of providers A, B, C and the PSTN simulator
as real processes on loopback, demo timers: pvp min_delay 1 s, max_delay 1.5 s). Round 1: A's
phone calls each of N numbers of B once over the PSTN (one after the other, 0.7 s each). For
every call, the time from its end (the 200 to A's BYE) to the route being usable (the number
appears in A's proxy route cache, polled every 20 ms) is recorded. Round 2: A calls every
number again; a call went over VIPR when A got wideband audio and video back (the PSTN only
carries PCMU/PCMA).

Percentiles of the delay are over all N numbers: a number whose route was never usable within
30 s counts as a failure, an infinite delay, so a percentile that falls on one is reported as
`null` (JSON has no infinity) and the table says "never".

Baseline: the PSTN-only path, i.e. the same calls without VIPR. Round 1 is exactly that (no
route is known yet, so every call goes over the PSTN: narrowband share 100 %, wideband +
video share 0 %); the JSON reports it under `baseline_pstn_only` (measured shares and call
set-up times) beside round 2's (`vipr_round2`), and `vipr_share_round2` is the share of calls
that VIPR turned from narrowband into wideband + video (baseline: 0). The delay includes the
random pvp delay (uniform 1–1.5 s: mean 1.25 s), so the protocol's own share is the delay
minus that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vipr.e164 import NumberSet, parse_entry  # noqa: E402
from vipr.ipc import IpcError  # noqa: E402
from vipr.testnet.network import TestNetwork  # noqa: E402
from vipr.testnet.ua import CallResult  # noqa: E402
from vipr.testnet.workdir import default_providers, make_workdir  # noqa: E402

HOLD = 0.7


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _finite(x: float) -> float | None:
    """A delay for the JSON: None for a failure (an infinite delay)."""
    return None if math.isinf(x) else round(x, 3)


def _shares(results: list[CallResult]) -> dict[str, object]:
    """What one round's calls got: narrowband only (the PSTN), or wideband audio + video."""
    n = len(results) or 1
    setup = [r.setup_time for r in results if r.ok and r.setup_time is not None]
    return {
        "calls": len(results),
        "answered": sum(r.ok for r in results),
        "narrowband_share": round(sum(bool(r.ok and r.answer and r.answer.narrowband_only)
                                      for r in results) / n, 3),
        "wideband_video_share": round(sum(bool(r.ok and r.answer and r.answer.wideband
                                               and r.answer.video) for r in results) / n, 3),
        "setup_p50_s": round(statistics.median(setup), 3) if setup else None,
        "setup_max_s": round(max(setup), 3) if setup else None,
    }


async def _cached(net: TestNetwork) -> set[str]:
    try:
        st = await net.ipc("a", "proxy", "status", timeout=5.0)
    except IpcError:
        return set()
    return {str(n) for n in st.get("cached_routes", [])}


async def _claimed_by_b(net: TestNetwork, numbers: list[str], nudge: list[float]) -> bool:
    for n in numbers:
        ans = await net.ipc("a", "overlay", "lookup", {"number": n}, timeout=10.0)
        if not ans.get("claims"):
            if time.monotonic() - nudge[0] > 3.0:   # stored before the ring settled:
                nudge[0] = time.monotonic()        # republish now (see demo step 1)
                nudge[1] += 1
                await net.republish("b", "c")
            return False
    return True


async def run(count: int, workdir: Path | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vipr-e2e-") as tmp:
        layout = await asyncio.to_thread(make_workdir, workdir or Path(tmp),
                                         providers=default_providers(count))
        b = layout.spec("b")
        numbers = [f"+4420712{30000 + i}" for i in range(count)]
        served = NumberSet(parse_entry(e) for e in b.numbers)
        assert all(n in served for n in numbers)
        net = TestNetwork(layout)
        t0 = time.monotonic()
        try:
            await net.start()
            if net.failed:
                raise SystemExit(f"not running: {net.failed}")
            nudge = [time.monotonic(), 0.0]
            await net.wait_for("B's claims", lambda: _claimed_by_b(net, numbers, nudge), 40.0,
                               0.2)
            ready_s = time.monotonic() - t0
            phone = net.phones["a"]
            ended: dict[str, float] = {}
            usable: dict[str, float] = {}
            stop = asyncio.Event()

            async def watch() -> None:
                while not stop.is_set():
                    now = time.monotonic()
                    for n in await _cached(net):
                        if n in ended and n not in usable:
                            usable[n] = now
                    await asyncio.sleep(0.02)

            watcher = asyncio.ensure_future(watch())
            round1: list[CallResult] = []
            for n in numbers:
                r = await phone.call(n, hold=HOLD, timeout=20.0)
                ended[n] = time.monotonic()
                round1.append(r)
            round1_ok = sum(bool(r.ok and r.answer and r.answer.narrowband_only)
                            for r in round1)
            deadline = time.monotonic() + 30.0
            while len(usable) < len(numbers) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await watcher
            # every number counts: one never usable is a failure, an infinite delay
            delays = [usable[n] - ended[n] if n in usable else math.inf for n in numbers]
            round2: list[CallResult] = []
            for n in numbers:
                round2.append(await phone.call(n, hold=0.2, timeout=20.0))
            elapsed = time.monotonic() - t0
        finally:
            await net.stop()
    baseline, vipr = _shares(round1), _shares(round2)
    return {
        "bench": "e2e", "numbers": count, "round1_pstn_ok": round1_ok,
        "routes_usable": sum(not math.isinf(d) for d in delays),
        "routes_never_usable": sum(math.isinf(d) for d in delays),
        "route_usable_p50_s": _finite(_pct(delays, 0.5)),
        "route_usable_p90_s": _finite(_pct(delays, 0.9)),
        "route_usable_max_s": _finite(max(delays)),
        "baseline": "pstn_only",
        "baseline_pstn_only": baseline,
        "vipr_round2": vipr,
        "vipr_share_round2": vipr["wideband_video_share"],
        "pvp_delay_s": [1.0, 1.5], "network_ready_s": round(ready_s, 1),
        "republish_nudges": int(nudge[1]), "elapsed_s": round(elapsed, 1),
    }


def _s(x: object) -> str:
    return "never" if x is None else f"{x} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 numbers (default 30)")
    ap.add_argument("--numbers", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="keep configs and logs here")
    args = ap.parse_args()
    count = args.numbers or (10 if args.quick else 30)
    res = asyncio.run(run(count, args.workdir))
    base, vipr = res["baseline_pstn_only"], res["vipr_round2"]
    assert isinstance(base, dict) and isinstance(vipr, dict)
    print(f"{'path':<28} {'calls':>5} {'narrowband':>10} {'wideband+video':>14} {'setup p50':>9}")
    for name, r in (("baseline: PSTN only (rnd 1)", base), ("VIPR (round 2)", vipr)):
        print(f"{name:<28} {r['calls']:>5} {r['narrowband_share']:>10.0%}"
              f" {r['wideband_video_share']:>14.0%} {_s(r['setup_p50_s']):>9}")
    print(f"route usable after the call ended (all {count} numbers, never = failure): "
          f"p50 {_s(res['route_usable_p50_s'])}, p90 {_s(res['route_usable_p90_s'])}, "
          f"max {_s(res['route_usable_max_s'])} ({res['routes_usable']}/{count} learned; "
          f"pvp delay uniform 1–1.5 s)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
