"""Start and stop Debian's Kamailio with a deploy/kamailio config (tests of DESIGN §11)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

from tests.proxy.proxy_helpers import Pki

KITS = Path(__file__).resolve().parents[2] / "deploy" / "kamailio"
UAC = Path(__file__).with_name("uac_rr.xml")   # SIPp's uac, ACK/BYE along the Record-Route
UAS = Path(__file__).with_name("uas_rr.xml")   # SIPp's uas, answers with the Record-Route


def tls_cfg(d: Path, pki: Pki, domain: str) -> Path:
    """The tls module's file: mutual TLS both ways with `domain`'s certificate."""
    cert, key = pki.leaf(domain)
    return tls_cfg_files(d, domain, cert, key, pki.ca)


def tls_cfg_files(d: Path, domain: str, cert: Path, key: Path, ca: Path) -> Path:
    """The tls module's file from certificate, key and CA files (mutual TLS both ways)."""
    p = d / f"tls-{domain}.cfg"
    both = (f"method = TLSv1.2+\ncertificate = {cert}\nprivate_key = {key}\n"
            f"ca_list = {ca}\nverify_certificate = yes\nrequire_certificate = yes\n")
    p.write_text(f"[server:default]\n{both}\n[client:default]\n{both}")
    return p


async def start_kamailio(d: Path, cfg: str, defines: list[str], *, shm_mb: int = 32,
                         pkg_mb: int = 4, children: int | None = None,
                         tcp_children: int | None = None) -> asyncio.subprocess.Process:
    """`kamailio -f KITS/cfg -DD -E` with `-A` defines; returns once it listens. Its own
    process group (`proc.pid`): `stop_kamailio` signals every worker."""
    d.mkdir(parents=True, exist_ok=True)
    logf = d / "kamailio.log"
    log = open(logf, "ab")  # noqa: SIM115 - closed below, the child keeps it
    (d / "krun").mkdir(exist_ok=True)
    args = ["kamailio", "-f", str(KITS / cfg), "-DD", "-E", "-m", str(shm_mb), "-M", str(pkg_mb),
            "-Y", str(d / "krun"), "-w", str(d)]
    if children is not None:
        args += ["-n", str(children)]     # UDP workers
    if tcp_children is not None:
        args += ["-N", str(tcp_children)]  # TCP/TLS workers
    for x in defines:
        args += ["-A", x]
    proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log,
                                                start_new_session=True)
    log.close()
    deadline = time.monotonic() + 15
    # the attendant logs this once every receiver process is forked
    while b"tcp_main" not in logf.read_bytes() and b"main.c" not in logf.read_bytes():
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError("kamailio did not start: "
                               + logf.read_text(errors="replace")[-3000:])
        await asyncio.sleep(0.1)
    # the workers fork after that (TLS set-up first): ready once the logged count is there
    want = re.search(rb"processes \(at least\): (\d+)", logf.read_bytes())
    while len(process_tree(proc.pid)) < (int(want.group(1)) if want else 2):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError("kamailio did not fork its workers: "
                               + logf.read_text(errors="replace")[-3000:])
        await asyncio.sleep(0.1)
    return proc


def process_tree(main: int) -> list[int]:
    """`main` and every process below it (Linux /proc): Kamailio's workers, which do not
    stay in its process group."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parent[int(d.name)] = int(stat[1])
    tree = {main}
    while True:
        below = {pid for pid, pp in parent.items() if pp in tree} - tree
        if not below:
            return sorted(tree)
        tree |= below


async def stop_kamailio(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def log_tail(d: Path) -> str:
    p = d / "kamailio.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""
