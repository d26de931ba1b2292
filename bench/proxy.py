"""SIP proxy throughput: SIPp UAC → `vipr proxy` → SIPp UAS over UDP, against Kamailio.

Paths measured in one run (each: stepwise call rates, each held for --hold seconds; the figure
is the highest rate with 0 failed calls):
  plain       SIPp UAC → vipr proxy (internal → pstn gateway; every call writes a VCR) → SIPp UAS
  federation  SIPp UAC → vipr proxy A (route + VIPR-Ticket, mutual TLS) → vipr proxy B
              (ticket admission → internal) → SIPp UAS.  SIPp has no TLS build here, so the
              TLS hop is between two vipr proxies.
  plain_pg    plain, with the store on PostgreSQL (a throw-away cluster, tests/pg_cluster.py;
              skipped when PostgreSQL is not installed): plain_pg_ratio = plain_pg / plain.
  kamailio    SIPp UAC → Kamailio (Debian package; record_route + t_relay, a plain stateful
              relay) → SIPp UAS: the baseline. Installed by the benchmark when it runs as
              root and Kamailio is missing (apt-get, as scripts/ensure-debs.sh does); without
              it the benchmark stops at once with exit status 2, and a baseline that held no
              rate at all ends it with exit status 1 (after the JSON line).

The ladder (--rates, or the default steps) goes on past its last step, each step 1.25 times
the one before, until the path fails or --max-rate is passed: a path that held its last step
is only bounded below, and the JSON says so (`<path>_bound: true`; for Kamailio the ratios
vipr / kamailio are then upper bounds: `ratio_is_bound: true`).
Federation steps prove the calls went over federation: on B, the calls admitted with a
ticket in the step equal the calls offered, and on A no call of the step went to the PSTN
(`route_pstn_*` and `fallback_*` unchanged); otherwise the step fails.
A path left out with --paths reports null (rates and ratios), never 0.
Prints one JSON line last (rates in calls/s; ratios vipr / kamailio).

    python bench/proxy.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vipr.ipc import IpcError, ipc_call
from vipr.proxy.federation_tls import create_federation_ca, issue_federation_cert
from vipr.store import Store
from vipr.store.models import Route
from vipr.tickets import mint_ticket

A_NUMBER, B_NUMBER = "+14085551234", "+442071234567"
VIPR = str(Path(sys.executable).parent / "vipr")
PROFILE_DIR: Path | None = None   # --profile: run each proxy under cProfile, stats here


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provider_yaml(d: Path, name: str, domain: str, number: str, *, internal: int, pstn: int,
                  target: int, gateway: int, fed: int | None, tls: tuple[Path, Path, Path] | None,
                  database: str = "vipr.db") -> Path:
    lines = [
        f'provider: {{name: {name}, domain: {domain}, vservice: "000000000000000{len(name)}"}}',
        f'numbers: ["{number}"]', "runtime_dir: run", f"database: {database}",
        "logging: {level: warning}", "proxy:", "  route_timeout: 4s", "  interfaces:",
        f'    internal: {{listen: "127.0.0.1:{internal}", target: "127.0.0.1:{target}"}}',
        f'    pstn: {{listen: "127.0.0.1:{pstn}", gateway: "127.0.0.1:{gateway}"}}',
    ]
    if fed is not None and tls is not None:
        lines += ["    federation:", f'      listen: "127.0.0.1:{fed}"',
                  f'      tls: {{cert: "{tls[0]}", key: "{tls[1]}", ca: "{tls[2]}"}}']
    d.mkdir(parents=True, exist_ok=True)
    (d / "provider.yaml").write_text("\n".join(lines) + "\n")
    return d / "provider.yaml"


async def start_proxy(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    fh = open(log, "ab")  # noqa: SIM115
    argv = [VIPR, "proxy", "--config", str(cfg)]
    if PROFILE_DIR is not None:
        out = PROFILE_DIR / f"{log.stem}.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "vipr", *argv[1:]]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=fh, stderr=fh)
    fh.close()
    sock = cfg.parent / "run" / "proxy.sock"
    deadline = time.monotonic() + 30
    while True:
        try:
            await ipc_call(sock, "status", {}, timeout=2)
            return proc
        except IpcError:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not start: {log.read_text()[-2000:]}") from None
            await asyncio.sleep(0.1)


async def stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# SIPp's built-in uas minus the 180: a multi-process relay (Kamailio's UDP workers) may reorder
# 180 and 200, which the built-in uac counts as a failed call ("unexpected message").
UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas without 180">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
]]></send>
</scenario>
"""


