"""VCR timing against SIPp's own message timestamps, and durability under SIGKILL (DESIGN §7)."""

from __future__ import annotations

import asyncio
import signal
import time
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
    parse_sipp_messages,
    run,
    sipp_cmd,
    sipp_first,
    write_provider,
)
from vipr.store import Store
from vipr.store.models import Vcr

pytestmark = [requires_tool("sipp"), pytest.mark.slow, pytest.mark.timeout(150)]


async def _vcrs(db: Path) -> dict[str, Vcr]:
    async with Store.open(db) as store:
        return {v.call_id: v for v in await store.list_vcrs()}


async def test_vcr_start_stop_bracketed_by_sipp_messages_for_20_calls(tmp_path: Path) -> None:
    """Each VCR starts when the answer passes the proxy and stops when the BYE does: start lies
    between the gateway sending 200 and the caller receiving it, stop between the caller
    sending BYE and the gateway receiving it (SIPp's own stamps; an ordering, not a timing)."""
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    gw_msgs, msgs = tmp_path / "gw_messages.log", tmp_path / "uac_messages.log"
    gw = await run(sipp_cmd("uas", a.gateway, calls=20, message_file=gw_msgs), tmp_path)
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=20, rate=10, duration_ms=700,
                                 message_file=msgs), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
    finally:
        await kill(gw)
        await proxy.stop()
    answer_sent = sipp_first(gw_msgs, sent=True, line="SIP/2.0 200", method="INVITE")
    answered = sipp_first(msgs, sent=False, line="SIP/2.0 200", method="INVITE")
    bye_sent = sipp_first(msgs, sent=True, line="BYE ", method="BYE")
    bye_got = sipp_first(gw_msgs, sent=False, line="BYE ", method="BYE")
    vcrs = await _vcrs(a.db)
    assert len(answered) == len(bye_sent) == len(vcrs) == 20
    for cid, v in vcrs.items():
        assert v.direction == "originating" and v.callee == B_NUMBER
        assert_between(v.start, answer_sent[cid], answered[cid], f"{cid} start")
        assert_between(v.stop, bye_sent[cid], bye_got[cid], f"{cid} stop")


async def test_sigkill_mid_run_loses_no_vcr_of_a_finished_call(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=200), tmp_path)
    msgs = tmp_path / "uac_messages.log"
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=200, rate=40, duration_ms=200,
                                 message_file=msgs, extra=("-timeout", "12s")), tmp_path)
        deadline = time.monotonic() + 30
        while sum(v.state == "complete" for v in (await _vcrs(a.db)).values()) < 15:
            # mid-run: calls finished and others in flight
            assert time.monotonic() < deadline, proxy.log_text()
            await asyncio.sleep(0.05)
        await proxy.stop(signal.SIGKILL)
        await finish(uac, 60)
    finally:
        await kill(gw)
        await proxy.stop()
    finished = {m.call_id for m in parse_sipp_messages(msgs)
                if not m.sent and m.first_line.startswith("SIP/2.0 200")
                and m.cseq.endswith("BYE")}
    vcrs = await _vcrs(a.db)
    assert len(finished) >= 15
    assert len(finished) < 200   # the kill really was mid-run
    missing = finished - {cid for cid, v in vcrs.items() if v.state == "complete"}
    assert not missing, f"{len(missing)} finished calls without a complete VCR"
