"""The 302 redirect mode with SIPp following the redirect (DESIGN §11, issue 14 acceptance).

SIPp (tests/deploy/uac_302.xml) calls A's `proxy.interfaces.redirect` through its outbound
proxy, a plain Kamailio relay with a TLS client side (tests/deploy/relay_tls.cfg: SIPp has no
TLS here), gets the 302 and sends a new INVITE to the first Contact with the Contact's
`?VIPR-Ticket=` as a real header. A learned route leads to B's terminating edge
(deploy/kamailio/vipr-terminating.cfg), which admits the call only with B's hook's yes; without
a route the only Contact is A's PSTN gateway, B's PSTN side here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.deploy.kamailio_helpers import log_tail, start_kamailio, stop_kamailio, tls_cfg
from tests.deploy.test_kamailio_terminating import Phone
from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    B_NUMBER,
    ProxyProcess,
    add_route,
    finish,
    make_pki,
    mint_for,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.store import Store
from vipr.tickets import TICKET_HEADER

UAC_302 = Path(__file__).with_name("uac_302.xml")
RELAY = Path(__file__).with_name("relay_tls.cfg")
DE = "+4930123456"   # no route at A: the 302 names the PSTN gateway alone

pytestmark = [requires_tool("kamailio"), requires_tool("sipp")]


@dataclass
class Net:
    a: ProxyProcess
    b: ProxyProcess
    phone: Phone
    redirect: int
    relay: int
    dir: Path
    ticket: str

    def logs(self) -> str:
        return log_tail(self.dir / "relay") + log_tail(self.dir / "kb")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    pki = make_pki(tmp_path / "pki")
    phone = await Phone().start()
    rport, hook_b = free_port(), free_port()
    relay, relay_tls, kb_pstn, kb_tls = free_port(), free_port(), free_port(), free_port()
    dp = ("dialplan: {country_code: 44}",)
    pa = write_provider(tmp_path, "a", "a.example.net", ["+14085551234"], None,
                        gateway=kb_pstn, extra=dp,
                        interfaces=(f'redirect: {{listen: "127.0.0.1:{rport}"}}',))
    pb = write_provider(tmp_path, "b", "b.example.net", [B_NUMBER], None, extra=dp,
                        interfaces=(f'hook: {{listen: "127.0.0.1:{hook_b}"}}',))
    # what PVP leaves behind: B's ticket for A's domain, A's route to B's TLS edge
    ticket = await mint_for(pb.db, B_NUMBER, "a.example.net")
    await add_route(pa.db, B_NUMBER, f"sip:127.0.0.1:{kb_tls};transport=tls", ticket,
                    "b.example.net")
    a, b = await ProxyProcess(pa).start(), await ProxyProcess(pb).start()
    kams = []
    try:
        kams.append(await start_kamailio(tmp_path / "kb", "vipr-terminating.cfg", [
            f"LISTEN=udp:127.0.0.1:{kb_pstn}", f"TLS_LISTEN=tls:127.0.0.1:{kb_tls}",
            f'TLS_CFG="{tls_cfg(tmp_path, pki, "b.example.net")}"',
            f'HOOK_CON="vipr=>http://127.0.0.1:{hook_b}"',
            f'INTERNAL="sip:127.0.0.1:{phone.port}"']))
        kams.append(await start_kamailio(tmp_path / "relay", str(RELAY), [
            f"LISTEN=udp:127.0.0.1:{relay}", f"TLS_LISTEN=tls:127.0.0.1:{relay_tls}",
            f'TLS_CFG="{tls_cfg(tmp_path, pki, "a.example.net")}"']))
        yield Net(a, b, phone, rport, relay, tmp_path, ticket)
    finally:
        for k in kams:
            await stop_kamailio(k)
        if phone.ep is not None:
            await phone.ep.close()
        await a.stop()
        await b.stop()


async def _sipp_call(n: Net, number: str) -> None:
    uac = await run(sipp_cmd(UAC_302, free_port(), remote=f"127.0.0.1:{n.relay}",
                             service=number, duration_ms=200,
                             extra=("-key", "redirect", f"127.0.0.1:{n.redirect}")), n.dir)
    rc, err = await finish(uac, 40)
    assert rc == 0, err + n.logs()


async def test_sipp_follows_the_302_and_b_admits_the_ticket(net: Net) -> None:
    assert "%" not in net.ticket   # base64url: the URI carries the header value unescaped
    await _sipp_call(net, B_NUMBER)
    [inv] = net.phone.invites
    assert inv.headers.get(TICKET_HEADER) is None                        # B's edge strips it
    assert any("SIP/2.0/TLS" in v for v in inv.headers.get_all("via"))   # relay → B over TLS
    st_a, st_b = await net.a.status(), await net.b.status()
    assert st_a["counters"]["redirect_federation_route"] == 1
    assert st_b["counters"]["admission_ok"] == 1   # only B's valid ticket admits the call
    async with Store.open(net.b.p.db) as store:
        assert await store.list_vcrs() == []        # a VIPR call, not a PSTN one


async def test_without_a_route_sipp_follows_the_302_to_the_pstn_gateway(net: Net) -> None:
    await _sipp_call(net, DE)
    [inv] = net.phone.invites
    assert inv.headers.get(TICKET_HEADER) is None
    assert not any("SIP/2.0/TLS" in v for v in inv.headers.get_all("via"))
    st_a, st_b = await net.a.status(), await net.b.status()
    assert not any(k.startswith("redirect_federation") for k in st_a["counters"])
    assert any(k.startswith("redirect_pstn") for k in st_a["counters"])
    assert "admission_ok" not in st_b["counters"]

    async def vcrs() -> list[object]:
        async with Store.open(net.b.p.db) as store:
            return list(await store.list_vcrs())
    for _ in range(50):   # the BYE's call event is committed before the BYE goes on
        if await vcrs():
            break
        await asyncio.sleep(0.1)
    [v] = await vcrs()
    assert (v.direction, v.callee) == ("terminating", DE)  # type: ignore[attr-defined]
