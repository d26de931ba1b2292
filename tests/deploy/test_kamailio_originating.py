"""deploy/kamailio/vipr-originating.cfg with Debian's Kamailio 5.6 and the VIPR hook (DESIGN §11):
SIPp phones → Kamailio → (hook decides) → a learned route over TLS with the ticket, or the PSTN
(SIPp) with an originating VCR from the hook's call events; a failing route falls back."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import requires_tool
from tests.deploy.kamailio_helpers import UAC, UAS, log_tail, start_kamailio, stop_kamailio, tls_cfg
from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    B_NUMBER,
    FederationPeer,
    Pki,
    ProxyProcess,
    add_route,
    finish,
    get_route,
    make_pki,
    mint_for,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.store import Store
from vipr.store.models import Vcr
from vipr.tickets import TICKET_HEADER

FR = "+33140000000"          # a learned route
FR_DOWN = "+33140000001"     # a learned route whose edge is down
DE = "+4930123456"           # no route: the PSTN
TOKEN = "kit-token-" + "7f3c9a1e5b"   # proxy.interfaces.hook.token, in the kit's HOOK_CON

pytestmark = [requires_tool("kamailio"), requires_tool("sipp")]


@dataclass
class Edge:
    pki: Pki
    vipr: ProxyProcess
    kam: asyncio.subprocess.Process
    kport: int
    pstn: int
    peer: FederationPeer
    dir: Path
    hook: int


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    pki = make_pki(tmp_path / "pki")
    peer = await FederationPeer(pki, "b.example.net", 200).start()
    hook, kport, tport, pstn = free_port(), free_port(), free_port(), free_port()
    p = write_provider(tmp_path, "a", "a.example.net", [B_NUMBER], None,
                       interfaces=(f'hook: {{listen: "127.0.0.1:{hook}", token: "{TOKEN}"}}',),
                       extra=("dialplan: {country_code: 44}",))
    ticket = await mint_for(p.db, FR, "a.example.net")
    await add_route(p.db, FR, f"sip:127.0.0.1:{peer.port};transport=tls", ticket,
                    "b.example.net")
    down = free_port()
    await add_route(p.db, FR_DOWN, f"sip:127.0.0.1:{down};transport=tls", ticket,
                    "b.example.net")
    vipr = await ProxyProcess(p).start()
    kam = await start_kamailio(tmp_path, "vipr-originating.cfg", [
        f"LISTEN=udp:127.0.0.1:{kport}", f"TLS_LISTEN=tls:127.0.0.1:{tport}",
        f'TLS_CFG="{tls_cfg(tmp_path, pki, "a.example.net")}"',
        f'HOOK_CON="vipr=>http://vipr:{TOKEN}@127.0.0.1:{hook}"',
        f'PSTN="sip:127.0.0.1:{pstn}"'])
    try:
        yield Edge(pki, vipr, kam, kport, pstn, peer, tmp_path, hook)
    finally:
        await stop_kamailio(kam)
        await peer.close()
        await vipr.stop()


async def _call(e: Edge, number: str, *, uas: bool) -> tuple[int, str]:
    server = None
    if uas:
        server = await run(sipp_cmd(UAS, e.pstn), e.dir)
        await asyncio.sleep(0.3)
    client = await run(sipp_cmd(UAC, free_port(), remote=f"127.0.0.1:{e.kport}",
                                service=number, duration_ms=200), e.dir)
    rc, err = await finish(client, 40)
    if server is not None:
        await finish(server, 10)
    return rc, err


async def _vcrs(db: Path) -> list[Vcr]:
    async with Store.open(db) as store:
        return await store.list_vcrs()


async def test_learned_route_goes_over_tls_with_the_ticket(edge: Edge) -> None:
    rc, err = await _call(edge, FR, uas=False)
    assert rc == 0, err + log_tail(edge.dir)
    [(req, src)] = [(r, s) for r, s in edge.peer.invites]
    assert src.transport == "tls"
    route = await get_route(edge.vipr.p.db, FR)
    assert route is not None and req.headers.get(TICKET_HEADER) == route.ticket
    assert str(req.request_uri).startswith(f"sip:{FR}@127.0.0.1:{edge.peer.port}")
    assert await _vcrs(edge.vipr.p.db) == []   # no PSTN leg, no VCR


async def test_no_route_goes_to_the_pstn_with_an_originating_vcr(edge: Edge) -> None:
    t0 = time.time()
    rc, err = await _call(edge, "00" + DE[1:], uas=True)   # international prefix
    assert rc == 0, err + log_tail(edge.dir)
    [v] = await _vcrs(edge.vipr.p.db)
    assert (v.direction, v.caller, v.callee, v.state) == ("originating", "+442071230000", DE,
                                                          "complete")
    assert t0 < v.start <= v.stop < time.time() and v.stop - v.start >= 0.15
    assert edge.peer.invites == []


async def test_a_route_whose_edge_is_down_falls_back_to_the_pstn(edge: Edge) -> None:
    rc, err = await _call(edge, FR_DOWN, uas=True)
    assert rc == 0, err + log_tail(edge.dir)
    [v] = await _vcrs(edge.vipr.p.db)
    assert (v.direction, v.callee) == ("originating", FR_DOWN)
    route = await get_route(edge.vipr.p.db, FR_DOWN)
    assert route is not None and route.failures == 1   # counted as on the SIP path


async def test_the_kit_sends_the_hooks_token_as_basic_credentials(edge: Edge) -> None:
    """The hook refuses a wrong bearer token, a wrong Basic user or password; the kit's route,
    result and call requests carry the configured token as the Basic credentials of its
    kept-alive httpcon connection (DESIGN §11)."""
    url = f"http://127.0.0.1:{edge.hook}/v1/route"
    body = {"caller": "+442071230000", "callee": DE, "call_id": "x"}

    def basic(userpass: str) -> str:
        return "Basic " + base64.b64encode(userpass.encode()).decode()

    async with aiohttp.ClientSession() as s:
        for auth in ("Bearer wrong", "", f"Basic {TOKEN}", basic(f"admin:{TOKEN}"),
                     basic("vipr:wrong"), basic(f"vipr:{TOKEN}x"), basic(TOKEN)):
            async with s.post(url, json=body, headers={"Authorization": auth}) as r:
                assert r.status == 401, auth
                assert "Basic" in ",".join(r.headers.getall("WWW-Authenticate"))
        for auth in (f"Bearer {TOKEN}", basic(f"vipr:{TOKEN}")):
            async with s.post(url, json=body, headers={"Authorization": auth}) as r:
                assert r.status == 200, auth
    rc, err = await _call(edge, FR_DOWN, uas=True)   # /v1/route, /v1/route/result, /v1/calls
    assert rc == 0, err + log_tail(edge.dir)
    assert len(await _vcrs(edge.vipr.p.db)) == 1
    route = await get_route(edge.vipr.p.db, FR_DOWN)
    assert route is not None and route.failures == 1
    st = await edge.vipr.status()
    assert st["counters"]["hook_route_federation_route"] == 1
    # the kit's connection stays open after its requests (kept alive, with its credentials);
    # a connection per request would be closed by now
    assert st["hook"]["connections"]["open"] >= 1