async def sipp_uas(port: int, cwd: Path) -> asyncio.subprocess.Process:
    xml = cwd / "uas.xml"
    xml.write_text(UAS_XML)
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()),
        "-cp", str(free_port()), "-nostdin", "-bind_local",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(cwd))


async def sipp_step(target: int, rate: int, hold: float, cwd: Path) -> dict[str, Any]:
    """One step: rate*hold calls at `rate`; ok when SIPp reports no failure and kept pace.

    A SIPp that exits at once without a statistics row lost a port race (free_port): retried."""
    calls = int(rate * hold)
    stat = cwd / f"uac_{target}_{rate}.csv"
    for _attempt in range(3):
        stat.unlink(missing_ok=True)
        cmd = ["sipp", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_port()),
               "-mp", str(free_port()), "-cp", str(free_port()), "-s", B_NUMBER,
               "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 4, 100)),
               "-recv_timeout", "5000", "-nostdin", "-timeout", f"{int(hold * 2 + 20)}s",
               "-timeout_error", "-trace_stat", "-stf", str(stat), "-fd", "1",
               "-trace_err", "-error_file", str(cwd / f"uac_{target}_{rate}_errors.log"),
               f"127.0.0.1:{target}"]
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE,
                                                    cwd=str(cwd))
        _, err = await proc.communicate()
        took = time.monotonic() - t0
        failed, ok_calls = _sipp_totals(stat)
        if ok_calls or failed or took > 1.0:
            break
        print(f"sipp did not start ({err.decode(errors='replace')[-200:].strip()}); retrying",
              file=sys.stderr)
    kept_pace = took <= hold * 1.1 + 0.5   # the calls finished at (about) the offered rate
    return {"rate": rate, "calls": calls, "successful": ok_calls, "failed": failed,
            "seconds": round(took, 2), "rc": proc.returncode,
            "ok": proc.returncode == 0 and failed == 0 and ok_calls == calls and kept_pace}


def _sipp_totals(stat: Path) -> tuple[int, int]:
    """(failed, successful) cumulative counts from the last row of SIPp's -trace_stat CSV."""
    try:
        rows = [r for r in stat.read_text().splitlines() if r.strip()]
    except OSError:
        return 0, 0
    head, last = rows[0].split(";"), rows[-1].split(";")
    col = {name: i for i, name in enumerate(head)}
    return int(last[col["FailedCall(C)"]]), int(last[col["SuccessfulCall(C)"]])


Hook = Callable[[], Awaitable[Any]]


