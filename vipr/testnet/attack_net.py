"""The attack suite's test network and what it measures (issue 13): listener probes, daemon
liveness and memory, and legitimate traffic (a call and a validation) from 127.0.0.1.

    anet = await AttackNet.start(root)      # providers A, B, C + PSTN, all real processes
    await anet.legit()                      # A calls a fresh number of B over the PSTN and
                                            # A's pvp validates it (plus a call over VIPR)
    await anet.listeners_alive()            # {"b.sip_federation_tls": True, …}
    anet.rss()                              # {"proxy-b": (VmRSS MB, VmHWM MB), …}
    await anet.close()

The attack layout is the demo's (vipr/testnet/workdir.py) with C's internal interface on SIP
over TCP (so that a plain TCP SIP listener exists to attack) and a rogue enrolled overlay
member "provider-m" (a certificate of the overlay CA, no daemon) for the RELOAD campaigns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vipr.ipc import IpcError
from vipr.reload.ca import issue_node_cert, random_node_id
from vipr.reload.wire.security import load_certificate
from vipr.testnet.network import TestNetwork
from vipr.testnet.workdir import OVERLAY_NAME, Layout, default_providers, make_workdir

__all__ = ["AttackNet", "LegitResult", "Listener", "options_request"]

LEGIT_SOURCE = "127.0.0.1"
PROBE_TIMEOUT = 3.0
VALIDATION_TIMEOUT = 15.0
LEGIT_HOLD = 0.8   # seconds: above pvp.min_duration (0.5 s in the demo), so it is validated


@dataclass(frozen=True)
class Listener:
    """One listening socket of a daemon: what to probe and how."""

    name: str        # "b.sip_federation_tls"
    daemon: str      # "proxy-b"
    kind: str        # sip_udp | sip_tcp | sip_tls | overlay | pvp
    host: str
    port: int


@dataclass
class LegitResult:
    call_ok: bool
    validation_ok: bool
    vipr_call_ok: bool | None = None      # None: no learned route to call over yet
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.call_ok and self.validation_ok and self.vipr_call_ok is not False


def options_request(transport: str, local: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """An OPTIONS (RFC 3261 §11) from `local`: every proxy listener answers it."""
    tag = os.urandom(4).hex()
    return (f"OPTIONS sip:{dst[0]}:{dst[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} {local[0]}:{local[1]};rport;"
            f"branch=z9hG4bK{os.urandom(6).hex()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{local[0]}>;tag={tag}\r\n"
            f"To: <sip:{dst[0]}>\r\n"
            f"Call-ID: {os.urandom(8).hex()}@probe\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def _status_of(data: bytes) -> int | None:
    if not data.startswith(b"SIP/2.0 "):
        return None
    try:
        return int(data[8:11])
    except ValueError:
        return None


async def udp_exchange(dst: tuple[str, int], payload_for: Any, *, src: str = LEGIT_SOURCE,
                       timeout: float = PROBE_TIMEOUT) -> int | None:
    """Send `payload_for(local)` over UDP from `src`; the status of the first response."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.bind((src, 0))
        s.sendto(payload_for(s.getsockname()), dst)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await loop.sock_recv(s, 65536)
                    st = _status_of(data)
                    if st is not None and st >= 200:
                        return st
        except TimeoutError:
            return None


async def stream_exchange(dst: tuple[str, int], payload: bytes | None, *,
                          ctx: ssl.SSLContext | None = None, src: str = LEGIT_SOURCE,
                          timeout: float = PROBE_TIMEOUT) -> int | None:
    """Connect from `src` (TLS with `ctx`), send `payload` (None: an OPTIONS); the status of
    the first final response, or None (refused, closed, silent)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                dst[0], dst[1], ssl=ctx, local_addr=(src, 0),
                server_hostname="" if ctx is not None else None)
            try:
                local = writer.get_extra_info("sockname")
                writer.write(payload if payload is not None else
                             options_request("tls" if ctx else "tcp", local, dst))
                await writer.drain()
                while True:
                    line = await reader.readline()
                    if not line:
                        return None
                    st = _status_of(line)
                    if st is not None and st >= 200:
                        return st
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return None


async def tls_handshake(dst: tuple[str, int], ctx: ssl.SSLContext | None, *,
                        src: str = LEGIT_SOURCE, timeout: float = PROBE_TIMEOUT) -> bool:
    """A TCP connect (and the TLS handshake with `ctx`) succeeds and is not closed at once."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                dst[0], dst[1], ssl=ctx, local_addr=(src, 0),
                server_hostname="" if ctx is not None else None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True
    except (OSError, TimeoutError, ssl.SSLError):
        return False


