"""Two proxies of one provider on different loopback addresses sharing one PostgreSQL (issue 15
acceptance): a ticket minted for the provider is admitted by either; a ticket key rotated on
one host is honoured by the other; a route learned elsewhere (by the provider's pvp) reaches
both proxies' caches through the database's events, long before their periodic reload.

Each proxy runs as `vipr proxy` does (`serve`, with its own runtime_dir and socket), in this
process; the calling provider is our own SIP core over mutual TLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_postgresql
from tests.proxy.proxy_helpers import B_NUMBER, federation_call, make_pki, mint_for, write_provider
from vipr.config import ProviderConfig, load_config
from vipr.ipc import IpcError, ipc_call
from vipr.proxy.cli import serve
from vipr.proxy.server import ROUTE_RELOAD_INTERVAL
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.ua import SimpleUAS
from vipr.proxy.tickets_cli import rotate_key
from vipr.store import Route, Store

pytestmark = [requires_postgresql, pytest.mark.timeout(90)]

LEARNED = "+14155550123"
BOUND = 10.0   # seconds: a bound for a lost event (ROUTE_RELOAD_INTERVAL is 60 s)


def _host(tmp: Path, name: str, address: str, pg_url: str, pki: Any,
          uas_port: int) -> ProviderConfig:
    p = write_provider(tmp, name, "b.example.org", [B_NUMBER], pki, target=uas_port)
    text = p.config.read_text().replace("database: vipr.db", f"database: {pg_url}")
    assert p.federation is not None
    text = text.replace(f"127.0.0.1:{p.federation}", f"{address}:{p.federation}")
    p.config.write_text(text)
    return load_config(p.config)


async def _status(cfg: ProviderConfig) -> dict[str, Any]:
    return await ipc_call(cfg.socket_path("proxy"), "status", {}, timeout=5.0)


async def test_two_proxy_hosts_share_keys_routes_and_rotations(
        tmp_path: Path, pg_url: str) -> None:
    assert BOUND < ROUTE_RELOAD_INTERVAL
    pki = make_pki(tmp_path)
    uas = SimpleUAS()
    _, uas_port = await uas.start("udp", "127.0.0.1")
    hosts = [_host(tmp_path, "b1", "127.0.0.1", pg_url, pki, uas_port),
             _host(tmp_path, "b2", "127.0.0.2", pg_url, pki, uas_port)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(serve(cfg, stop)) for cfg in hosts]
    client = SipEndpoint(lambda *a: None)
    await client.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))

    async def up() -> bool:
        try:
            for cfg in hosts:
                await _status(cfg)
        except (IpcError, OSError):
            return False
        return True

    async def call(i: int, ticket: str) -> int:
        fed = hosts[i].proxy.interfaces.federation
        assert fed is not None
        return await federation_call(client, "tls", fed.listen.host, fed.listen.port,
                                     B_NUMBER, [("VIPR-Ticket", ticket)],
                                     server_hostname="b.example.org")

    try:
        ready = False
        deadline = time.monotonic() + 30
        while not ready:
            assert time.monotonic() < deadline, "proxies not serving"
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            ready = await up()
            await asyncio.sleep(0.1)

        # B's pvp mints with the shared current key: either proxy admits it.
        ticket = await mint_for(pg_url, B_NUMBER, "a.example.net")  # type: ignore[arg-type]
        assert [await call(0, ticket), await call(1, ticket)] == [200, 200]

        # A rotation on one host (`vipr tickets rotate` there): the other honours the new epoch.
        rotated = await rotate_key(pg_url, time.time(), None)
        fresh = await mint_for(pg_url, B_NUMBER, "a.example.net")  # type: ignore[arg-type]
        assert fresh != ticket and rotated
        assert [await call(1, fresh), await call(0, fresh)] == [200, 200]
        assert uas.invites == 4

        # A route learned by the provider's pvp (its own store connection, another host).
        async with Store.open(pg_url) as pvp_store:
            now = time.time()
            await pvp_store.learn_route(Route(
                LEARNED, ("sip:127.0.0.1:5999;transport=tls",), "tkt", now + 86400,
                now + 86400, "ab" * 16, "c.example.net", now), None)
        cached: list[list[str]] = [[], []]

        async def refresh() -> None:
            for i, cfg in enumerate(hosts):
                cached[i] = (await _status(cfg))["cached_routes"]

        deadline = time.monotonic() + BOUND
        while not all(LEARNED in c for c in cached):
            assert time.monotonic() < deadline, f"route not in both caches: {cached}"
            await refresh()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await client.close()
        await uas.close()
    for t in tasks:
        assert t.exception() is None, t.exception()