def cpu_seconds(procs: list[asyncio.subprocess.Process]) -> float:
    """User + system CPU time used so far by these processes (Linux /proc), 0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    return total


Step = Callable[[int, int, float, Path], Awaitable[dict[str, Any]]]


async def ramp(target: int, rates: list[int], hold: float, cwd: Path, label: str, *,
               before: Hook | None = None, after: Callable[[dict[str, Any]], Awaitable[None]]
               | None = None, procs: list[Any] | None = None, step: Step | None = None,
               ) -> tuple[int, list[dict[str, Any]]]:
    """`before` runs ahead of every step; `after(result)` may mark a step failed. With
    `procs` (the relays), each step records their CPU time per call (ms, all of them).
    `step(target, rate, hold, cwd)` runs one step (default: `sipp_step`)."""
    best, steps = 0, []
    for rate in rates:
        # the machine is shared: a failed step is tried once more before the ramp stops
        for _ in range(2):
            if before is not None:
                await before()
            cpu0 = cpu_seconds(procs or [])
            res = await (step or sipp_step)(target, rate, hold, cwd)
            if procs and res["calls"]:
                res["cpu_ms_per_call"] = round(
                    (cpu_seconds(procs) - cpu0) * 1000 / res["calls"], 3)
            if after is not None:
                await after(res)
            steps.append(res)
            print(f"{label:<11} {rate:>5} calls/s: {res['successful']}/{res['calls']} ok, "
                  f"{res['failed']} failed, {res['seconds']} s"
                  + (f", {res['cpu_ms_per_call']} ms CPU/call" if "cpu_ms_per_call" in res
                     else "")
                  + (f", {res['fallbacks']} via PSTN fallback" if res.get("fallbacks") else ""),
                  file=sys.stderr)
            if res["ok"]:
                break
        if not res["ok"]:
            break
        best = rate
    return best, steps


def ladder(rates: list[int], max_rate: int) -> list[int]:
    """`rates`, then steps of x1.25 (rounded to 50) past the last one, up to `max_rate`."""
    out = list(rates)
    while out and out[-1] < max_rate:
        out.append(min(max_rate, max(out[-1] + 50, round(out[-1] * 1.25 / 50) * 50)))
    return out


def ensure_kamailio() -> str | None:
    """Kamailio's module directory; as root with apt-get, installs the Debian package first
    when it is missing (the benchmark's baseline must not silently disappear)."""
    mpath = kamailio_mpath() if shutil.which("kamailio") else None
    if mpath is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("kamailio missing: apt-get install -y kamailio", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "kamailio"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        mpath = kamailio_mpath() if shutil.which("kamailio") else None
    return mpath


KAMAILIO_CFG = """#!KAMAILIO
debug=0
log_stderror=yes
children={children}
listen=udp:127.0.0.1:{port}
auto_aliases=no
mpath="{mpath}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    if (is_method("ACK") && has_totag()) {{
        loose_route(); $du = "sip:127.0.0.1:{uas}"; forward(); exit;
    }}
    if (!has_totag()) record_route(); else loose_route();
    $du = "sip:127.0.0.1:{uas}";
    t_relay();
}}
"""


def kamailio_mpath() -> str | None:
    for p in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules",
              "/usr/lib64/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules"):
        if Path(p, "tm.so").exists():
            return p
    return None


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    hold = 5.0 if args.quick else 30.0
    rates = ladder(args.rates or ([100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1500,
                                   2000] if args.quick
                                  else [100, 200, 300, 400, 500, 600, 700, 800, 1000, 1500,
                                        2000]), args.max_rate)
    out: dict[str, Any] = {"bench": "proxy", "hold_s": hold, "cpus": os.cpu_count(),
                           "transport": "udp"}
    tmp = Path(tempfile.mkdtemp(prefix="vipr-bench-proxy-"))
    procs: list[asyncio.subprocess.Process] = []
    try:
        # --- plain routing: internal → pstn gateway
        paths = args.paths
        for name in ("plain", "plain_pg", "federation", "kamailio"):  # null when left out
            out[f"{name}_cps"] = None
        out["plain_pg_ratio"] = None
        uas_port = free_port()
        procs.append(await sipp_uas(uas_port, tmp))
        internal = free_port()
        plain = provider_yaml(tmp / "plain", "a", "a.example.net", A_NUMBER,
                              internal=internal, pstn=free_port(), target=free_port(),
                              gateway=uas_port, fed=None, tls=None)
        if "plain" in paths:
            p = await start_proxy(plain, tmp / "plain.log")
            procs.append(p)
            out["plain_cps"], out["plain_steps"] = await ramp(internal, rates, hold, tmp,
                                                              "plain", procs=[p])
            await stop(p)

        # --- plain routing with the store on PostgreSQL (issue 15), same SIPp UAS
        if "plain_pg" in paths:
            cluster = throwaway_postgresql()
            if cluster is None:
                out["plain_pg_cps"] = "skipped: PostgreSQL not installed (Debian postgresql)"
            else:
                try:
                    internal_pg = free_port()
                    plain_pg = provider_yaml(
                        tmp / "plain_pg", "a", "a.example.net", A_NUMBER, internal=internal_pg,
                        pstn=free_port(), target=free_port(), gateway=uas_port, fed=None,
                        tls=None, database=cluster.url())
                    p = await start_proxy(plain_pg, tmp / "plain_pg.log")
                    procs.append(p)
                    out["plain_pg_cps"], out["plain_pg_steps"] = await ramp(
                        internal_pg, rates, hold, tmp, "plain_pg", procs=[p])
                    await stop(p)
                finally:
                    cluster.remove()
            pg, plain_cps = out.get("plain_pg_cps"), out.get("plain_cps")
            out["plain_pg_ratio"] = (round(pg / plain_cps, 3) if isinstance(pg, int | float)
                                     and plain_cps else None)

        # --- federation: A (route + ticket, TLS) → B (admission) → SIPp UAS
        ca, ca_key = create_federation_ca(tmp / "ca")
        certs = {d: issue_federation_cert(ca, ca_key, d, tmp / d)
                 for d in ("a.example.net", "b.example.org")}
        uas2 = free_port()
        procs.append(await sipp_uas(uas2, tmp))
        fa, fb, ia = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM), free_port()
        # A's PSTN gateway is a SIPp UAS too: a call the ticket path drops under overload
        # completes via the PSTN (DESIGN §6) but fails the step (counted as a fallback)
        cfg_a = provider_yaml(tmp / "fa", "a", "a.example.net", A_NUMBER, internal=ia,
                              pstn=free_port(), target=free_port(), gateway=uas2,
                              fed=fa, tls=(*certs["a.example.net"], ca))
        cfg_b = provider_yaml(tmp / "fb", "b", "b.example.org", B_NUMBER, internal=free_port(),
                              pstn=free_port(), target=uas2, gateway=free_port(),
                              fed=fb, tls=(*certs["b.example.org"], ca))
        now = time.time()
        async with Store.open(cfg_b.parent / "vipr.db") as sb:
            key = await sb.create_ticket_key(now)
        ticket = mint_ticket(key, B_NUMBER, "a.example.net", now, 90 * 86400)
        sock_a, sock_b = cfg_a.parent / "run" / "proxy.sock", cfg_b.parent / "run" / "proxy.sock"
        route = Route(number=B_NUMBER, routes=(f"sip:127.0.0.1:{fb};transport=tls",),
                      ticket=ticket, ticket_expires=now + 90 * 86400, expires=now + 90 * 86400,
                      learned_from_node="00" * 16, learned_from_domain="b.example.org",
                      validated_at=now)

        # IPC timeouts of 30 s: after an overloaded step a proxy may still be working off
        # its queue, and the default 5 s would stop the whole run
        async def fresh_route() -> None:
            # 3 fallbacks drop a route (DESIGN §6): each step starts from a learned route
            async with Store.open(cfg_a.parent / "vipr.db") as sa:
                await sa.upsert_route(route)
            if sock_a.exists():
                await ipc_call(sock_a, "route_learned", {"number": B_NUMBER}, timeout=30)

        totals: dict[str, int] = {"admitted": 0, "federation": 0, "pstn": 0, "fallbacks": 0}

        async def over_federation(res: dict[str, Any]) -> None:
            """The step's calls went over federation: admitted on B with a ticket = calls
            offered, and none of them to the PSTN on A (no PSTN route, no fallback)."""
            ca_ = (await ipc_call(sock_a, "status", {}, timeout=30))["counters"]
            cb_ = (await ipc_call(sock_b, "status", {}, timeout=30))["counters"]
            now_ = {"admitted": cb_.get("admission_ok", 0),
                    "federation": sum(v for k, v in ca_.items()
                                      if k.startswith("route_federation_")),
                    "pstn": sum(v for k, v in ca_.items() if k.startswith("route_pstn_")),
                    "fallbacks": sum(v for k, v in ca_.items() if k.startswith("fallback_"))}
            for k, v in now_.items():
                res[k] = v - totals[k]
                totals[k] = v
            res["ok"] = (res["ok"] and res["admitted"] == res["calls"]
                         and res["federation"] == res["calls"] and res["pstn"] == 0
                         and res["fallbacks"] == 0)

        if "federation" in paths:
            await fresh_route()
            pa = await start_proxy(cfg_a, tmp / "fa.log")
            pb = await start_proxy(cfg_b, tmp / "fb.log")
            procs += [pa, pb]
            out["federation_cps"], out["federation_steps"] = await ramp(
                ia, rates, hold, tmp, "federation", before=fresh_route, after=over_federation,
                procs=[pa, pb])
            out["federation_admitted"] = totals["admitted"]
            out["federation_pstn"] = totals["pstn"]
            out["federation_fallbacks"] = totals["fallbacks"]
            await stop(pa)
            await stop(pb)

        # --- Kamailio baseline (main() has made sure it is installed)
        mpath = kamailio_mpath()
        if "kamailio" in paths and mpath is not None:
            kport, uas3 = free_port(), free_port()
            procs.append(await sipp_uas(uas3, tmp))
            kcfg = tmp / "kamailio.cfg"
            kcfg.write_text(KAMAILIO_CFG.format(children=os.cpu_count() or 2, port=kport,
                                                mpath=mpath, uas=uas3))
            kam = await asyncio.create_subprocess_exec(
                "kamailio", "-f", str(kcfg), "-DD", "-E", "-m", "512", "-M", "16",
                "-P", str(tmp / "kamailio.pid"), "-Y", str(tmp),
                stdout=asyncio.subprocess.DEVNULL, stderr=open(tmp / "kamailio.log", "wb"))  # noqa: SIM115
            procs.append(kam)
            await asyncio.sleep(1.0)   # no readiness signal to wait for; then check it lives
            if kam.returncode is not None:
                raise RuntimeError("kamailio: " + (tmp / "kamailio.log").read_text()[-2000:])
            out["kamailio_cps"], out["kamailio_steps"] = await ramp(kport, rates, hold, tmp,
                                                                    "kamailio")
        for name in ("plain", "plain_pg", "federation", "kamailio"):
            v = out.get(f"{name}_cps")
            if isinstance(v, int):   # held the ladder's last step: a lower bound only
                out[f"{name}_bound"] = v >= rates[-1]
        k = out.get("kamailio_cps")
        for name in ("plain", "federation"):
            v = out.get(f"{name}_cps")
            out[f"{name}_ratio"] = round(v / k, 3) if k and v is not None else None
        # Kamailio held every step: its figure is a lower bound, so the ratios are upper ones
        out["ratio_is_bound"] = bool(out.get("kamailio_bound"))
        out["rate_ceiling"] = rates[-1]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                await stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    return out


