"""A PSTN call through one of B's two proxy hosts is validated by B's pvp on a third host, and
A's route then serves both of A's proxy hosts (issue 15 acceptance, DESIGN §12).

Provider B: proxies B1 (127.0.0.1) and B2 (127.0.0.2) and its pvp, each with its own
runtime_dir, all on one PostgreSQL database. Provider A: proxies A1 (127.0.0.1) and A2
(127.0.0.2) and its pvp, likewise on a database of its own. Nothing reaches another role over
a local socket: every hand-over goes through the database's events. The PSTN is a wire: A's
gateway is B1's `pstn` interface. One call from A's phone through A1 crosses it (an
originating VCR in A's database, a terminating one in B's, written by B1); A's pvp (a stand-in
overlay points it at B's pvp) validates against B's pvp, which finds B1's VCR and mints a
ticket with B's shared key; the route reaches A1 and A2, and a call through each then goes
over the federation to B1 with that ticket (no new PSTN call, no new VCR); B2 admits that
ticket too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_postgresql
from tests.pg_cluster import Cluster, drop_database, fresh_database
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    Provider,
    federation_call,
    make_pki,
    write_provider,
)
from tests.pvp.pvp_harness import FakeOverlay, claim, node_tls
from vipr.config import ProviderConfig, load_config
from vipr.ipc import IpcError, IpcServer, ipc_call
from vipr.proxy.cli import serve
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.ua import SimpleUAS
from vipr.pvp.daemon import PvpDaemon
from vipr.store import Store

pytestmark = [requires_postgresql, pytest.mark.timeout(150)]

NODE_B = "b7" * 16
BOUND = 30.0   # seconds: a bound for each hand-over, not a figure the test relies on
PVP = "pvp: {listen: \"127.0.0.1:0\", min_delay: 1s, max_delay: 1s, min_duration: 0}"


def _on(p: Provider, url: str, address: str) -> ProviderConfig:
    """The provider's config on database `url`, its listeners on `address`."""
    text = p.config.read_text().replace("database: vipr.db", f"database: {url}")
    if address != "127.0.0.1":
        for port in (p.internal, p.pstn, p.federation):
            text = text.replace(f"127.0.0.1:{port}\"", f"{address}:{port}\"")
    p.config.write_text(text)
    return load_config(p.config)


def _pvp_host(tmp: Path, proxy: Provider, name: str) -> ProviderConfig:
    """The provider's pvp host: the proxy's config (same database) in a directory of its own."""
    d = tmp / name
    d.mkdir()
    (d / "provider.yaml").write_text(proxy.config.read_text())
    return load_config(d / "provider.yaml")


