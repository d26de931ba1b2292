"""The demo story through two Kamailio edges on the VIPR hook (DESIGN §11, issue 14 acceptance):
A's edge (vipr-originating.cfg) and B's edge (vipr-terminating.cfg), each with its own `vipr
proxy` hook; SIPp is A's phone, our SIP core B's phone; A's PSTN gateway is B's PSTN side.

1. the first call goes over the PSTN and leaves VCRs on both sides from the hooks' call events;
2. the route is learned (here written to A's store with a ticket minted by B's keys and
   announced with `route_learned`: PVP itself is tested in tests/pvp);
3. the second call goes A → (TLS, ticket) → B and is admitted by B's hook."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.deploy.kamailio_helpers import UAC, log_tail, start_kamailio, stop_kamailio, tls_cfg
from tests.deploy.test_kamailio_terminating import Phone
from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    A_NUMBER,
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
from vipr.ipc import ipc_call
from vipr.store import Store
from vipr.store.models import Vcr
from vipr.tickets import TICKET_HEADER

pytestmark = [requires_tool("kamailio"), requires_tool("sipp")]


@dataclass
class Story:
    a: ProxyProcess
    b: ProxyProcess
    phone: Phone
    ka_port: int
    kb_tls: int
    dir: Path


@pytest.fixture
async def story(tmp_path: Path) -> AsyncIterator[Story]:
    pki = make_pki(tmp_path / "pki")
    phone = await Phone().start()
    hook_a, hook_b = free_port(), free_port()
    ka, ka_tls, kb_pstn, kb_tls = free_port(), free_port(), free_port(), free_port()
    dp = ("dialplan: {country_code: 44}",)
    pa = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None, extra=dp,
                        interfaces=(f'hook: {{listen: "127.0.0.1:{hook_a}"}}',))
    pb = write_provider(tmp_path, "b", "b.example.net", [B_NUMBER], None, extra=dp,
                        interfaces=(f'hook: {{listen: "127.0.0.1:{hook_b}"}}',))
    a, b = await ProxyProcess(pa).start(), await ProxyProcess(pb).start()
    kams = [
        await start_kamailio(tmp_path / "ka", "vipr-originating.cfg", [
            f"LISTEN=udp:127.0.0.1:{ka}", f"TLS_LISTEN=tls:127.0.0.1:{ka_tls}",
            f'TLS_CFG="{tls_cfg(tmp_path, pki, "a.example.net")}"',
            f'HOOK_URL="http://127.0.0.1:{hook_a}"', f'PSTN="sip:127.0.0.1:{kb_pstn}"']),
        await start_kamailio(tmp_path / "kb", "vipr-terminating.cfg", [
            f"LISTEN=udp:127.0.0.1:{kb_pstn}", f"TLS_LISTEN=tls:127.0.0.1:{kb_tls}",
            f'TLS_CFG="{tls_cfg(tmp_path, pki, "b.example.net")}"',
            f'HOOK_URL="http://127.0.0.1:{hook_b}"',
            f'INTERNAL="sip:127.0.0.1:{phone.port}"']),
    ]
    try:
        yield Story(a, b, phone, ka, kb_tls, tmp_path)
    finally:
        for k in kams:
            await stop_kamailio(k)
        if phone.ep is not None:
            await phone.ep.close()
        await a.stop()
        await b.stop()


async def _call(s: Story) -> None:
    uac = await run(sipp_cmd(UAC, free_port(), remote=f"127.0.0.1:{s.ka_port}",
                             service=B_NUMBER, duration_ms=200), s.dir)
    rc, err = await finish(uac, 40)
    assert rc == 0, err + log_tail(s.dir / "ka") + log_tail(s.dir / "kb")


async def _vcrs(p: ProxyProcess) -> list[Vcr]:
    async with Store.open(p.p.db) as store:
        return await store.list_vcrs()


async def test_pstn_first_then_vipr_with_a_ticket(story: Story) -> None:
    s = story
    t0 = time.time()
    # 1. no route yet: over the PSTN, a VCR on each side (hook call events)
    await _call(s)
    [va], [vb] = await _vcrs(s.a), await _vcrs(s.b)
    assert (va.direction, va.callee, va.caller) == ("originating", B_NUMBER, "+442071230000")
    assert (vb.direction, vb.callee, vb.caller) == ("terminating", B_NUMBER, "+442071230000")
    assert va.state == vb.state == "complete"
    assert t0 < va.start and t0 < vb.start and abs(va.start - vb.start) < 1.0
    [first] = s.phone.invites
    assert first.headers.get(TICKET_HEADER) is None
    # 2. the route, as PVP would store it: B's ticket for A's domain, B's TLS edge
    ticket = await mint_for(s.b.p.db, B_NUMBER, "a.example.net")
    await add_route(s.a.p.db, B_NUMBER, f"sip:127.0.0.1:{s.kb_tls};transport=tls", ticket,
                    "b.example.net")
    await ipc_call(s.a.p.sock, "route_learned", {"number": B_NUMBER}, timeout=5)
    # 3. the second call: A's edge → TLS + ticket → B's edge, admitted by B's hook
    await _call(s)
    assert len(s.phone.invites) == 2
    st_b = await s.b.status()
    assert st_b["counters"]["admission_ok"] == 1
    st_a = await s.a.status()
    assert st_a["counters"]["hook_route_federation_route"] == 1
    assert len(await _vcrs(s.a)) == 1 and len(await _vcrs(s.b)) == 1   # no PSTN, no VCR
