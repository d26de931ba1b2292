"""Ticket admission matrix (DESIGN §6): one numbered test per case, zero false accepts.

The terminating proxy runs in-process (`ProxyServer`, real sockets); the calling provider is
our own SIP core over mutual TLS (SIPp has no TLS build here). Behind the proxy a UAS counts
every INVITE that got through: it must see exactly the accepted ones."""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import (
    B_NUMBER,
    Pki,
    federation_call,
    make_pki,
    mint_for,
    write_provider,
)
from vipr.config import load_config
from vipr.proxy.server import ProxyServer
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.ua import SimpleUAS
from vipr.store import Store
from vipr.store.models import TicketKey
from vipr.tickets import mint_ticket

pytestmark = pytest.mark.timeout(60)
OTHER_B_NUMBER = "+442071234568"


@dataclass
class Env:
    pki: Pki
    proxy: ProxyServer
    uas: SimpleUAS
    client: SipEndpoint
    db: Path
    port: int
    transport: str = "tls"

    async def call(self, headers: list[tuple[str, str]], number: str = B_NUMBER) -> int:
        return await federation_call(self.client, self.transport, "127.0.0.1", self.port,
                                     number, headers, server_hostname="b.example.org")

    def reasons(self) -> dict[str, int]:
        return {k.removeprefix("admission_"): v for k, v in self.proxy.counters.items()
                if k.startswith("admission_")}


async def _env(tmp_path: Path, transport: str = "tls") -> AsyncIterator[Env]:
    pki = make_pki(tmp_path)
    uas = SimpleUAS()
    _, uas_port = await uas.start("udp", "127.0.0.1")
    b = write_provider(tmp_path, "b", "b.example.org", [B_NUMBER, OTHER_B_NUMBER], pki,
                       target=uas_port)
    cfg = load_config(b.config)
    if transport != "tls":
        # a federation listener without TLS cannot be configured; build one to prove that a
        # valid ticket alone is not enough
        fed = dataclasses.replace(cfg.proxy.interfaces.federation, transport="tcp", tls=None)
        ifs = dataclasses.replace(cfg.proxy.interfaces, federation=fed)
        cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(cfg.proxy, interfaces=ifs))
    await mint_for(b.db, B_NUMBER, "a.example.net")   # creates the key before start
    store = await Store.open(b.db)
    proxy = ProxyServer(cfg, store)
    await proxy.start()
    client = SipEndpoint(lambda *a: None)
    if transport == "tls":
        await client.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))
    else:
        await client.listen("tcp", "127.0.0.1", 0)
    try:
        yield Env(pki, proxy, uas, client, b.db, proxy.addresses["federation"][1], transport)
    finally:
        await client.close()
        await proxy.close()
        await store.close()
        await uas.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in _env(tmp_path):
        yield e


async def _rejected(env: Env, headers: list[tuple[str, str]], reason: str,
                    number: str = B_NUMBER) -> None:
    assert await env.call(headers, number) == 403
    assert env.uas.invites == 0, "false accept"
    assert env.reasons() == {reason: 1}


def _flip_mac(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_01_no_header(env: Env) -> None:
    await _rejected(env, [], "missing")


async def test_02_garbage(env: Env) -> None:
    await _rejected(env, [("VIPR-Ticket", "A" * 2000)], "garbage")


async def test_03_bad_base64(env: Env) -> None:
    await _rejected(env, [("VIPR-Ticket", "not*base64!")], "bad-base64")


async def test_04_truncated(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    await _rejected(env, [("VIPR-Ticket", good[:40])], "truncated")


async def test_05_unknown_epoch(env: Env) -> None:
    key = TicketKey(epoch=200, secret=os.urandom(32), created=time.time(), retired=None)
    token = mint_ticket(key, B_NUMBER, "a.example.net", time.time(), 86400)
    await _rejected(env, [("VIPR-Ticket", token)], "unknown-epoch")


async def test_06_bad_hmac(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    await _rejected(env, [("VIPR-Ticket", _flip_mac(good))], "bad-mac")


async def test_07_expired(env: Env) -> None:
    old = await mint_for(env.db, B_NUMBER, "a.example.net", now=time.time() - 91 * 86400)
    await _rejected(env, [("VIPR-Ticket", old)], "expired")


async def test_08_number_differs_from_request_uri(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    await _rejected(env, [("VIPR-Ticket", good)], "number-mismatch", number=OTHER_B_NUMBER)


async def test_09_domain_differs_from_tls_peer(env: Env) -> None:
    other = await mint_for(env.db, B_NUMBER, "c.example.com")
    await _rejected(env, [("VIPR-Ticket", other)], "domain-mismatch")


async def test_10_valid_ticket_over_non_tls_transport(tmp_path: Path) -> None:
    async for e in _env(tmp_path, transport="tcp"):
        good = await mint_for(e.db, B_NUMBER, "a.example.net")
        await _rejected(e, [("VIPR-Ticket", good)], "not-tls")


async def test_11_valid_ticket_from_the_right_domain_is_accepted(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    assert await env.call([("VIPR-Ticket", good)]) == 200
    assert env.uas.invites == 1
    assert env.reasons() == {"ok": 1}


async def test_12_cisco_header_name_is_accepted(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    assert await env.call([("X-Cisco-ViPR-Ticket", good)]) == 200
    assert env.uas.invites == 1


async def test_13_zero_false_accepts_over_a_mixed_run(env: Env) -> None:
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    bad = [[], [("VIPR-Ticket", good[:-2])], [("VIPR-Ticket", _flip_mac(good))],
           [("VIPR-Ticket", good + "AAAA")]]
    results = [await env.call(h) for h in bad * 5]
    assert results == [403] * 20
    assert await env.call([("VIPR-Ticket", good)]) == 200
    assert env.uas.invites == 1


@pytest.mark.parametrize("client", ["other-ca", "no-cert"])
async def test_14_peer_without_a_federation_certificate_never_reaches_admission(
        env: Env, tmp_path: Path, client: str) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(env.pki.ca))
    if client == "other-ca":
        rogue = make_pki(tmp_path / "rogue")
        cert, key = rogue.leaf("a.example.net")
        ctx.load_cert_chain(str(cert), str(key))
    ep = SipEndpoint(lambda *a: None)
    await ep.listen("tls", "127.0.0.1", 0, client_ssl=ctx)
    good = await mint_for(env.db, B_NUMBER, "a.example.net")
    try:
        status = await federation_call(ep, "tls", "127.0.0.1", env.port, B_NUMBER,
                                       [("VIPR-Ticket", good)],
                                       server_hostname="b.example.org", timeout=5)
    except (ConnectionError, TimeoutError, OSError):
        status = None
    finally:
        await ep.close()
    assert status != 200
    assert env.uas.invites == 0 and env.reasons() == {}
