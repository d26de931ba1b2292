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
    finish,
    free_port,
    kill,
    parse_sipp_messages,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.store import Store
from vipr.store.models import Vcr

pytestmark = [requires_tool("sipp"), pytest.mark.slow, pytest.mark.timeout(150)]
TOLERANCE = 0.050


async def _vcrs(db: Path) -> dict[str, Vcr]:
    async with Store.open(db) as store:
        return {v.call_id: v for v in await store.list_vcrs()}


async def test_vcr_start_stop_within_50ms_of_sipp_for_20_calls(tmp_path: Path) -> None:
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=20), tmp_path)
    msgs = tmp_path / "uac_messages.log"
    try:
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=20, rate=10, duration_ms=700,
                                 message_file=msgs), tmp_path)
        rc, err = await finish(uac)
        assert rc == 0, err + proxy.log_text()
    finally:
        await kill(gw)
        await proxy.stop()
    answered: dict[str, float] = {}
    bye_sent: dict[str, float] = {}
    for m in parse_sipp_messages(msgs):
        if not m.sent and m.first_line.startswith("SIP/2.0 200") and m.cseq.endswith("INVITE"):
            answered.setdefault(m.call_id, m.at)
        elif m.sent and m.first_line.startswith("BYE "):
            bye_sent.setdefault(m.call_id, m.at)
    vcrs = await _vcrs(a.db)
    assert len(answered) == len(bye_sent) == len(vcrs) == 20
    for cid, v in vcrs.items():
        assert v.direction == "originating" and v.callee == B_NUMBER
        assert abs(v.start - answered[cid]) < TOLERANCE, (cid, v.start, answered[cid])
        assert abs(v.stop - bye_sent[cid]) < TOLERANCE, (cid, v.stop, bye_sent[cid])
        assert v.stop - v.start == pytest.approx(0.7, abs=0.2)


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