def read_rss(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a process in MB from /proc/PID/status, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    vals: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024.0
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (proc(5): writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# ---------------------------------------------------------------------- the layout


def _attack_layout(root: Path, numbers: int) -> Layout:
    layout = make_workdir(root, providers=default_providers(numbers))
    c = layout.providers[2].key
    for cfg in (layout.configs[c], layout.nofed_configs[c]):     # SIP over TCP on C
        doc = yaml.safe_load(cfg.read_text())
        doc["proxy"]["interfaces"]["internal"]["transport"] = "tcp"
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    d = root / "overlay"                                          # a rogue enrolled member
    ca = load_certificate((d / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    issue_node_cert(ca, key, OVERLAY_NAME, "overlay@m.example.invalid",
                    [random_node_id()]).write(d, "provider-m")
    return layout


class AttackNet:
    """The running network plus everything the campaigns measure."""

    def __init__(self, net: TestNetwork, numbers: list[str]) -> None:
        self.net = net
        self.lay = net.layout
        self._fresh = iter(numbers)
        self.vipr_number: str | None = None      # a number of B with a learned route
        self.expected_down: set[str] = set()     # killed on purpose (not a crash)
        self.crashes: list[str] = []
        self.startup_rss: dict[str, float] = {}
        a, b, c = (p.key for p in self.lay.providers[:3])
        self.a, self.b, self.c = a, b, c
        self.listeners = self._listeners()

    @classmethod
    async def start(cls, root: Path, numbers: int = 120) -> AttackNet:
        layout = await asyncio.to_thread(_attack_layout, root, numbers)
        b = layout.providers[1]
        first = int(b.phone_number[-5:])
        fresh = [f"{b.phone_number[:-5]}{first + i}" for i in range(1, numbers)]
        net = TestNetwork(layout)
        await net.start()
        anet = cls(net, fresh)
        if net.failed:
            raise RuntimeError(f"not running: {net.failed}")
        await anet._wait_claims([fresh[0], fresh[-1]])
        anet.startup_rss = {n: r[0] for n, r in anet.rss().items()}
        return anet

    async def _wait_claims(self, numbers: list[str], timeout: float = 60.0) -> None:
        last = [time.monotonic()]

        async def claimed() -> bool:
            for n in numbers:
                ans = await self.net.ipc(self.a, "overlay", "lookup", {"number": n})
                if not ans.get("claims"):
                    if time.monotonic() - last[0] > 3.0:    # stored before the ring settled
                        last[0] = time.monotonic()
                        await self.net.republish(self.b)
                    return False
            return True

        await self.net.wait_for("B's claims in the overlay", claimed, timeout, 0.3)

    async def close(self) -> None:
        await self.net.stop()

    # ------------------------------------------------------------------ listeners

    def _listeners(self) -> list[Listener]:
        out = []
        for p in self.lay.providers:
            pt = self.lay.ports[p.key]
            k = p.key
            internal = "sip_tcp" if k == self.c else "sip_udp"
            out += [Listener(f"{k}.sip_internal_{internal[4:]}", f"proxy-{k}", internal,
                             "127.0.0.1", pt.internal),
                    Listener(f"{k}.sip_pstn_udp", f"proxy-{k}", "sip_udp", "127.0.0.1", pt.pstn),
                    Listener(f"{k}.sip_federation_tls", f"proxy-{k}", "sip_tls", "127.0.0.1",
                             pt.federation),
                    Listener(f"{k}.overlay", f"overlay-{k}", "overlay", "127.0.0.1", pt.overlay),
                    Listener(f"{k}.pvp", f"pvp-{k}", "pvp", "127.0.0.1", pt.pvp)]
        return out

    def listener(self, name: str) -> Listener:
        return next(x for x in self.listeners if x.name == name)

    def federation_client_ctx(self, key: str | None = None) -> ssl.SSLContext:
        """A federation member's client context (C's certificate by default)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.lay.tls_ca))
        ctx.check_hostname = False
        ctx.load_cert_chain(*(str(f) for f in self.lay.tls_certs[key or self.c]))
        return ctx

    def overlay_client_ctx(self, stem: str = "provider-m") -> ssl.SSLContext:
        """An enrolled overlay member's TLS client context (the rogue member by default)."""
        d = self.lay.root / "overlay"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_cert_chain(str(d / f"{stem}.crt"), str(d / f"{stem}.key"))
        ctx.load_verify_locations(str(d / "ca.crt"))
        return ctx

    async def probe(self, x: Listener) -> bool:
        dst = (x.host, x.port)
        if x.kind == "sip_udp":
            return await udp_exchange(dst, lambda local: options_request("udp", local, dst)) \
                is not None
        if x.kind == "sip_tcp":
            return await stream_exchange(dst, None) is not None
        if x.kind == "sip_tls":
            return await stream_exchange(dst, None, ctx=self.federation_client_ctx()) is not None
        if x.kind == "overlay":
            return await tls_handshake(dst, self.overlay_client_ctx())
        return await tls_handshake(dst, None)          # pvp: TCP accept (TLS-SRP is costly)

    async def listeners_alive(self) -> dict[str, bool]:
        names = [x.name for x in self.listeners]
        res = await asyncio.gather(*(self.probe(x) for x in self.listeners))
        return dict(zip(names, res, strict=True))

    # ------------------------------------------------------------------ daemons

    def daemons(self) -> dict[str, int]:
        return {n: c.pid for n, c in self.net.children.items() if c.pid is not None}

    def rss(self) -> dict[str, tuple[float, float]]:
        out = {}
        for n, pid in self.daemons().items():
            r = read_rss(pid)
            if r is not None and self.net.children[n].running:
                out[n] = r
        return out

    def reset_peaks(self) -> None:
        for n, pid in self.daemons().items():
            if self.net.children[n].running:
                reset_peak(pid)

    def dead(self) -> list[str]:
        """Daemons that are not running although nobody stopped them on purpose."""
        return sorted(n for n, c in self.net.children.items()
                      if not c.running and n not in self.expected_down)

    async def restart(self, name: str) -> None:
        if name == "pstn":
            await self.net.start_pstn()
            return
        role, key = name.split("-", 1)
        await self.net.start_role(key, role)

    async def collect_crashes(self) -> list[str]:
        """Record dead daemons as crashes and start them again (later campaigns need them)."""
        dead = self.dead()
        for n in dead:
            self.crashes.append(n)
            await self.restart(n)
        return dead

    async def kill9(self, name: str) -> None:
        c = self.net.children[name]
        self.expected_down.add(name)
        if c.proc is not None and c.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.proc.pid, signal.SIGKILL)
        await c.wait_exit(10.0)

    async def revive(self, name: str) -> float:
        """Start a killed daemon again; seconds until it is ready."""
        t0 = time.monotonic()
        await self.restart(name)
        self.expected_down.discard(name)
        return time.monotonic() - t0

    # ------------------------------------------------------------------ legitimate traffic

    def fresh_number(self) -> str:
        return next(self._fresh)

    async def call(self, number: str, hold: float = LEGIT_HOLD, timeout: float = 12.0) -> Any:
        return await self.net.phones[self.a].call(number, hold=hold, timeout=timeout)

    async def validated(self, number: str, since: float,
                        timeout: float = VALIDATION_TIMEOUT) -> str:
        """A's validation outcome for `number` ("learned" is success), waiting up to timeout."""
        outcome = ["none"]

        async def learned() -> bool:
            vals = await self.net.validations(self.a, number, since)
            if vals:
                outcome[0] = vals[0].outcome + (f" ({vals[0].reason})" if vals[0].reason
                                                else "")
            return any(v.outcome == "learned" for v in vals)

        with contextlib.suppress(TimeoutError):
            await self.net.wait_for(f"validation of {number}", learned, timeout, 0.2)
            return "learned"
        return outcome[0]

    async def legit(self, number: str | None = None) -> LegitResult:
        """A's phone calls a fresh number of B (over the PSTN: no route yet) and A's pvp
        validates it against B; when a route was learned before, a call over VIPR too."""
        number = number or self.fresh_number()
        since = time.time() - 1.0
        detail: dict[str, Any] = {"number": number}
        try:
            r = await self.call(number)
            detail["call"] = f"{r.status} bye {r.bye_status}" + (f" {r.error}" if r.error
                                                                  else "")
            call_ok = bool(r.ok)
        except (OSError, TimeoutError) as exc:
            detail["call"], call_ok = f"error {exc}", False
        outcome = await self.validated(number, since) if call_ok else "no call"
        detail["validation"] = outcome
        res = LegitResult(call_ok, outcome == "learned", detail=detail)
        if self.vipr_number is not None:
            try:
                r = await self.call(self.vipr_number)
                res.vipr_call_ok = bool(r.ok)
                via = "wideband" if r.answer and r.answer.wideband else "narrowband"
                detail["vipr_call"] = f"{r.status} {via}"
            except (OSError, TimeoutError) as exc:
                res.vipr_call_ok, detail["vipr_call"] = False, f"error {exc}"
        elif res.validation_ok:
            with contextlib.suppress(IpcError, OSError):
                if await self.net.route(self.a, number) is not None:
                    self.vipr_number = number
        return res
