"""End to end with real processes: two providers' `vipr pvp` daemons on loopback, VCRs imported
with `vipr vcrs import`, a validation triggered with `vipr validate`, the route and a ticket
that verifies at the terminating side, `vipr validations list` on both sides.

Overlay: real `vipr overlay` daemons when this tree has them (vipr.reload.aio.daemon), and in
any case a variant where the originating provider's overlay.sock is served by a stand-in
IpcServer in the test (lookup → B's claim, attach → B's PVP address).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pvp_harness import CALLEE, CALLER, T0, FakeOverlay, claim, cleanup, short_dir

from tests.ports import free_port, free_port_block
from vipr.ipc import IpcServer
from vipr.store import Store
from vipr.tickets import TicketVerifier, decode_ticket

pytestmark = pytest.mark.slow

VIPR = str(Path(sys.executable).parent / "vipr")
NODE_A, NODE_B = "a" * 32, "b" * 32
HAVE_OVERLAYD = importlib.util.find_spec("vipr.reload.aio.daemon") is not None


def write_cfg(base: Path, name: str, vservice: int, pvp_port: int, extra: str = "",
              numbers: tuple[str, ...] = (), delay: tuple[str, str] = ("1h", "2h")) -> Path:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    nums = "".join(f'\n  - "{n}"' for n in numbers) or " []"
    cfg = d / "provider.yaml"
    cfg.write_text(f"""
provider: {{name: {name}, domain: {name}.example.net, vservice: "{vservice:016x}"}}
numbers:{nums}
runtime_dir: {d / 'run'}
database: {d / 'vipr.db'}
logging: {{level: debug}}
pvp:
  listen: "127.0.0.1:{pvp_port}"
  min_delay: {delay[0]}
  max_delay: {delay[1]}
  handshake_timeout: 20s
