"""deploy/kamailio/vipr-terminating.cfg with Debian's Kamailio 5.6 and the VIPR hook (DESIGN §11):
a VIPR call over mutual TLS is admitted by the hook's ticket check and rings the phone; a forged,
missing or misdirected ticket gets 403 and the phone never rings; a call from the PSTN gateway
rings the phone and leaves a terminating VCR from the hook's call events."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.deploy.kamailio_helpers import UAC, log_tail, start_kamailio, stop_kamailio, tls_cfg
from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    Pki,
    ProxyProcess,
    federation_call,
    finish,
    make_pki,
    mint_for,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.message import SipRequest
from vipr.proxy.sip.transport import Source
from vipr.store import Store
from vipr.tickets import TICKET_HEADER

pytestmark = [requires_tool("kamailio"), requires_tool("sipp")]
TOKEN = "kit-token-" + "c41d0e8b27"   # proxy.interfaces.hook.token, in the kit's HOOK_CON


@dataclass
class Phone:
    """The provider's phone/PBX behind the edge, on our SIP core: records INVITEs, answers 200."""

    invites: list[SipRequest] = field(default_factory=list)
    ep: SipEndpoint | None = None
    port: int = 0

    async def start(self) -> Phone:
        self.ep = SipEndpoint(self._on_request)
        tr = await self.ep.listen("udp", "127.0.0.1", 0)
        self.port = tr.local_port
        return self

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:
            return
        if req.method == "INVITE":
            self.invites.append(req)
            server.respond(200, to_tag=secrets.token_hex(4),
                           headers=(("Contact", f"<sip:phone@127.0.0.1:{self.port}>"),))
        else:
            server.respond(200)


@dataclass
class Edge:
    pki: Pki
    vipr: ProxyProcess
    phone: Phone
    pstn_port: int
    tls_port: int
    dir: Path
    client: SipEndpoint


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    pki = make_pki(tmp_path / "pki")
    phone = await Phone().start()
    hook, pport, tport = free_port(), free_port(), free_port()
    p = write_provider(tmp_path, "b", "b.example.net", [B_NUMBER], None,
                       interfaces=(f'hook: {{listen: "127.0.0.1:{hook}", token: "{TOKEN}"}}',))
    vipr = await ProxyProcess(p).start()
    kam = await start_kamailio(tmp_path, "vipr-terminating.cfg", [
        f"LISTEN=udp:127.0.0.1:{pport}", f"TLS_LISTEN=tls:127.0.0.1:{tport}",
        f'TLS_CFG="{tls_cfg(tmp_path, pki, "b.example.net")}"',
        f'HOOK_CON="vipr=>http://vipr:{TOKEN}@127.0.0.1:{hook}"',
        f'INTERNAL="sip:127.0.0.1:{phone.port}"'])
    client = SipEndpoint(lambda *a: None)   # provider A's edge: TLS with a.example.net's cert
    await client.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))
    try:
        yield Edge(pki, vipr, phone, pport, tport, tmp_path, client)
    finally:
        await client.close()
        await stop_kamailio(kam)
        if phone.ep is not None:
            await phone.ep.close()
        await vipr.stop()


async def _vipr_call(e: Edge, number: str, headers: list[tuple[str, str]]) -> int:
    return await federation_call(e.client, "tls", "127.0.0.1", e.tls_port, number, headers,
                                 server_hostname="b.example.net", timeout=15)


async def test_a_valid_ticket_is_admitted_and_rings_the_phone(edge: Edge) -> None:
    ticket = await mint_for(edge.vipr.p.db, B_NUMBER, "a.example.net")
    status = await _vipr_call(edge, B_NUMBER, [(TICKET_HEADER, ticket)])
    assert status == 200, log_tail(edge.dir)
    [inv] = edge.phone.invites
    assert inv.headers.get(TICKET_HEADER) is None   # the edge strips it before the phone
    st = await edge.vipr.status()
    assert st["counters"]["admission_ok"] == 1


async def test_forged_missing_or_misdirected_tickets_get_403(edge: Edge) -> None:
    good = await mint_for(edge.vipr.p.db, B_NUMBER, "a.example.net")
    other_domain = await mint_for(edge.vipr.p.db, B_NUMBER, "c.example.org")
    other_number = await mint_for(edge.vipr.p.db, "+442071234568", "a.example.net")
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    for name, headers in {"missing": [], "forged": [(TICKET_HEADER, forged)],
                          "other domain": [(TICKET_HEADER, other_domain)],
                          "other number": [(TICKET_HEADER, other_number)],
                          "garbage": [(TICKET_HEADER, 'x"}, "admit": true, "y": "')],
                          # a ticket for another number, with that number injected as the
                          # callee field of the hook's JSON body
                          "injected": [(TICKET_HEADER, other_number
                                        + '", "callee": "+442071234568", "x": "')],
                          }.items():
        assert await _vipr_call(edge, B_NUMBER, headers) == 403, (name, log_tail(edge.dir))
    assert edge.phone.invites == []   # the phone never rang
    st = await edge.vipr.status()
    assert "admission_ok" not in st["counters"]


async def test_a_pstn_call_rings_the_phone_and_leaves_a_terminating_vcr(edge: Edge) -> None:
    t0 = time.time()
    uac = await run(sipp_cmd(UAC, free_port(), remote=f"127.0.0.1:{edge.pstn_port}",
                             service=B_NUMBER, duration_ms=200), edge.dir)
    rc, err = await finish(uac, 40)
    assert rc == 0, err + log_tail(edge.dir)
    assert len(edge.phone.invites) == 1
    async with Store.open(edge.vipr.p.db) as store:
        [v] = await store.list_vcrs()
    assert (v.direction, v.callee, v.state) == ("terminating", B_NUMBER, "complete")
    assert v.caller == "+442071230000" or v.caller == A_NUMBER or v.caller == ""
    assert t0 < v.start <= v.stop < time.time()
