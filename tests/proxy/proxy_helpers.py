"""Shared helpers of the proxy tests: provider configs, federation certs, running `vipr proxy`,
SIPp, and a federation peer on our own SIP core (SIPp has no TLS build here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.ports import free_port
from vipr.ipc import IpcError, ipc_call
from vipr.proxy.federation_tls import create_federation_ca, issue_federation_cert
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.transport import Source
from vipr.store import Store
from vipr.store.models import Route
from vipr.tickets import TICKET_HEADER, mint_ticket

VIPR = [str(Path(sys.executable).parent / "vipr")]
A_NUMBER = "+14085551234"
B_NUMBER = "+442071234567"


@dataclass
class Pki:
    dir: Path
    ca: Path
    certs: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def leaf(self, domain: str) -> tuple[Path, Path]:
        if domain not in self.certs:
            ca_key = self.dir / "ca" / "ca.key"
            self.certs[domain] = issue_federation_cert(self.ca, ca_key, domain,
                                                       self.dir / domain)
        return self.certs[domain]

    def client_ctx(self, domain: str) -> ssl.SSLContext:
        cert, key = self.leaf(domain)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.ca))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def server_ctx(self, domain: str) -> ssl.SSLContext:
        cert, key = self.leaf(domain)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.load_verify_locations(str(self.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def make_pki(tmp: Path) -> Pki:
    ca, _ = create_federation_ca(tmp / "ca")
    return Pki(tmp, ca)


@dataclass
class Provider:
    name: str
    domain: str
    dir: Path
    config: Path
    internal: int
    pstn: int
    federation: int | None
    target: int
    gateway: int

    @property
    def db(self) -> Path:
        return self.dir / "vipr.db"

    @property
    def sock(self) -> Path:
        return self.dir / "run" / "proxy.sock"


def write_provider(tmp: Path, name: str, domain: str, numbers: list[str], pki: Pki | None, *,
                   target: int | None = None, gateway: int | None = None,
                   route_timeout: str = "1s", renewal_window: str = "30d",
                   rotate_interval: str = "30d", interfaces: tuple[str, ...] = (),
                   extra: tuple[str, ...] = ()) -> Provider:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    internal, pstn = free_port(), free_port()
    target = target or free_port()
    gateway = gateway or free_port()
    fed = free_port(socket.SOCK_STREAM) if pki is not None else None
    lines = [
        f"provider: {{name: {name}, domain: {domain}, vservice: \"000000000000000{len(name)}\"}}",
        "numbers: [" + ", ".join(f'"{n}"' for n in numbers) + "]",
        "runtime_dir: run", "database: vipr.db",
        "logging: {level: info}",
        "proxy:", f"  route_timeout: {route_timeout}", "  interfaces:",
        f"    internal: {{listen: \"127.0.0.1:{internal}\", target: \"127.0.0.1:{target}\"}}",
        f"    pstn: {{listen: \"127.0.0.1:{pstn}\", gateway: \"127.0.0.1:{gateway}\"}}",
    ]
    if pki is not None:
        cert, key = pki.leaf(domain)
        lines += [
            "    federation:",
            f"      listen: \"127.0.0.1:{fed}\"",
            f"      advertise: \"sip:127.0.0.1:{fed};transport=tls\"",
            f"      tls: {{cert: \"{cert}\", key: \"{key}\", ca: \"{pki.ca}\"}}",
        ]
    lines += [f"    {line}" for line in interfaces]
    lines += ["tickets: {lifetime: 90d, renewal_window: " + renewal_window
              + ", rotate_interval: " + rotate_interval + "}", *extra]
    cfg = d / "provider.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return Provider(name, domain, d, cfg, internal, pstn, fed, target, gateway)


async def new_ticket_key(db: Path) -> None:
    async with Store.open(db) as store:
        await store.create_ticket_key(time.time())


async def mint_for(db: Path, number: str, domain: str, *, lifetime: float = 90 * 86400,
                   now: float | None = None) -> str:
    async with Store.open(db) as store:
        key = await store.current_ticket_key()
        if key is None:
            key = await store.create_ticket_key(time.time())
    return mint_ticket(key, number, domain, time.time() if now is None else now, lifetime)


async def add_route(db: Path, number: str, uri: str, ticket: str, domain: str, *,
                    ticket_expires: float | None = None) -> None:
    now = time.time()
    exp = now + 90 * 86400 if ticket_expires is None else ticket_expires
    async with Store.open(db) as store:
        await store.upsert_route(Route(number=number, routes=(uri,), ticket=ticket,
                                       ticket_expires=exp, expires=exp,
                                       learned_from_node="00" * 16,
                                       learned_from_domain=domain, validated_at=now))


async def get_route(db: Path, number: str) -> Route | None:
    async with Store.open(db) as store:
        return await store.get_route(number)


class ProxyProcess:
    """`vipr proxy --config F` as a child process."""

    def __init__(self, p: Provider) -> None:
        self.p = p
        self.proc: asyncio.subprocess.Process | None = None
        self.log = p.dir / "proxy.log"

    async def start(self, timeout: float = 30.0) -> ProxyProcess:
        fh = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = await asyncio.create_subprocess_exec(
            *VIPR, "proxy", "--config", str(self.p.config), stdout=fh, stderr=fh, env=env)
        fh.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError(f"proxy exited {self.proc.returncode}: {self.log_text()}")
            try:
                await ipc_call(self.p.sock, "status", {}, timeout=2)
                return self
            except IpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError("proxy did not start: " + self.log_text()) from None
                await asyncio.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def status(self) -> dict[str, object]:
        return await ipc_call(self.p.sock, "status", {}, timeout=5)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def sipp_cmd(scenario: str | Path, port: int, *, remote: str | None = None,
             service: str | None = None, calls: int = 1, rate: float = 10, duration_ms: int = 0,
             message_file: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    pick = ["-sf", str(scenario)] if isinstance(scenario, Path) else ["-sn", scenario]
    cmd = ["sipp", *pick, "-i", "127.0.0.1", "-p", str(port),
           "-mp", str(free_port()), "-cp", str(free_port()), "-m", str(calls),
           "-nostdin", "-timeout", "60s", "-timeout_error", "-max_recv_loops", "1000"]
    if scenario == "uac" or (isinstance(scenario, Path) and scenario.name.startswith("uac")):
        cmd += ["-r", str(rate), "-d", str(duration_ms), "-l", "200"]
    if service:
        cmd += ["-s", service]
    if message_file is not None:
        cmd += ["-trace_msg", "-message_file", str(message_file)]
    cmd += list(extra)
    if remote:
        cmd.append(remote)
    return cmd


async def run(cmd: list[str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=str(cwd))


async def finish(proc: asyncio.subprocess.Process, timeout: float = 90) -> tuple[int, str]:
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace")[-3000:]


async def kill(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()


@dataclass
class SippMessage:
    at: float
    sent: bool
    first_line: str
    call_id: str
    cseq: str


def parse_sipp_messages(path: Path) -> list[SippMessage]:
    """SIPp -trace_msg output: blocks that start with a dashed line and a local timestamp."""
    out: list[SippMessage] = []
    text = path.read_text(errors="replace")
    for block in text.split("----------------------------------------------- ")[1:]:
        lines = block.splitlines()
        if len(lines) < 4:
            continue
        at = datetime.strptime(lines[0].strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        sent = " sent " in lines[1]
        body = [ln for ln in lines[2:] if ln.strip()]
        if not body:
            continue
        hdr = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
               for ln in body[1:] if ":" in ln}
        out.append(SippMessage(at, sent, body[0], hdr.get("call-id", ""), hdr.get("cseq", "")))
    return out


# SIPp stamps a traced message with its main loop's cached clock, not at the syscall: a stamp
# can be off by SIPp's own scheduling delay. Kept below half the shortest scenario pause
# (400 ms), so the bracket of a call's answer never overlaps the bracket of its BYE.
SIPP_STAMP_SLACK = 0.15


def sipp_first(path: Path, *, sent: bool, line: str, method: str) -> dict[str, float]:
    """Per Call-ID: SIPp's stamp of the first message it sent (`sent`) or received whose first
    line starts with `line` and whose CSeq method is `method`."""
    out: dict[str, float] = {}
    for m in parse_sipp_messages(path):
        if m.sent == sent and m.first_line.startswith(line) and m.cseq.endswith(method):
            out.setdefault(m.call_id, m.at)
    return out


def assert_between(t: float, lo: float, hi: float, what: str) -> None:
    """An ordering check: `t` (a proxy stamp) lies between the SIPp stamps `lo` (the message
    left its sender) and `hi` (it reached the other side through the proxy)."""
    s = SIPP_STAMP_SLACK
    assert lo - s <= t <= hi + s, f"{what}: {t:.6f} not in [{lo:.6f}, {hi:.6f}] (±{s} s)"


Behaviour = Callable[[SipRequest, Source, ServerHandle], None]


class FederationPeer:
    """A TLS SIP peer on our own core: answers INVITEs with `status` (None = never answers)."""

    def __init__(self, pki: Pki, domain: str, status: int | None) -> None:
        self.pki, self.domain, self.status = pki, domain, status
        self.invites: list[tuple[SipRequest, Source]] = []
        self.ep: SipEndpoint | None = None
        self.port = 0

    async def start(self) -> FederationPeer:
        self.ep = SipEndpoint(self._on_request)
        tr = await self.ep.listen("tls", "127.0.0.1", 0, ssl=self.pki.server_ctx(self.domain),
                                  client_ssl=self.pki.client_ctx(self.domain))
        self.port = tr.local_port
        return self

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:
            return
        if req.method == "INVITE":
            self.invites.append((req, source))
            if self.status is not None:   # RFC 3261 §12.1.1: a 2xx carries a Contact
                contact = (("Contact", f"<sip:peer@127.0.0.1:{self.port};transport=tls>"),)
                server.respond(self.status, to_tag=secrets.token_hex(4),
                               headers=contact if 200 <= self.status < 300 else ())
        elif self.status is not None:
            server.respond(200)

    async def close(self) -> None:
        if self.ep is not None:
            await self.ep.close()


async def federation_call(ep: SipEndpoint, transport: str, host: str, port: int, number: str,
                          headers: list[tuple[str, str]], *, server_hostname: str | None = None,
                          timeout: float = 20) -> int:
    """One INVITE (+ACK/BYE on 2xx) from a remote provider's proxy; the final status."""
    call_id = secrets.token_hex(8) + "@a.example.net"
    ftag = secrets.token_hex(4)
    ruri = f"sip:{number}@127.0.0.1:{port};user=phone"
    via = f"SIP/2.0/{transport.upper()} 127.0.0.1:9;branch={new_branch()}"
    base = [("Max-Forwards", "70"), ("From", f"<sip:{A_NUMBER}@a.example.net>;tag={ftag}"),
            ("Call-ID", call_id)]
    h = Headers([("Via", via), *base, ("To", f"<sip:{number}@b.example.org>"),
                 ("CSeq", "1 INVITE"), ("Contact", "<sip:a@127.0.0.1:9>"), *headers])
    client = await ep.send_request(SipRequest("INVITE", ruri, h), transport, host, port,
                                   server_hostname=server_hostname)
    final = await client.final(timeout)
    if 200 <= final.status < 300:
        to = final.headers.get("to") or ""
        for method, seq in (("ACK", 1), ("BYE", 2)):
            req = SipRequest(method, ruri, Headers([
                ("Via", f"SIP/2.0/{transport.upper()} 127.0.0.1:9;branch={new_branch()}"),
                *base, ("To", to), ("CSeq", f"{seq} {method}")]))
            if method == "ACK":
                await ep.send_stateless(req, transport, host, port)
            else:
                bye = await ep.send_request(req, transport, host, port)
                with contextlib.suppress(TimeoutError):
                    await bye.final(timeout)
    return final.status


__all__ = ["TICKET_HEADER"]