proxy:
  interfaces:
    internal: {{listen: "127.0.0.1:0"}}
    pstn: {{listen: "127.0.0.1:0"}}
    federation:
      listen: "127.0.0.1:0"
      transport: tls
      advertise: "sip:{name}.example.net:5061;transport=tls"
      tls: {{cert: tls/{name}.crt, key: tls/{name}.key, ca: tls/ca.crt}}
{extra}""")
    return cfg


async def run(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(
        VIPR, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), timeout)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


def vcr_csv(path: Path, direction: str, caller: str) -> Path:
    path.write_text("caller,callee,direction,start,stop,call_id\n"
                    f"{caller},{CALLEE},{direction},{T0:.3f},{T0 + 61.5:.3f},e2e-call-1\n")
    return path


class Daemon:
    """A `vipr <role> --config F` process; `start` returns once it sent READY=1 (sd_notify)."""

    def __init__(self, role: str, cfg: Path, base: Path) -> None:
        self.role, self.cfg, self.base = role, cfg, base
        self.log = cfg.parent / f"{role}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 90) -> None:
        notify = self.cfg.parent / f"{self.role}.notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.setblocking(False)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONUNBUFFERED="1")
        self.proc = await asyncio.create_subprocess_exec(
            VIPR, self.role, "--config", str(self.cfg), cwd=str(self.cfg.parent),
            stdout=self.log.open("wb"), stderr=asyncio.subprocess.STDOUT, env=env)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await loop.sock_recv(sock, 4096)
                    if b"READY=1" in msg:
                        return
        except TimeoutError:
            raise AssertionError(f"{self.role} not ready:\n{self.log.read_text()}") from None
        finally:
            sock.close()

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _check_learned(a_cfg: Path, b_cfg: Path, base: Path) -> None:
    """The originating side learned the route and a ticket that verifies at B."""
    async with Store.open(base / "a" / "vipr.db") as sa, Store.open(base / "b" / "vipr.db") as sb:
        route = await sa.get_route(CALLEE)
        assert route is not None and route.number == CALLEE
        assert route.routes == ("sip:b.example.net:5061;transport=tls",)
        assert route.learned_from_domain == "b.example.net"
        ticket = decode_ticket(route.ticket)
        assert (ticket.number, ticket.domain) == (CALLEE, "a.example.net")
        verdict = TicketVerifier(await sb.ticket_keys()).verify(
            route.ticket, number=CALLEE, peer_domain="a.example.net", now=T0 + 60)
        assert verdict.ok, verdict
        (orig,) = await sa.list_vcrs(direction="originating")
        assert orig.validated is not None
    rc, out, err = await run("validations", "list", "--config", str(b_cfg), "--json")
    assert rc == 0, err
    recs = json.loads(out)
    assert [(r["role"], r["outcome"]) for r in recs] == [("server", "ok")]
    rc, out, err = await run("validations", "list", "--config", str(a_cfg))
    assert rc == 0 and "learned" in out, out + err


async def _import(a_cfg: Path, b_cfg: Path, base: Path, expect_queued: bool = False) -> None:
    # terminating side first: the originating side may validate as soon as it hears of its VCR
    for cfg, direction, caller in ((b_cfg, "terminating", ""), (a_cfg, "originating", CALLER)):
        rc, out, err = await run("vcrs", "import", str(vcr_csv(base / f"{direction}.csv",
                                                               direction, caller)),
                                 "--config", str(cfg))
        assert rc == 0 and "imported 1" in out, out + err
        if expect_queued and direction == "originating":
            assert "pvp queued 1 of 1 originating calls" in out, out + err


async def overlay_pki(base: Path) -> dict[str, tuple[str, str]]:
    """`vipr ca init` + `vipr ca issue` for providers a and b: name → (Node-ID, the overlay
    section for its provider.yaml). The PVP outer TLS (profile v2) uses these certificates."""
    ov = base / "overlay"
    rc, out, err = await run("ca", "init", "--overlay", "overlay.vipr-test.example", "--out",
                             str(ov), "--bootstrap", "127.0.0.1:1")
    assert rc == 0, out + err
    out_map = {}
    for name in ("a", "b"):
        rc, out, err = await run("ca", "issue", "--config", str(ov / "overlay.xml"), "--out",
                                 str(ov), "--user", f"node@{name}.example", "--node-ids", "1",
                                 "--name", name, "--json")
        assert rc == 0, out + err
        info = json.loads(out)
        out_map[name] = (info["node_ids"][0],
                         f"overlay:\n  configuration: {ov / 'overlay.xml'}\n"
                         f"  cert: {info['cert']}\n  key: {info['key']}\n")
    return out_map


async def pki_cfgs(base: Path, b_port: int, delay: tuple[str, str] = ("1h", "2h")
                   ) -> tuple[Path, Path, str, str]:
    """Configurations of a and b with overlay node certificates; (a_cfg, b_cfg, node a, b)."""
    pki = await overlay_pki(base)
    a_cfg = write_cfg(base, "a", 1, free_port(), pki["a"][1], delay=delay)
    b_cfg = write_cfg(base, "b", 2, b_port, pki["b"][1])
    return a_cfg, b_cfg, pki["a"][0], pki["b"][0]


@contextlib.asynccontextmanager
async def _two_pvp_daemons(
    base: Path, a_cfg: Path, b_cfg: Path, b_port: int, route_learned: Any,
    nodes: tuple[str, str] = (NODE_A, NODE_B),
) -> AsyncIterator[Daemon]:
    """Provider B's and A's `vipr pvp`, A with a stand-in overlay.sock (claims: B owns CALLEE)
    and proxy.sock (`route_learned`); yields A; both must stop with exit code 0."""
    node_a, node_b = nodes
    overlay = FakeOverlay([node_a], claims={CALLEE: [claim(node_b)]},
                          peers={node_b: ("127.0.0.1", b_port)})
    a, b = Daemon("pvp", a_cfg, base), Daemon("pvp", b_cfg, base)
    async with IpcServer(base / "a" / "run" / "overlay.sock", overlay.handlers()), \
            IpcServer(base / "a" / "run" / "proxy.sock", {"route_learned": route_learned}):
        try:
            await b.start()
            await a.start()
            yield a
        finally:
            codes = [await a.stop(), await b.stop()]
    assert codes == [0, 0], a.log.read_text() + b.log.read_text()


async def test_two_pvp_processes_with_a_standin_overlay(base: Path) -> None:
    b_port = free_port()
    a_cfg, b_cfg, node_a, node_b = await pki_cfgs(base, b_port)
    await _import(a_cfg, b_cfg, base)
    learned: list[str] = []

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        learned.append(params["number"])
        return {"cached": True}

    async with _two_pvp_daemons(base, a_cfg, b_cfg, b_port, route_learned,
                                (node_a, node_b)) as a:
        rc, out, err = await run("validate", CALLEE, "--config", str(a_cfg))
        assert rc == 0, out + err + a.log.read_text()
        assert out.startswith(f"{CALLEE}: learned"), out
    assert learned == [CALLEE]
    await _check_learned(a_cfg, b_cfg, base)


async def test_import_into_a_running_pvp_queues_the_validation(base: Path) -> None:
    """`vipr vcrs import --config` announces new originating VCRs to the running pvp daemon
    (as the proxy does), which validates them after its delay with no `vipr validate`."""
    b_port = free_port()
    a_cfg, b_cfg, node_a, node_b = await pki_cfgs(base, b_port, delay=("1s", "2s"))
    learned = asyncio.Event()

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        assert params["number"] == CALLEE
        learned.set()
        return {"cached": True}

    async with _two_pvp_daemons(base, a_cfg, b_cfg, b_port, route_learned, (node_a, node_b)):
        await _import(a_cfg, b_cfg, base, expect_queued=True)
        async with asyncio.timeout(60):
            await learned.wait()
    await _check_learned(a_cfg, b_cfg, base)


async def test_import_without_a_running_pvp_says_so(base: Path) -> None:
    a_cfg = write_cfg(base, "a", 1, free_port())
    rc, out, err = await run("vcrs", "import", str(vcr_csv(base / "o.csv", "originating",
                                                           CALLER)),
                             "--config", str(a_cfg), "--json")
    assert rc == 0, err
    assert json.loads(out)["queued_for_validation"] is None
    assert "pvp daemon not reached" in err


@pytest.mark.skipif(not HAVE_OVERLAYD, reason="vipr overlay (storage helper) not in this tree")
async def test_two_providers_real_overlay_and_pvp_daemons(base: Path) -> None:
    port = free_port_block(4)
    ov = base / "overlay"
    rc, out, err = await run("ca", "init", "--overlay", "overlay.vipr-test.example", "--out",
                             str(ov), "--bootstrap", f"127.0.0.1:{port}")
    assert rc == 0, out + err
    cfgs = []
    for i, (name, numbers) in enumerate((("a", ()), ("b", (CALLEE,)))):
        rc, out, err = await run("ca", "issue", "--config", str(ov / "overlay.xml"), "--out",
                                 str(ov), "--user", f"node@{name}.example", "--node-ids", "1",
                                 "--name", name, "--json")
        assert rc == 0, out + err
        info = json.loads(out)
        extra = (f"overlay:\n  configuration: {ov / 'overlay.xml'}\n  cert: {info['cert']}\n"
                 f"  key: {info['key']}\n  listen: \"127.0.0.1:{port + i}\"\n"
                 f"  create: {'true' if i == 0 else 'false'}\n  nodes: 1\n")
        cfgs.append(write_cfg(base, name, i + 1, port + 2 + i, extra, numbers))
    a_cfg, b_cfg = cfgs
    await _import(a_cfg, b_cfg, base)
    daemons = [Daemon("overlay", a_cfg, base), Daemon("overlay", b_cfg, base),
               Daemon("pvp", b_cfg, base), Daemon("pvp", a_cfg, base)]
    try:
        for d in daemons:
            await d.start()
        from vipr.ipc import ipc_call

        await ipc_call(base / "b" / "run" / "overlay.sock", "publish", {}, timeout=60)
        rc, out, err = await run("validate", CALLEE, "--config", str(a_cfg))
        assert rc == 0 and out.startswith(f"{CALLEE}: learned"), (
            out + err + "".join(d.log.read_text() for d in daemons))
    finally:
        codes = [await d.stop() for d in reversed(daemons)]
    assert codes == [0, 0, 0, 0], "".join(d.log.read_text() for d in daemons)
    await _check_learned(a_cfg, b_cfg, base)
