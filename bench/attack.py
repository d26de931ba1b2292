"""Attack suite (issue 13): hostile traffic against a running test network, legitimate
traffic beside it.

    python bench/attack.py --quick      # a few minutes on 2 cores; one JSON line last
    python bench/attack.py              # full: 20,000 connections per flood, more inputs

Starts providers A, B, C and the PSTN simulator as real processes on loopback
(vipr/testnet/attack_net.py). Baseline first: legitimate calls and validations with no attack
(A's phone calls a fresh number of B over the PSTN, A's pvp validates it, and a call over the
route learned so). Then each campaign of vipr/testnet/attack.py from 127.0.0.2-9 while the
same legitimate traffic runs from 127.0.0.1: SIP over UDP/TCP/TLS (RFC 4475 corpus,
mutations, oversized, defect-1 datagrams, slowloris), connection floods on every TCP/TLS
listener of B (and C's SIP TCP), RELOAD link fuzz by an enrolled member, PVP brute force and
garbage, kill -9 of B's roles under calls. After each: crashes, listeners alive, a legit call
and validation, RSS per daemon (start-up, peak from VmHWM, after).

Pass: 0 crashes, every listener alive after every campaign, every legit call and validation
during and after succeeded (ratio to the baseline's success rate 1.0), RSS peak < 300 MB in the
floods and back within 20 % of start-up, 0 answered calls without a VCR over the proxy kills.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vipr.testnet.attack import (  # noqa: E402
    CampaignResult,
    connection_flood,
    kill_roles,
    pvp_brute_force,
    reload_fuzz,
    run_campaign,
    sip_datagrams,
    sip_stream,
    slowloris,
)
from vipr.testnet.attack_flood import raise_nofile  # noqa: E402
from vipr.testnet.attack_net import AttackNet  # noqa: E402
from vipr.testnet.attack_squat import squat  # noqa: E402

QUICK = {"mutations": 300, "flood": 4000, "slowloris": 40, "slow_s": 8.0, "fuzz_links": 24,
         "brute": 120, "proxy_kills": 5, "baseline": 3, "numbers": 120}
FULL = {"mutations": 3000, "flood": 20000, "slowloris": 200, "slow_s": 20.0, "fuzz_links": 200,
        "brute": 1000, "proxy_kills": 5, "baseline": 5, "numbers": 200}


def say(text: str) -> None:
    print(text, flush=True)


def _line(r: CampaignResult) -> str:
    d = r.as_dict()
    alive = sum(r.listeners_alive_after.values())
    peak = max(d["peak_rss_mb"].items(), key=lambda kv: kv[1], default=("-", 0))
    return (f"{r.name:28s} inputs {sum(r.inputs.values()):6d}  crashes {len(r.crashes)}  "
            f"listeners {alive}/{len(r.listeners_alive_after)}  "
            f"legit during {d['legit_calls_ok_during']}/{d['legit_during_tried']} calls "
            f"{d['legit_validations_ok_during']} val, after {d['legit_calls_ok_after']}/"
            f"{d['legit_after_tried']}  peak {peak[0]} {peak[1]:.0f} MB  "
            f"{r.seconds:.0f} s")


async def run(p: dict[str, Any], workdir: Path, only: set[str] | None) -> dict[str, Any]:
    t0 = time.monotonic()
    soft, hard = raise_nofile()
    say(f"RLIMIT_NOFILE {soft}/{hard} (bench and daemons); floods use one process per source "
        f"address, so {p['flood']} connections are not capped by one process's limit")
    if p["flood"] > soft - 100:
        say(f"note: a daemon holding {p['flood']} connections needs as many descriptors; its "
            f"limit is {soft}")
    anet = await AttackNet.start(workdir, numbers=p["numbers"])
    say(f"network up in {time.monotonic() - t0:.1f} s: {', '.join(anet.daemons())}")
    say("start-up RSS MB: " + ", ".join(f"{n} {v:.0f}" for n, v in anet.startup_rss.items()))
    b, c = anet.b, anet.c
    results: list[CampaignResult] = []
    baseline = []
    try:
        for _ in range(p["baseline"]):
            baseline.append(await anet.legit())
        base_ok = sum(r.ok for r in baseline) / len(baseline)
        say(f"baseline (no attack): {sum(r.ok for r in baseline)}/{len(baseline)} legit checks "
            f"ok; {[r.detail for r in baseline if not r.ok]}")

        fed = anet.listener(f"{b}.sip_federation_tls")
        tcp = anet.listener(f"{c}.sip_internal_tcp")
        campaigns: list[tuple[str, Any, dict[str, Any]]] = [
            ("sip_udp", lambda d: sip_datagrams(anet, d, mutations=p["mutations"]), {}),
            ("sip_tcp", lambda d: sip_stream(anet, d, tcp, mutations=p["mutations"] // 3), {}),
            ("sip_tls", lambda d: sip_stream(anet, d, fed, mutations=p["mutations"] // 3), {}),
            ("slowloris_tls", lambda d: slowloris(anet, d, fed, connections=p["slowloris"],
                                                  duration=p["slow_s"]), {}),
            ("slowloris_tcp", lambda d: slowloris(anet, d, tcp, connections=p["slowloris"],
                                                  duration=p["slow_s"]), {}),
        ]
        for name in (f"{b}.sip_federation_tls", f"{c}.sip_internal_tcp", f"{b}.overlay",
                     f"{b}.pvp"):
            x = anet.listener(name)
            campaigns.append((f"flood_{name}",
                              lambda d, x=x: connection_flood(anet, d, x, total=p["flood"]),
                              {"rss_settle": 10.0, "rss_judged": (x.daemon,)}))
        campaigns += [
            ("flood_garbage_pvp", lambda d: connection_flood(
                anet, d, anet.listener(f"{b}.pvp"), total=p["flood"] // 4, garbage=True),
             {"rss_settle": 10.0, "rss_judged": (f"pvp-{b}",)}),
            ("reload_fuzz", lambda d: reload_fuzz(anet, d, connections=p["fuzz_links"],
                                                  frames=50, garbage_connections=100), {}),
            ("reload_squat", lambda d: squat(anet, d, entries=31), {}),
            ("pvp_brute_force", lambda d: pvp_brute_force(anet, d, attempts=p["brute"],
                                                          garbage=100), {}),
            ("kill9", lambda d: kill_roles(anet, d, proxy_kills=p["proxy_kills"]), {}),
        ]
        for name, attack, kw in campaigns:
            if only and not any(o in name for o in only):
                continue
            r = await run_campaign(anet, name, attack, **kw)
            results.append(r)
            say(_line(r))
            for prob in r.problems():
                say(f"    ✘ {prob}")
    finally:
        await anet.close()
    during = [x for r in results for x in r.during]
    during_ok = sum(x.ok for x in during) / len(during) if during else 0.0
    campaigns_out = {r.name: r.as_dict() for r in results}
    problems = {r.name: r.problems() for r in results}
    crashes = sum(len(r.crashes) for r in results)
    out = {
        "bench": "attack", "mode": "quick" if p is QUICK else "full",
        "crashes": crashes,
        "pass": crashes == 0 and base_ok == 1.0 and not any(problems.values()),
        "baseline_legit_ok_rate": round(base_ok, 3),
        "during_legit_ok_rate": round(during_ok, 3),
        "legit_ratio_during_vs_baseline": round(during_ok / base_ok, 3) if base_ok else None,
        "vcr_missing": sum(int(r.extra.get("vcr_missing", 0)) for r in results),
        "nofile": [soft, hard], "flood_connections": p["flood"],
        "problems": {k: v for k, v in problems.items() if v},
        "campaigns": campaigns_out, "elapsed_s": round(time.monotonic() - t0, 1),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer inputs, 4,000 per flood")
    ap.add_argument("--only", action="append", help="run campaigns whose name contains this")
    ap.add_argument("--workdir", type=Path, default=None, help="keep configs and logs here")
    args = ap.parse_args()
    p = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="vipr-attack-") as tmp:
        res = asyncio.run(run(p, args.workdir or Path(tmp), set(args.only or []) or None))
    say(f"crashes {res['crashes']}, vcr_missing {res['vcr_missing']}, legit ok rate "
        f"baseline {res['baseline_legit_ok_rate']} during {res['during_legit_ok_rate']}: "
        f"{'PASS' if res['pass'] else 'FAIL'}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
