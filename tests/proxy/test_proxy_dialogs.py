"""Dialog handling of the proxy: the callee hangs up (BYE upstream), CANCEL of a ringing call,
Max-Forwards exhaustion."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    ProxyProcess,
    assert_between,
    finish,
    free_port,
    kill,
    run,
    sipp_cmd,
    sipp_first,
    write_provider,
)
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest, make_cancel
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.transport import Source
from vipr.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
SCENARIOS = Path(__file__).parent / "scenarios"


@requires_tool("sipp")
async def test_callee_hangs_up_bye_goes_upstream_and_stops_the_vcr(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    gw_msgs, msgs = tmp_path / "gw_messages.log", tmp_path / "uac_messages.log"
    gw = await run(sipp_cmd(SCENARIOS / "uas_hangs_up.xml", a.gateway, calls=3,
                            message_file=gw_msgs), tmp_path)
    try:
        uac = await run(sipp_cmd(SCENARIOS / "uac_wait_bye.xml", free_port(),
                                 remote=f"127.0.0.1:{a.internal}", service=B_NUMBER, calls=3,
                                 rate=5, message_file=msgs), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
        rc, err = await finish(gw)
        assert rc == 0, err
        async with Store.open(a.db) as store:
            vcrs = await store.list_vcrs()
        assert len(vcrs) == 3
        # ordering, not timing: start when the answer passes the proxy, stop when the
        # callee's BYE does (the gateway's 400 ms pause keeps the two apart)
        answer_sent = sipp_first(gw_msgs, sent=True, line="SIP/2.0 200", method="INVITE")
        answered = sipp_first(msgs, sent=False, line="SIP/2.0 200", method="INVITE")
        bye_sent = sipp_first(gw_msgs, sent=True, line="BYE ", method="BYE")
        bye_got = sipp_first(msgs, sent=False, line="BYE ", method="BYE")
        for v in vcrs:
            assert v.caller == A_NUMBER and v.callee == B_NUMBER
            assert_between(v.start, answer_sent[v.call_id], answered[v.call_id], "start")
            assert_between(v.stop, bye_sent[v.call_id], bye_got[v.call_id], "stop")
    finally:
        await kill(gw)
        await proxy.stop()


class RingingUas:
    """Answers INVITE with 180 and never picks up; CANCEL → 200 + 487 (RFC 3261 §9.2)."""

    def __init__(self) -> None:
        self.ep: SipEndpoint | None = None
        self.cancels = 0

    async def start(self, port: int) -> None:
        self.ep = SipEndpoint(self._on_request)
        await self.ep.listen("udp", "127.0.0.1", port)

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        assert self.ep is not None
        if server is None:
            return
        if req.method == "INVITE":
            server.respond(180, to_tag="ring")
        elif req.method == "CANCEL":
            self.cancels += 1
            inv = self.ep.find_invite_server(req)
            server.respond(200 if inv is not None else 481)
            if inv is not None and inv.txn.state == "proceeding":
                inv.respond(487, to_tag="ring")
        else:
            server.respond(200)


async def test_cancel_of_a_ringing_call_reaches_the_callee_and_writes_no_vcr(
        tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    uas = RingingUas()
    await uas.start(a.gateway)
    ep = SipEndpoint(lambda *x: None)
    tr = await ep.listen("udp", "127.0.0.1", 0)
    try:
        ruri = f"sip:{B_NUMBER}@127.0.0.1:{a.internal}"
        invite = SipRequest("INVITE", ruri, Headers([
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{tr.local_port};branch={new_branch()}"),
            ("Max-Forwards", "70"), ("From", f"<sip:{A_NUMBER}@a>;tag={secrets.token_hex(4)}"),
            ("To", f"<{ruri}>"), ("Call-ID", secrets.token_hex(8)), ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:a@127.0.0.1:{tr.local_port}>")]))
        ringing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_response(r: object) -> None:
            if getattr(r, "status", 0) == 180 and not ringing.done():
                ringing.set_result(None)

        client = await ep.send_request(invite, "udp", "127.0.0.1", a.internal,
                                       on_response=on_response)
        await asyncio.wait_for(ringing, 10)
        cancel = await ep.send_request(make_cancel(invite), "udp", "127.0.0.1", a.internal)
        assert (await cancel.final(10)).status == 200
        assert (await client.final(10)).status == 487
        assert uas.cancels == 1
        st = await proxy.status()
        assert st["active_calls"] == 0 and st["vcrs"]["written"] == 0  # type: ignore[index]
    finally:
        await ep.close()
        if uas.ep is not None:
            await uas.ep.close()
        await proxy.stop()


async def test_max_forwards_zero_is_answered_483(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    ep = SipEndpoint(lambda *x: None)
    tr = await ep.listen("udp", "127.0.0.1", 0)
    try:
        ruri = f"sip:{B_NUMBER}@127.0.0.1:{a.internal}"
        invite = SipRequest("INVITE", ruri, Headers([
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{tr.local_port};branch={new_branch()}"),
            ("Max-Forwards", "0"), ("From", "<sip:x@a>;tag=1"), ("To", f"<{ruri}>"),
            ("Call-ID", secrets.token_hex(8)), ("CSeq", "1 INVITE")]))
        client = await ep.send_request(invite, "udp", "127.0.0.1", a.internal)
        assert (await client.final(10)).status == 483
    finally:
        await ep.close()
        await proxy.stop()
