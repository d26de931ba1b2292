"""Test harness for PVP: providers (config + store on disk), a stand-in overlay.sock and
proxy.sock served by real `IpcServer`s, VCR helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vipr.config import HostPort, Interface, ProviderConfig, load_config
from vipr.ipc import IpcError, IpcServer
from vipr.pvp.client import PvpClient
from vipr.pvp.server import PvpServer
from vipr.store import Route, Store, Vcr
from vipr.tickets import TicketVerifier, decode_ticket

CALLER = "+14085550100"
CALLEE = "+4930123456"
NOW = time.time()
T0 = float(int(NOW) - 3600) + 0.250  # a call one hour ago


def short_dir() -> Path:
    """A short directory (AF_UNIX paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="vp", dir="/tmp"))


def write_config(base: Path, name: str, *, pvp: dict[str, Any] | None = None,
                 vservice: str = "0000000000000001", port: int = 0) -> Path:
    p = {"listen": f"127.0.0.1:{port}", "min_delay": 0, "max_delay": 0, "min_duration": 5,
         "handshake_timeout": 10, "max_attempts_per_minute": 1000}
    p.update(pvp or {})
    lines = [
        f"provider: {{name: {name}, domain: {name}.example.net, vservice: '{vservice}'}}",
        "numbers: []",
        f"runtime_dir: {base / name / 'run'}",
        f"database: {base / name / 'vipr.db'}",
        "logging: {level: debug}",
        "pvp:",
        *[f"  {k}: {v}" for k, v in p.items()],
    ]
    (base / name).mkdir(parents=True, exist_ok=True)
    path = base / name / "provider.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def with_federation(cfg: ProviderConfig, uri: str) -> ProviderConfig:
    ifs = dataclasses.replace(
        cfg.proxy.interfaces,
        federation=Interface(HostPort("127.0.0.1", 5061), "tls", advertise=uri),
    )
    return dataclasses.replace(cfg, proxy=dataclasses.replace(cfg.proxy, interfaces=ifs))


def vcr(direction: str, *, caller: str = CALLER, callee: str = CALLEE, start: float = T0,
        duration: float = 60.0, call_id: str = "call-1") -> Vcr:
    return Vcr(id=None, direction=direction, caller=caller, callee=callee,  # type: ignore[arg-type]
               start=start, stop=start + duration, call_id=call_id, created=start + duration)


@dataclass
class FakeOverlay:
    """overlay.sock stand-in: `lookup` answers configured claims, `attach` maps a peer id to a
    PVP server address, `status` names our own nodes."""

    own_nodes: list[str]
    claims: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    peers: dict[str, tuple[str, int]] = field(default_factory=dict)
    unreachable: dict[str, int] = field(default_factory=dict)  # peer → attaches to fail first
    silent: set[str] = field(default_factory=set)  # peers whose attach never answers
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("lookup", params))
        return {"number": params["number"], "claims": self.claims.get(params["number"], []),
                "resource": "N"}

    async def attach(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("attach", params))
        peer = params["peer_id"]
        if peer in self.silent:
            await asyncio.Event().wait()  # until the caller's IPC timeout gives up
        if self.unreachable.get(peer, 0) > 0:
            self.unreachable[peer] -= 1
            raise IpcError("unreachable", f"no route to {peer}")
        if peer not in self.peers:
            raise IpcError("unreachable", f"unknown peer {peer}")
        host, port = self.peers[peer]
        return {"host": host, "port": port}

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"nodes": [{"node_id": n} for n in self.own_nodes], "published": 0}

    def handlers(self) -> dict[str, Any]:
        return {"lookup": self.lookup, "attach": self.attach, "status": self.status}


def claim(node: str, vservice: str = "00000000000000bb") -> dict[str, str]:
    return {"node_id": node, "vservice": vservice, "peer_id": node}


@dataclass
class Provider:
    cfg: ProviderConfig
    store: Store
    server: PvpServer
    client: PvpClient
    overlay: FakeOverlay
    learned: list[str]

    @property
    def node(self) -> str:
        return self.overlay.own_nodes[0]


@asynccontextmanager
async def provider(base: Path, name: str, node: str, *, pvp: dict[str, Any] | None = None,
                   proxy: bool = True, backoff: tuple[float, ...] = (0.05, 0.1)
                   ) -> AsyncIterator[Provider]:
    cfg = with_federation(load_config(write_config(base, name, pvp=pvp)),
                          f"sip:{name}.example.net:5061;transport=tls")
    overlay = FakeOverlay([node])
    learned: list[str] = []

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        learned.append(params["number"])
        return {"cached": True}

    async with Store.open(cfg.database) as store:
        server = PvpServer(cfg, store, offload=True)
        client = PvpClient(cfg, store, offload=True, backoff=backoff)
        ov = IpcServer(cfg.runtime_dir / "overlay.sock", overlay.handlers())
        px = IpcServer(cfg.runtime_dir / "proxy.sock", {"route_learned": route_learned})
        await server.start()
        await ov.start()
        if proxy:
            await px.start()
        try:
            yield Provider(cfg, store, server, client, overlay, learned)
        finally:
            await client.close()
            await px.close()
            await ov.close()
            await server.close()


def connect(a: Provider, *servers: Provider) -> None:
    """`a` sees claims for CALLEE from each of `servers` (in that order) and can attach."""
    for s in servers:
        a.overlay.claims.setdefault(CALLEE, []).append(claim(s.node))
        a.overlay.peers[s.node] = s.server.address


def cleanup(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


async def assert_learned(a: Provider, b: Provider, number: str = CALLEE) -> Route:
    """`a` learned `b`'s route for `number`: the URI `b` advertises, the node and domain it came
    from, and a ticket for exactly this number and `a`'s domain that verifies at `b`."""
    route = await a.store.get_route(number)
    assert route is not None, f"no route learned for {number}"
    b_domain, a_domain = b.cfg.provider.domain, a.cfg.provider.domain
    assert route.number == number
    assert route.routes == (f"sip:{b_domain}:5061;transport=tls",), route.routes
    assert (route.learned_from_node, route.learned_from_domain) == (b.node, b_domain)
    ticket = decode_ticket(route.ticket)
    assert (ticket.number, ticket.domain) == (number, a_domain)
    assert route.ticket_expires == float(ticket.expires) >= route.expires
    verdict = TicketVerifier(await b.store.ticket_keys()).verify(
        route.ticket, number=number, peer_domain=a_domain, now=time.time())
    assert verdict.ok, verdict
    return route
