"""The VIPR hook on a Kamailio edge (DESIGN §11): call rate with and without the hook.

Paths measured in one run (stepwise call rates, each held for --hold seconds; the figure is the
highest rate with 0 failed calls):
  hook      SIPp UAC → Kamailio (deploy/kamailio/vipr-originating.cfg: POST /v1/route for every
            call, /v1/calls at the 200 OK and at the BYE, each a committed VCR change) → SIPp
            UAS as the PSTN gateway
  baseline  the same Kamailio config with -A WITHOUT_VIPR (no hook call) → SIPp UAS
Then the hook alone: POST /v1/route from 16 concurrent aiohttp clients for --hold seconds,
requests/s and the vipr proxy's CPU per request. The admit path needs TLS, which SIPp has no
build for here: it is not in the call-rate figures.
Prints one JSON line last: ratio = hook_cps / baseline_cps (target ≥ 0.8).

    python bench/hook.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy as pb

KIT = Path(__file__).resolve().parents[1] / "deploy" / "kamailio" / "vipr-originating.cfg"
CALLEE = "+4930123456"   # no route: every call goes to the PSTN gateway through the hook


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


def kamailio_pids(cwd: Path) -> list[Any]:
    """Every process of the Kamailio started in `cwd` (its process group), for CPU time."""
    class P:
        def __init__(self, pid: int) -> None:
            self.pid = pid
    pgid = int((cwd / "kamailio.pgid").read_text())
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    out.append(P(int(d.name)))
            except OSError:
                continue
    return out


async def start_kamailio(cwd: Path, port: int, hook: int, pstn: int, *,
                         baseline: bool) -> asyncio.subprocess.Process:
    cwd.mkdir(parents=True, exist_ok=True)
    log = open(cwd / "kamailio.log", "ab")  # noqa: SIM115
    args = ["kamailio", "-f", str(KIT), "-DD", "-E", "-m", "64", "-M", "8", "-n", "4",
            "-Y", str(cwd), "-w", str(cwd), "-A", f"LISTEN=udp:127.0.0.1:{port}",
            "-A", f'HOOK_URL="http://127.0.0.1:{hook}"',
            "-A", f'PSTN="sip:127.0.0.1:{pstn}"', "-A", "debug=1"]
    if baseline:
        args += ["-A", "WITHOUT_VIPR"]
    proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log,
                                                start_new_session=True)
    log.close()
    (cwd / "kamailio.pgid").write_text(str(proc.pid))
    await asyncio.sleep(1.5)
    if proc.returncode is not None:
        raise RuntimeError("kamailio exited: " + (cwd / "kamailio.log").read_text()[-2000:])
    return proc


async def stop_kamailio(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def hook_alone(port: int, vipr: Any, hold: float) -> dict[str, Any]:
    body = {"caller": "+442071230000", "callee": CALLEE, "call_id": "x"}
    n = 0
    stop_at = time.monotonic() + hold

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal n
        while time.monotonic() < stop_at:
            async with s.post(f"http://127.0.0.1:{port}/v1/route", json=body) as r:
                await r.read()
                if r.status == 200:
                    n += 1

    cpu0 = pb.cpu_seconds([vipr])
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(worker(s) for _ in range(16)))
    took = time.monotonic() - t0
    return {"route_requests_per_s": round(n / took, 1),
            "route_cpu_ms_per_request": round((pb.cpu_seconds([vipr]) - cpu0) * 1000
                                              / max(n, 1), 3)}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    hold = 4.0 if args.quick else 20.0
    rates = args.rates or ([50, 100, 200, 300, 400, 600] if args.quick
                           else [25, 50, 100, 150, 200, 300, 400, 600, 800])
    out: dict[str, Any] = {"bench": "hook", "hold_s": hold, "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="vipr-bench-hook-"))
    (tmp / "uac_rr.xml").write_text(uac_rr_xml())
    hook = pb.free_port()
    cfg = pb.provider_yaml(tmp / "a", "a", "a.example.net", "+442071234567",
                           internal=pb.free_port(), pstn=pb.free_port(),
                           target=pb.free_port(), gateway=pb.free_port(), fed=None, tls=None)
    with cfg.open("a") as f:
        f.write(f'    hook: {{listen: "127.0.0.1:{hook}"}}\n')
    vipr = await pb.start_proxy(cfg, tmp / "vipr.log")
    uas_port = pb.free_port()
    uas = await pb.sipp_uas(uas_port, tmp)
    try:
        for label, baseline in (("baseline", True), ("hook", False)):
            kport = pb.free_port()
            kam = await start_kamailio(tmp / label, kport, hook, uas_port, baseline=baseline)
            try:
                procs = [*kamailio_pids(tmp / label), *([] if baseline else [vipr])]
                out[f"{label}_cps"], out[f"{label}_steps"] = await pb.ramp(
                    kport, rates, hold, tmp, label, procs=procs, step=step)
            finally:
                await stop_kamailio(kam)
        st = await pb.ipc_call(cfg.parent / "run" / "proxy.sock", "status", {}, timeout=5)
        # proof that the hook path did its work: one VCR per answered call via the PSTN
        out["hook_vcrs_written"] = st["vcrs"]["written"]
        out["hook_route_decisions"] = sum(v for k, v in st["counters"].items()
                                          if k.startswith("hook_route_"))
        out.update(await hook_alone(hook, vipr, hold))
    finally:
        await pb.stop(uas)
        await pb.stop(vipr)
        shutil.rmtree(tmp, ignore_errors=True)
    out["rate_ceiling"] = rates[-1]
    out["ratio"] = round(out["hook_cps"] / out["baseline_cps"], 3) if out["baseline_cps"] else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short steps, few rates")
    ap.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated call rates to step through")
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
