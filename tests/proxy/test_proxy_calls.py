"""Real processes: `vipr proxy` between SIPp phones, SIPp gateways and federation peers.

Outbound without a route → PSTN gateway; with a route → a second `vipr proxy` that admits the
ticket; fallback to the PSTN for each failure of a learned route (DESIGN §6)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    FederationPeer,
    ProxyProcess,
    add_route,
    finish,
    free_port,
    get_route,
    kill,
    make_pki,
    mint_for,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.ipc import ipc_call
from vipr.store import Store

pytestmark = [requires_tool("sipp"), pytest.mark.slow, pytest.mark.timeout(120)]


async def _vcrs(db: Path) -> list[tuple[str, str]]:
    async with Store.open(db) as store:
        return [(v.direction, v.callee) for v in await store.list_vcrs()]


async def test_outbound_without_route_goes_to_pstn_gateway(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=3), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=3, rate=10), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        assert (await finish(gw))[0] == 0
        assert await _vcrs(a.db) == [("originating", B_NUMBER)] * 3
        st = await proxy.status()
        assert st["counters"]["route_pstn_no-route"] == 3  # type: ignore[index]
    finally:
        await kill(gw)
        await proxy.stop()


async def test_inbound_from_pstn_goes_internal_with_terminating_vcr(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    phone = await run(sipp_cmd("uas", a.target, calls=2), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.pstn}",
                                 service=A_NUMBER, calls=2), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        assert await _vcrs(a.db) == [("terminating", A_NUMBER)] * 2
    finally:
        await kill(phone)
        await proxy.stop()


async def test_outbound_with_route_goes_to_federation_peer_and_ticket_verifies(
        tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    b = write_provider(tmp_path, "b", "b.example.org", [B_NUMBER], pki)
    ticket = await mint_for(b.db, B_NUMBER, "a.example.net")
    pa, pb = await ProxyProcess(a).start(), await ProxyProcess(b).start()
    phone_b = await run(sipp_cmd("uas", b.target, calls=2), tmp_path)
    try:
        # learned after start: the proxy picks it up on route_learned (DESIGN §7)
        await add_route(a.db, B_NUMBER, f"sip:127.0.0.1:{b.federation};transport=tls", ticket,
                        "b.example.org")
        assert await ipc_call(a.sock, "route_learned", {"number": B_NUMBER}) == {"cached": True}
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=2, rate=5), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + pa.log_text() + pb.log_text()
        sa, sb = await pa.status(), await pb.status()
        assert sa["counters"]["answered_federation"] == 2, sa  # type: ignore[index]
        assert sb["counters"]["admission_ok"] == 2, sb  # type: ignore[index]
        assert await _vcrs(a.db) == [] and await _vcrs(b.db) == []  # no PSTN leg, no VCR
    finally:
        await kill(phone_b)
        await pa.stop()
        await pb.stop()
    route = await get_route(a.db, B_NUMBER)   # last_used written (batched, at the latest on stop)
    assert route is not None and route.last_used is not None and route.failures == 0


@pytest.mark.parametrize("case", ["refused", "403", "503", "no-answer"])
async def test_learned_route_failure_falls_back_to_pstn(tmp_path: Path, case: str) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki, route_timeout="1s")
    peer = None
    if case == "refused":
        port = free_port(socket.SOCK_STREAM)   # nothing listens there
    else:
        peer = await FederationPeer(pki, "b.example.org",
                                    None if case == "no-answer" else int(case)).start()
        port = peer.port
    ticket = await mint_for(tmp_path / "b-keys.db", B_NUMBER, "a.example.net")
    await add_route(a.db, B_NUMBER, f"sip:127.0.0.1:{port};transport=tls", ticket,
                    "b.example.org")
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=1), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=1), tmp_path)
        rc, err = await finish(uac)   # bounded by SIPp's -timeout and finish()'s own bound
        assert rc == 0, err + proxy.log_text()   # the caller never notices
        if peer is not None:
            assert len(peer.invites) == 1
            assert peer.invites[0][0].headers.get("VIPR-Ticket") == ticket
        st = await proxy.status()
        cause = {"refused": "connect", "no-answer": "timeout"}.get(case, case)
        assert st["counters"][f"fallback_{cause}"] == 1, st  # type: ignore[index]
        assert st["counters"]["answered_pstn"] == 1  # type: ignore[index]
        route = await get_route(a.db, B_NUMBER)
        assert route is not None and route.failures == 1
        assert await _vcrs(a.db) == [("originating", B_NUMBER)]
    finally:
        await kill(gw)
        await proxy.stop()
        if peer is not None:
            await peer.close()


async def test_route_dropped_after_three_failures(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    ticket = await mint_for(tmp_path / "b-keys.db", B_NUMBER, "a.example.net")
    dead = free_port(socket.SOCK_STREAM)
    await add_route(a.db, B_NUMBER, f"sip:127.0.0.1:{dead};transport=tls", ticket,
                    "b.example.org")
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=4), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=4, rate=2, extra=("-l", "1")),
                        tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        st = await proxy.status()
        assert st["counters"]["fallback_connect"] == 3, st  # type: ignore[index]
        assert st["counters"]["route_pstn_no-route"] == 1  # type: ignore[index]
        assert st["cached_routes"] == []
        assert await get_route(a.db, B_NUMBER) is None
    finally:
        await kill(gw)
        await proxy.stop()


async def test_renewal_window_sends_the_call_via_pstn(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    ticket = await mint_for(tmp_path / "b-keys.db", B_NUMBER, "a.example.net")
    await add_route(a.db, B_NUMBER, "sip:127.0.0.1:9;transport=tls", ticket, "b.example.org",
                    ticket_expires=time.time() + 86400)   # 1 day left < 30 d window
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=1), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=1), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        st = await proxy.status()
        assert st["counters"]["route_pstn_renewal"] == 1, st  # type: ignore[index]
    finally:
        await kill(gw)
        await proxy.stop()


async def test_unusable_route_uri_sends_the_call_via_pstn(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    ticket = await mint_for(tmp_path / "b-keys.db", B_NUMBER, "a.example.net")
    await add_route(a.db, B_NUMBER, "sip:", ticket, "b.example.org")
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=1), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=1), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        assert await _vcrs(a.db) == [("originating", B_NUMBER)]
    finally:
        await kill(gw)
        await proxy.stop()
