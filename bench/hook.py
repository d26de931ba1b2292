"""The VIPR hook on Kamailio edges (DESIGN §11): call rate with and without the hook.

Paths measured in one run, each through the same two Kamailio configs and by the same method:
call rates held for `hold` seconds each (4 s with --quick), first a coarse ladder up to the
first rate with a failed call, then bisection between the last passing and the first failing
rate down to --resolution (5 %); the figure is the highest rate with 0 failed calls.
  hook        SIPp UAC → Kamailio A (deploy/kamailio/vipr-originating.cfg: POST /v1/route to
              A's vipr proxy, which answers with a learned route and its ticket) → TLS with the
              VIPR-Ticket header → Kamailio B (vipr-terminating.cfg: POST /v1/admit to B's vipr
              proxy, which checks the ticket) → SIPp UAS as B's phone; at the 200 OK Kamailio A
              reports the outcome (POST /v1/route/result). Three hook requests per call, on the
              originating (route) and the terminating (admit) side; no token (the kits'
              http_connect, kept-alive connections).
  hook_token  the same with proxy.interfaces.hook.token set on both proxies and the token as
              the Basic credentials in both kits' HOOK_CON (the same kept-alive connections).
  baseline    the same two Kamailio configs with -A WITHOUT_VIPR (no hook call; A relays to
              B's TLS listener without a ticket, B admits every TLS call) → SIPp UAS
Then each hook alone: POST /v1/route (A) and POST /v1/admit (B) from 16 concurrent aiohttp
clients for --hold seconds: requests/s and the vipr proxy's CPU per request.
Prints one JSON line last: ratio = hook_cps / baseline_cps (target ≥ 0.8),
ratio_token = hook_token_cps / baseline_cps.

    python bench/hook.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import proxy as pb  # noqa: E402

from tests.deploy.kamailio_helpers import (  # noqa: E402
    process_tree,
    start_kamailio,
    stop_kamailio,
    tls_cfg,
)
from tests.proxy.proxy_helpers import add_route, make_pki, mint_for  # noqa: E402

CALLER = "+14085551234"   # A's phone
CALLEE = "+442071234567"  # B's number: A has a learned route to it with B's ticket
TOKEN = "bench-hook-token-5d1f"   # proxy.interfaces.hook.token of the hook_token path


def uac_rr_xml() -> str:
    """SIPp's built-in uac with ACK/BYE sent along the Record-Route (the kit routes in-dialog
    requests by Route header, as a real edge does)."""
    # `sipp -sd` prints the scenario and exits 99
    xml = subprocess.run(["sipp", "-sd", "uac"], capture_output=True, text=True).stdout
    if "<scenario" not in xml:
        raise RuntimeError("sipp -sd uac printed no scenario")
    xml = xml.replace('<recv response="200" rtd="true">',
                      '<recv response="200" rtd="true" rrs="true">')
    for m in ("ACK", "BYE"):
        xml = xml.replace(f"{m} sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
                          f"{m} [next_url] SIP/2.0\n      [routes]")
    return xml.replace('<recv response="100"', '<recv response="100" optional="true"')


async def step(target: int, rate: int, hold: float, cwd: Path) -> dict[str, Any]:
    calls = int(rate * hold)
    stat = cwd / f"uac_{target}_{rate}.csv"
    stat.unlink(missing_ok=True)
    cmd = ["sipp", "-sf", str(cwd / "uac_rr.xml"), "-i", "127.0.0.1", "-p", str(pb.free_port()),
           "-mp", str(pb.free_port()), "-cp", str(pb.free_port()), "-s", CALLEE,
           "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 4, 100)), "-d", "0",
           "-recv_timeout", "5000", "-nostdin", "-timeout", f"{int(hold * 2 + 20)}s",
           "-timeout_error", "-trace_stat", "-stf", str(stat), "-fd", "1",
           f"127.0.0.1:{target}"]
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL,
                                                cwd=str(cwd))
    await proc.wait()
    took = time.monotonic() - t0
    failed, ok_calls = pb._sipp_totals(stat)
    return {"rate": rate, "calls": calls, "successful": ok_calls, "failed": failed,
            "seconds": round(took, 2),
            "ok": proc.returncode == 0 and failed == 0 and ok_calls == calls
            and took <= hold * 1.1 + 0.5}


async def ladder(target: int, rates: list[int], hold: float, cwd: Path, label: str, *,
                 resolution: float, procs: list[Any], before: pb.Hook | None,
                 settle: float = 0.0) -> tuple[int, list[dict[str, Any]]]:
    """The highest call rate with 0 failed calls, the same method for every path: the coarse
    `rates` up to the first failing one (`pb.ramp`: a failed step is tried once more), then
    bisection between the last passing and the first failing rate until they are within
    `resolution` (a fraction of the failing rate) of each other. With `settle`, a step
    after a failed one starts that many seconds later."""
    last_ok = True

    async def settled() -> None:
        # after a failed step, let its late transactions end (fr timers, failure reports)
        # before the next step; the same for every path
        if not last_ok and settle > 0:
            await asyncio.sleep(settle)
        if before is not None:
            await before()

    async def step_(target: int, rate: int, hold: float, cwd: Path) -> dict[str, Any]:
        nonlocal last_ok
        res = await step(target, rate, hold, cwd)
        last_ok = bool(res["ok"])
        return res

    lo, steps = await pb.ramp(target, rates, hold, cwd, label, procs=procs, step=step_,
                              before=settled)
    if lo == rates[-1]:
        return lo, steps            # the ceiling passed: nothing above it was tried
    hi = next(r for r in rates if r > lo)
    while hi - lo > max(1, int(hi * resolution)):
        mid = (lo + hi) // 2
        got, more = await pb.ramp(target, [mid], hold, cwd, label, procs=procs, step=step_,
                                  before=settled)
        steps += more
        lo, hi = (mid, hi) if got == mid else (lo, mid)
    return lo, steps


def kamailio_pids(main: int) -> list[Any]:
    """The Kamailio main process `main` and its workers, for CPU time."""
    class P:
        def __init__(self, pid: int) -> None:
            self.pid = pid
    return [P(pid) for pid in process_tree(main)]


async def start_edges(tmp: Path, label: str, pki: Any, hooks: tuple[int, int], uas: int, *,
                      baseline: bool, token: str | None,
                      ) -> tuple[list[asyncio.subprocess.Process], int, int]:
    """Kamailio B (terminating) then A (originating); returns both, A's UDP port and B's
    TLS port."""
    ka, kb = pb.free_port(), pb.free_port()
    ka_tls, kb_tls = pb.free_port(socket.SOCK_STREAM), pb.free_port(socket.SOCK_STREAM)
    without = ["WITHOUT_VIPR"] if baseline else []
    cred = f"vipr:{token}@" if token is not None else ""   # Basic credentials (DESIGN §11)
    d = tmp / label
    d.mkdir(parents=True, exist_ok=True)
    # the hook calls block a worker: B's admissions run in its TLS workers
    opts: dict[str, Any] = {"shm_mb": 64, "pkg_mb": 8, "children": 4, "tcp_children": 4}
    b = await start_kamailio(d / "kb", "vipr-terminating.cfg", [
        f"LISTEN=udp:127.0.0.1:{kb}", f"TLS_LISTEN=tls:127.0.0.1:{kb_tls}",
        f'TLS_CFG="{tls_cfg(d, pki, "b.example.net")}"',
        f'HOOK_CON="vipr=>http://{cred}127.0.0.1:{hooks[1]}"', f'INTERNAL="sip:127.0.0.1:{uas}"',
        *without], **opts)
    try:
        a = await start_kamailio(d / "ka", "vipr-originating.cfg", [
            f"LISTEN=udp:127.0.0.1:{ka}", f"TLS_LISTEN=tls:127.0.0.1:{ka_tls}",
            f'TLS_CFG="{tls_cfg(d, pki, "a.example.net")}"',
            f'HOOK_CON="vipr=>http://{cred}127.0.0.1:{hooks[0]}"',
            # the baseline's (and the hook's fallback) next hop: B's TLS listener
            f'PSTN="sip:127.0.0.1:{kb_tls};transport=tls"', *without], **opts)
    except BaseException:
        await stop_kamailio(b)
        raise
    return [b, a], ka, kb_tls


async def hook_alone(port: int, vipr: Any, hold: float, path: str,
                     body: dict[str, Any], want: dict[str, Any]) -> tuple[float, float]:
    """requests/s and the proxy's CPU ms per request of POST `path` answering `want`."""
    n = 0
    bad = 0
    stop_at = time.monotonic() + hold

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal n, bad
        while time.monotonic() < stop_at:
            async with s.post(f"http://127.0.0.1:{port}{path}", json=body) as r:
                doc = await r.json()
                if r.status == 200 and all(doc.get(k) == v for k, v in want.items()):
                    n += 1
                else:
                    bad += 1

    cpu0 = pb.cpu_seconds([vipr])
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(worker(s) for _ in range(16)))
    took = time.monotonic() - t0
    if bad:
        raise RuntimeError(f"{path}: {bad} unexpected answers")
    return (round(n / took, 1),
            round((pb.cpu_seconds([vipr]) - cpu0) * 1000 / max(n, 1), 3))


