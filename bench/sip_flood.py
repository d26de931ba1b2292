"""Idle-connection flood against `vipr proxy`'s federation (TLS) port: memory and refusals.

Issue 13 defect 2 / DESIGN §10. A running proxy (default `proxy.limits`) gets N plain TCP
connections that never start TLS, from many loopback source addresses (127.0.x.y, at most
250 per /24, so the per-address cap is not what stops them); they are held open, then closed.
Measured in one run: the proxy's RSS at start (the baseline), at the peak of the flood and
some seconds after the connections closed, the gate's counts, and whether a legitimate
mutual-TLS OPTIONS is answered during and after the flood.
Prints one JSON line last (RSS in MB; ratios peak/start and after/start).

    python bench/sip_flood.py --quick          # 2,000 connections
    python bench/sip_flood.py --connections 19000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vipr.ipc import IpcError, ipc_call
from vipr.proxy.federation_tls import create_federation_ca, issue_federation_cert

VIPR = str(Path(sys.executable).parent / "vipr")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def options_ok(port: int, ctx: ssl.SSLContext) -> bool:
    """One OPTIONS over mutual TLS from 127.0.0.1: True when answered 200."""
    req = (b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKf"
           + str(time.monotonic_ns()).encode() + b"\r\nFrom: <sip:a@a.example.net>;tag=1\r\n"
           b"To: <sip:b@b.example.org>\r\nCall-ID: flood\r\nCSeq: 1 OPTIONS\r\n"
           b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="b.example.org"), 10)
        w.write(req)
        head = await asyncio.wait_for(r.readuntil(b"\r\n"), 10)
        w.close()
        return head.startswith(b"SIP/2.0 200")
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
        return False


async def flood(port: int, n: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((f"127.0.{1 + i // 250}.{2 + i % 250}", 0))
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 2)
        except (OSError, TimeoutError):
            s.close()
            continue
        held.append(s)
    return held


async def run(n: int, settle: float) -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="vipr-flood-"))
    ca, ca_key = create_federation_ca(d / "ca")
    cert, key = issue_federation_cert(ca, ca_key, "b.example.org", d / "b")
    ccert, ckey = issue_federation_cert(ca, ca_key, "a.example.net", d / "a")
    fed = free_port(socket.SOCK_STREAM)
    cfg = d / "provider.yaml"
    cfg.write_text("\n".join([
        'provider: {name: b, domain: b.example.org, vservice: "0000000000000002"}',
        'numbers: ["+442071234567"]', "runtime_dir: run", "database: vipr.db",
        "logging: {level: warning}", "proxy:", "  interfaces:",
        f'    internal: {{listen: "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"}}',
        f'    pstn: {{listen: "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"}}',
        "    federation:", f'      listen: "127.0.0.1:{fed}"',
        f'      tls: {{cert: "{cert}", key: "{key}", ca: "{ca}"}}',
    ]) + "\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.load_cert_chain(str(ccert), str(ckey))
    log = open(d / "proxy.log", "ab")  # noqa: SIM115 - closed below
    proc = await asyncio.create_subprocess_exec(VIPR, "proxy", "--config", str(cfg),
                                                stdout=log, stderr=log)
    log.close()
    sock = d / "run" / "proxy.sock"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await ipc_call(sock, "status", {}, timeout=2)
                break
            except IpcError:
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise SystemExit("proxy did not start: "
                                     + (d / "proxy.log").read_text()) from None
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        start = rss_mb(proc.pid)
        held = await flood(fed, n)
        peak = rss_mb(proc.pid)
        during_ok = await options_ok(fed, ctx)   # the flood's connections are all still held
        status = (await ipc_call(sock, "status", {}, timeout=5))["interfaces"]["federation"]
        peak = max(peak, rss_mb(proc.pid))
        for s in held:
            s.close()
        await asyncio.sleep(settle)
        after = rss_mb(proc.pid)
        after_ok = await options_ok(fed, ctx)
        final = (await ipc_call(sock, "status", {}, timeout=5))["interfaces"]["federation"]
        return {
            "connections": n, "connected": len(held), "rss_start_mb": round(start, 1),
            "rss_peak_mb": round(peak, 1), "rss_after_mb": round(after, 1),
            "ratio_peak_vs_start": round(peak / start, 2),
            "ratio_after_vs_start": round(after / start, 2),
            "gate_at_peak": status.get("connections"), "gate_after": final.get("connections"),
            "state_after": final.get("state"), "legit_during": during_ok,
            "legit_after": after_ok, "crashed": proc.returncode is not None,
        }
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 connections")
    ap.add_argument("--connections", type=int, default=19000)
    ap.add_argument("--settle", type=float, default=11.0,
                    help="seconds after closing before RSS is read (housekeeping runs every 5 s)")
    args = ap.parse_args()
    n = 2000 if args.quick else args.connections
    print(json.dumps(asyncio.run(run(n, args.settle))))


if __name__ == "__main__":
    main()