async def _until(what: str, check: Callable[[], Any], timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_pstn_call_through_proxy_1_validated_by_pvp_on_its_own_host(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    a_url, b_url = fresh_database(pg_cluster), fresh_database(pg_cluster)
    pki = make_pki(tmp_path)
    uas = SimpleUAS()   # B's phones
    _, uas_port = await uas.start("udp", "127.0.0.1")
    b = [write_provider(tmp_path, f"b{i}", "b.example.org", [B_NUMBER], pki, target=uas_port,
                        extra=(PVP,)) for i in (1, 2)]
    a = [write_provider(tmp_path, f"a{i}", "a.example.net", [A_NUMBER], pki,
                        gateway=b[0].pstn, extra=(PVP,)) for i in (1, 2)]
    b_cfg = [_on(b[0], b_url, "127.0.0.1"), _on(b[1], b_url, "127.0.0.2")]
    a_cfg = [_on(a[0], a_url, "127.0.0.1"), _on(a[1], a_url, "127.0.0.2")]
    a_pvp_cfg, b_pvp_cfg = _pvp_host(tmp_path, a[0], "apvp"), _pvp_host(tmp_path, b[0], "bpvp")
    assert len({c.runtime_dir for c in [*a_cfg, *b_cfg, a_pvp_cfg, b_pvp_cfg]}) == 6
    stop = asyncio.Event()
    tasks = [asyncio.create_task(serve(cfg, stop)) for cfg in [*a_cfg, *b_cfg]]
    phone = SipEndpoint(lambda *args: None)   # A's phone (internal side)
    await phone.listen("udp", "127.0.0.1", 0)
    try:
        async with AsyncExitStack() as stack:
            pvps: list[PvpDaemon] = []
            for cfg, node, user in ((b_pvp_cfg, NODE_B, "pvp@b.example.org"),
                                    (a_pvp_cfg, "a7" * 16, "pvp@a.example.net")):
                store = await stack.enter_async_context(Store.open(cfg.database))
                d = PvpDaemon(cfg, store, offload=True, backoff=(0.5, 1.0),
                              tls=node_tls(tmp_path / f"pki-{node[:2]}", node, user=user))
                await d.start()
                stack.push_async_callback(d.close)
                await store.listen(d.on_store_event)   # as pvp_main does
                pvps.append(d)
            b_pvp, a_pvp = pvps
            overlay = FakeOverlay(["a7" * 16], claims={B_NUMBER: [claim(NODE_B)]},
                                  peers={NODE_B: b_pvp.server.address})
            ov = IpcServer(a_pvp_cfg.runtime_dir / "overlay.sock", overlay.handlers())
            await ov.start()
            stack.push_async_callback(ov.close)

            async def serving() -> bool:
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks
                                                          if t.done()]
                try:
                    for cfg in [*a_cfg, *b_cfg]:
                        await ipc_call(cfg.socket_path("proxy"), "status", {}, timeout=5.0)
                except (IpcError, OSError):
                    return False
                return True

            await _until("proxies serving", serving)

            async def call(cfg: ProviderConfig) -> int:
                i = cfg.proxy.interfaces.internal
                return await federation_call(phone, "udp", i.listen.host, i.listen.port,
                                             B_NUMBER, [])

            # the PSTN call: A's phone → A1 → PSTN (B1's pstn) → B1 → B's phone
            assert await call(a_cfg[0]) == 200 and uas.invites == 1

            async def vcrs(store: Store) -> list[str]:
                return [f"{v.direction}/{v.state}" for v in await store.list_vcrs()]

            assert await vcrs(a_pvp.store) == ["originating/complete"]
            assert await vcrs(b_pvp.store) == ["terminating/complete"]

            async def learned() -> bool:
                return await a_pvp.store.get_route(B_NUMBER) is not None

            await _until(f"A's pvp learns B's route: {a_pvp.client.status()} "
                         f"{b_pvp.server.status()}", learned)
            assert b_pvp.server.counters.ok == 1
            (b_vcr,) = await b_pvp.store.list_vcrs()   # B1's VCR is what B's pvp validated
            await b_pvp.server.wait_logged(1)
            assert [(r.role, r.outcome, r.vcr_id) for r in await b_pvp.store.list_validations()
                    ] == [("server", "ok", b_vcr.id)]
            (a_vcr,) = await a_pvp.store.list_vcrs()
            assert a_vcr.validated is not None

            async def cached() -> bool:
                for cfg in a_cfg:
                    st = await ipc_call(cfg.socket_path("proxy"), "status", {}, timeout=5.0)
                    if B_NUMBER not in st["cached_routes"]:
                        return False
                return True

            await _until("the route in both of A's proxies", cached)
            # both of A's proxies use it: over the federation to B1 with B's ticket
            assert [await call(a_cfg[1]), await call(a_cfg[0])] == [200, 200]
            assert uas.invites == 3
            assert await vcrs(a_pvp.store) == ["originating/complete"]   # no PSTN call
            assert len(await vcrs(b_pvp.store)) == 1
            # the ticket B's pvp minted is admitted by B2 as well (A's proxy core over mTLS)
            route = await a_pvp.store.get_route(B_NUMBER)
            assert route is not None
            fed = b_cfg[1].proxy.interfaces.federation
            assert fed is not None and fed.listen.host == "127.0.0.2"
            a_core = SipEndpoint(lambda *args: None)
            await a_core.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))
            try:
                assert await federation_call(
                    a_core, "tls", fed.listen.host, fed.listen.port, B_NUMBER,
                    [("VIPR-Ticket", route.ticket)], server_hostname="b.example.org") == 200
            finally:
                await a_core.close()
            assert uas.invites == 4
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await phone.close()
        await uas.close()
        drop_database(pg_cluster, a_url)
        drop_database(pg_cluster, b_url)
    for t in tasks:
        assert t.exception() is None, t.exception()