def _provider(tmp: Path, key: str, domain: str, number: str, hook: int) -> Path:
    cfg = pb.provider_yaml(tmp / key, key, domain, number, internal=pb.free_port(),
                           pstn=pb.free_port(), target=pb.free_port(),
                           gateway=pb.free_port(), fed=None, tls=None)
    with cfg.open("a") as f:
        f.write(f'    hook: {{listen: "127.0.0.1:{hook}"}}\n')
    return cfg


def _with_token(cfg: Path, token: str) -> None:
    """proxy.interfaces.hook.token: every hook request must carry it."""
    out = []
    for line in cfg.read_text().splitlines():
        if line.strip().startswith("hook: {listen:"):
            line = line.rstrip()[:-1] + f', token: "{token}"}}'
        out.append(line)
    cfg.write_text("\n".join(out) + "\n")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    hold = 4.0 if args.quick else 20.0
    rates = args.rates or ([50, 100, 200, 300, 400, 600] if args.quick
                           else [25, 50, 100, 150, 200, 300, 400, 600, 800])
    out: dict[str, Any] = {"bench": "hook", "hold_s": hold, "settle_s": args.settle,
                           "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="vipr-bench-hook-"))
    (tmp / "uac_rr.xml").write_text(uac_rr_xml())
    pki = make_pki(tmp / "pki")
    hooks = (pb.free_port(socket.SOCK_STREAM), pb.free_port(socket.SOCK_STREAM))
    cfg_a = _provider(tmp, "a", "a.example.net", CALLER, hooks[0])
    cfg_b = _provider(tmp, "b", "b.example.net", CALLEE, hooks[1])
    uas_port = pb.free_port()
    vipr: dict[str, asyncio.subprocess.Process] = {}
    uas: asyncio.subprocess.Process | None = None
    try:
        # B's ticket for A's domain, and A's learned route to B's TLS edge, as PVP leaves them;
        # the route's port is set per Kamailio B below (one per path)
        ticket = await mint_for(cfg_b.parent / "vipr.db", CALLEE, "a.example.net")
        vipr = {"a": await pb.start_proxy(cfg_a, tmp / "vipr-a.log")}
        vipr["b"] = await pb.start_proxy(cfg_b, tmp / "vipr-b.log")
        uas = await pb.sipp_uas(uas_port, tmp)
        for label, baseline, token in (("baseline", True, None), ("hook", False, None),
                                       ("hook_token", False, TOKEN)):
            if token is not None:
                # the hooks now want a bearer token: both proxies restart with it
                for key, cfg in (("a", cfg_a), ("b", cfg_b)):
                    await pb.stop(vipr[key])
                    _with_token(cfg, token)
                    vipr[key] = await pb.start_proxy(cfg, tmp / f"vipr-{key}.log")
            kams, kport, kb_tls = await start_edges(tmp, label, pki, hooks, uas_port,
                                                    baseline=baseline, token=token)

            async def learned(kb_tls: int = kb_tls) -> None:
                # (again) before every step: 3 failed calls in an overloaded step drop the
                # route, as on the SIP path, and the next step must start from it
                await add_route(cfg_a.parent / "vipr.db", CALLEE,
                                f"sip:127.0.0.1:{kb_tls};transport=tls", ticket,
                                "b.example.net")
                await pb.ipc_call(cfg_a.parent / "run" / "proxy.sock", "route_learned",
                                  {"number": CALLEE}, timeout=5)

            try:
                watched = [p for k in kams for p in kamailio_pids(k.pid)]
                if not baseline:
                    watched += [vipr["a"], vipr["b"]]
                out[f"{label}_cps"], out[f"{label}_steps"] = await ladder(
                    kport, rates, hold, tmp, label, resolution=args.resolution,
                    procs=watched, before=None if baseline else learned,
                    settle=args.settle)
                if label == "hook":
                    await learned()
            finally:
                for k in reversed(kams):
                    await stop_kamailio(k)
            if label == "hook":
                st_a = await pb.ipc_call(cfg_a.parent / "run" / "proxy.sock", "status", {},
                                         timeout=5)
                st_b = await pb.ipc_call(cfg_b.parent / "run" / "proxy.sock", "status", {},
                                         timeout=5)
                # proof that the hook path did its work: a route decision and an admission
                # per call
                out["hook_route_decisions"] = st_a["counters"].get(
                    "hook_route_federation_route", 0)
                out["hook_admissions"] = st_b["counters"].get("admission_ok", 0)
                out["route_requests_per_s"], out["route_cpu_ms_per_request"] = await hook_alone(
                    hooks[0], vipr["a"], hold, "/v1/route",
                    {"caller": CALLER, "callee": CALLEE, "call_id": "x"}, {"action": "vipr"})
                out["admit_requests_per_s"], out["admit_cpu_ms_per_request"] = await hook_alone(
                    hooks[1], vipr["b"], hold, "/v1/admit",
                    {"callee": CALLEE, "ticket": ticket, "peer_domains": ["a.example.net"],
                     "call_id": "x"}, {"admit": True})
        st_b = await pb.ipc_call(cfg_b.parent / "run" / "proxy.sock", "status", {}, timeout=5)
        out["hook_token_admissions"] = st_b["counters"].get("admission_ok", 0)
    finally:
        await pb.stop(uas)
        for proc in vipr.values():
            await pb.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    out["rate_ceiling"] = rates[-1]
    base = out["baseline_cps"]
    out["ratio"] = round(out["hook_cps"] / base, 3) if base else None
    out["ratio_token"] = round(out["hook_token_cps"] / base, 3) if base else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short steps, few rates")
    ap.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated call rates to step through")
    ap.add_argument("--resolution", type=float, default=0.05,
                    help="bisect between the last passing and first failing rate until they "
                         "are this fraction apart (default 0.05)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after a failed step before the next (default 0)")
    args = ap.parse_args()
    for tool, pkg in (("sipp", "sip-tester"), ("kamailio", "kamailio")):
        if shutil.which(tool) is None:
            print(f"{tool} not installed (Debian package {pkg})", file=sys.stderr)
            sys.exit(2)
    res = asyncio.run(bench(args))
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_steps")}
                     | {"steps": {k: v for k, v in res.items() if k.endswith("_steps")}}))


if __name__ == "__main__":
    main()