def throwaway_postgresql() -> Any:
    """A throw-away PostgreSQL cluster (tests/pg_cluster.py), or None when not installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg_cluster import Cluster, pg_bin

    bin_dir = pg_bin()
    return Cluster(bin_dir) if bin_dir is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s per rate step instead of 30 s")
    ap.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated call rates to step through")
    ap.add_argument("--max-rate", type=int, default=10000,
                    help="the ladder goes on past its last step up to this rate (calls/s)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--paths", type=lambda s: s.split(","),
                    default=["plain", "plain_pg", "federation", "kamailio"],
                    help="comma-separated subset of plain,plain_pg,federation,kamailio")
    ap.add_argument("--profile", type=Path, default=None,
                    help="run the proxies under cProfile; write <log name>.prof files here")
    args = ap.parse_args()
    if args.profile is not None:
        global PROFILE_DIR
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile.resolve()
    if shutil.which("sipp") is None:
        print("sipp not installed (Debian package sip-tester)", file=sys.stderr)
        sys.exit(2)
    if "kamailio" in args.paths and ensure_kamailio() is None:
        print("kamailio not installed and not installable here (run as root, or apt-get "
              "install -y kamailio): no baseline, no benchmark", file=sys.stderr)
        sys.exit(2)
    res = asyncio.run(bench(args))
    keep = ("rate", "ok", "failed", "seconds", "cpu_ms_per_call", "admitted", "federation",
            "pstn", "fallbacks")
    for k in [k for k in res if k.endswith("_steps")]:
        res[k] = [{f: s[f] for f in keep if f in s} for s in res[k]]
    print(json.dumps(res))
    if "kamailio" in args.paths and not res.get("kamailio_cps"):
        print("kamailio baseline held no rate: the ratios are meaningless", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
