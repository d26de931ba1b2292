"""The demo story through two Kamailio edges on the VIPR hook (DESIGN §11, issue 14 acceptance).

Providers A and B run as the test network runs them (vipr/testnet: `vipr overlay`, `vipr pvp`,
`vipr proxy` per provider, a real overlay ring and TLS-SRP validation); each proxy serves the
hook. A's edge is deploy/kamailio/vipr-originating.cfg (SIPp as A's phone), B's edge
vipr-terminating.cfg (our SIP core as B's phone, counting INVITEs); A's PSTN gateway is B's
PSTN side. B advertises its Kamailio's TLS listener as its route. One test per step, in order,
on one network (module-scoped):

1. the first call goes over the PSTN; both VCRs come from the edges' call events;
2. A's pvp validates against B's pvp and learns the route;
3. the second call goes Kamailio A → (TLS, ticket) → Kamailio B, admitted by B's hook;
4. forged, replayed (another provider's certificate) or missing tickets get 403, no ring;
5. B's federation edge down → the call completes over the PSTN, the failure is counted."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.conftest import requires_tool
from tests.deploy.kamailio_helpers import (
    UAC,
    log_tail,
    start_kamailio,
    stop_kamailio,
    tls_cfg_files,
)
from tests.deploy.test_kamailio_terminating import Phone
from tests.ports import free_port
from tests.proxy.proxy_helpers import federation_call, finish, run, sipp_cmd
from vipr.proxy.federation_tls import CA_KEY_NAME, issue_federation_cert
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.store.models import Vcr
from vipr.testnet.network import TestNetwork
from vipr.testnet.workdir import Layout, default_providers, make_workdir
from vipr.tickets import TICKET_HEADER

pytestmark = [requires_tool("kamailio"), requires_tool("sipp"),
              pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@dataclass
class Story:
    net: TestNetwork
    lay: Layout
    phone: Phone
    number: str          # B's number that A's phone calls
    caller: str          # A's phone
    ka_port: int
    kb_defines: list[str]
    kb_tls: int
    kams: dict[str, asyncio.subprocess.Process]
    dir: Path
    uac: Path
    t0: float

    def logs(self) -> str:
        return log_tail(self.dir / "ka") + log_tail(self.dir / "kb")


def _hooked(lay: Layout, key: str, hook: int, advertise: str | None) -> None:
    """The testnet's provider config + the hook interface (+ B's edge as its advertised
    federation route) and a dialplan for what the phones send."""
    path = lay.configs[key]
    doc = yaml.safe_load(path.read_text())
    ifs = doc["proxy"]["interfaces"]
    ifs["hook"] = {"listen": f"127.0.0.1:{hook}"}
    if advertise is not None:
        ifs["federation"]["advertise"] = advertise
    doc["dialplan"] = {"country_code": "44"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def _until(what: str, check: Callable[[], Awaitable[Any]], timeout: float,
                 every: Callable[[], Awaitable[None]] | None = None) -> Any:
    """Poll `check()` until true (bounded); `every` runs each 3 s while waiting."""
    deadline = last = time.monotonic()
    deadline += timeout
    while True:
        got = await check()
        if got:
            return got
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        if every is not None and now - last > 3.0:
            last = now
            await every()
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def story(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Story]:
    root = tmp_path_factory.mktemp("kamailio-story")
    lay = make_workdir(root / "net", providers=default_providers(2)[:2])
    a, b = lay.spec("a"), lay.spec("b")
    hook_a, hook_b = free_port(), free_port()
    ka, ka_tls, kb_pstn, kb_tls = free_port(), free_port(), free_port(), free_port()
    _hooked(lay, "a", hook_a, None)
    _hooked(lay, "b", hook_b, f"sip:127.0.0.1:{kb_tls};transport=tls")
    net = TestNetwork(lay)
    phone = await Phone().start()
    kams: dict[str, asyncio.subprocess.Process] = {}
    uac = root / "uac_a.xml"   # A's phone calls from its own number
    uac.write_text(UAC.read_text().replace("sip:02071230000@", f"sip:{a.phone_number}@"))
    kb_defines = [f"LISTEN=udp:127.0.0.1:{kb_pstn}",
                  f'TLS_CFG="{tls_cfg_files(root, b.domain, *lay.tls_certs["b"], lay.tls_ca)}"',
                  f'HOOK_CON="vipr=>http://127.0.0.1:{hook_b}"',
                  f'INTERNAL="sip:127.0.0.1:{phone.port}"']
    s = Story(net, lay, phone, lay.b_number, a.phone_number, ka, kb_defines, kb_tls, kams, root,
              uac, time.time())
    try:
        await net.start()
        assert not net.failed, net.failed
        kams["a"] = await start_kamailio(root / "ka", "vipr-originating.cfg", [
            f"LISTEN=udp:127.0.0.1:{ka}", f"TLS_LISTEN=tls:127.0.0.1:{ka_tls}",
            f'TLS_CFG="{tls_cfg_files(root, a.domain, *lay.tls_certs["a"], lay.tls_ca)}"',
            f'HOOK_CON="vipr=>http://127.0.0.1:{hook_a}"', f'PSTN="sip:127.0.0.1:{kb_pstn}"'])
        kams["b"] = await start_kamailio(root / "kb", "vipr-terminating.cfg",
                                         [*kb_defines, f"TLS_LISTEN=tls:127.0.0.1:{kb_tls}"])

        async def claimed() -> Any:   # B's claim is in the overlay before call 1's VCRs
            ans = await net.ipc("a", "overlay", "lookup", {"number": s.number})
            return ans.get("claims")

        await _until("B's claim in the overlay", claimed, 30.0,
                     every=lambda: net.republish("b"))
        yield s
    finally:
        for k in kams.values():
            await stop_kamailio(k)
        if phone.ep is not None:
            await phone.ep.close()
        await net.stop()


async def _call(s: Story) -> None:
    # longer than the demo's pvp.min_duration (500 ms): shorter calls are never validated
    uac = await run(sipp_cmd(s.uac, free_port(), remote=f"127.0.0.1:{s.ka_port}",
                             service=s.number, duration_ms=800), s.dir)
    rc, err = await finish(uac, 40)
    assert rc == 0, err + s.logs()


async def _complete(s: Story, key: str, n: int) -> list[Vcr]:
    """The `n` complete VCRs of calls to B's number on `key`'s side (the BYE's event is
    committed before the BYE goes on; polled with a bound all the same)."""
    async def done() -> list[Vcr] | None:
        vs = [v for v in await s.net.vcrs(key, s.number, s.t0) if v.state == "complete"]
        return vs if len(vs) >= n else None
    vs: list[Vcr] = await _until(f"{n} VCRs on {key}'s side", done, 5.0)
    assert len(vs) == n
    return vs


async def _counters(s: Story, key: str) -> dict[str, int]:
    st = await s.net.ipc(key, "proxy", "status")
    return dict(st["counters"])


async def test_1_first_call_over_the_pstn_leaves_vcrs_from_call_events(story: Story) -> None:
    s = story
    await _call(s)
    [va], [vb] = await _complete(s, "a", 1), await _complete(s, "b", 1)
    assert (va.direction, va.caller, va.callee) == ("originating", s.caller, s.number)
    assert (vb.direction, vb.caller, vb.callee) == ("terminating", s.caller, s.number)
    assert s.t0 < va.start < va.stop and abs(va.start - vb.start) < 1.0
    [first] = s.phone.invites
    assert first.headers.get(TICKET_HEADER) is None
    assert await s.net.route("a", s.number) is None
    assert any(k.startswith("hook_route_pstn_") for k in await _counters(s, "a"))


async def test_2_pvp_validates_against_b_and_learns_the_route(story: Story) -> None:
    s = story
    route = await s.net.wait_for("A learns a route", lambda: s.net.route("a", s.number), 40.0)
    assert route.routes == (f"sip:127.0.0.1:{s.kb_tls};transport=tls",)
    assert route.ticket and route.learned_from_node   # B's ticket, from B's overlay node

    async def logged() -> list[str] | None:   # pvp writes its validation log in batches
        vals = await s.net.validations("a", s.number, s.t0)
        return [v.outcome for v in vals if v.role == "client"] or None
    assert await s.net.wait_for("A's validation log", logged, 10.0) == ["learned"]

    async def cached() -> bool:
        return s.number in (await s.net.ipc("a", "proxy", "status")).get("cached_routes", [])
    await s.net.wait_for("A's proxy caches the route", cached, 10.0)


async def test_3_second_call_goes_over_tls_with_the_ticket(story: Story) -> None:
    s = story
    before_a = await _counters(s, "a")
    await _call(s)
    assert len(s.phone.invites) == 2
    second = s.phone.invites[-1]
    assert second.headers.get(TICKET_HEADER) is None        # B's edge strips it
    assert any("SIP/2.0/TLS" in v for v in second.headers.get_all("via"))   # A → B over TLS
    ca, cb = await _counters(s, "a"), await _counters(s, "b")
    assert cb.get("admission_ok") == 1
    assert (ca.get("hook_route_federation_route", 0)
            - before_a.get("hook_route_federation_route", 0)) == 1
    await _complete(s, "a", 1)   # no PSTN leg, no new VCR
    await _complete(s, "b", 1)


async def test_4_forged_replayed_or_missing_tickets_get_403(story: Story) -> None:
    s = story
    route = await s.net.route("a", s.number)
    assert route is not None
    ticket = route.ticket
    forged = ticket[:-6] + ("AAAAAA" if not ticket.endswith("AAAAAA") else "BBBBBB")
    c_cert = issue_federation_cert(s.lay.tls_ca, s.lay.tls_dir / CA_KEY_NAME, "c.example.com",
                                   s.dir)
    eps: dict[str, SipEndpoint] = {}
    for key, (cert, key_file) in (("a", s.lay.tls_certs["a"]), ("c", c_cert)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(s.lay.tls_ca))
        ctx.load_cert_chain(str(cert), str(key_file))
        eps[key] = SipEndpoint(lambda *a: None)
        await eps[key].listen("tls", "127.0.0.1", 0, client_ssl=ctx)
    rings = len(s.phone.invites)
    try:
        for name, who, headers in (("forged", "a", [(TICKET_HEADER, forged)]),
                                   ("missing", "a", []),
                                   # A's real ticket, captured and replayed by provider C
                                   ("replayed", "c", [(TICKET_HEADER, ticket)])):
            status = await federation_call(eps[who], "tls", "127.0.0.1", s.kb_tls, s.number,
                                           headers, server_hostname=s.lay.spec("b").domain,
                                           timeout=15)
            assert status == 403, (name, s.logs())
    finally:
        for ep in eps.values():
            await ep.close()
    assert len(s.phone.invites) == rings   # the phone never rang
    assert (await _counters(s, "b")).get("admission_ok") == 1


async def test_5_b_edge_down_the_call_completes_over_the_pstn(story: Story) -> None:
    s = story
    # B's federation listener (the advertised route) is gone; its PSTN side stays up
    await stop_kamailio(s.kams["b"])
    s.kams["b"] = await start_kamailio(s.dir / "kb", "vipr-terminating.cfg",
                                       [*s.kb_defines, f"TLS_LISTEN=tls:127.0.0.1:{free_port()}"])
    rings = len(s.phone.invites)
    await _call(s)
    assert len(s.phone.invites) == rings + 1
    assert s.phone.invites[-1].headers.get(TICKET_HEADER) is None
    await _complete(s, "a", 2)
    await _complete(s, "b", 2)
    route = await s.net.route("a", s.number)
    assert route is not None and route.failures == 1   # reported by the edge, counted
