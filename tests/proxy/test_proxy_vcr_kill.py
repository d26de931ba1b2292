"""Calls answered before a kill -9 of the proxy keep their VCR (issue 13 defect 6, DESIGN §7).

A real `vipr proxy` process; the phones and the PSTN gateway run on the project's SIP core.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.proxy.call_load import Gateway, Phones, kill_under_load, stored_vcrs
from tests.proxy.proxy_helpers import A_NUMBER, B_NUMBER, ProxyProcess, write_provider

pytestmark = pytest.mark.timeout(120)
CALLS = 8
TOLERANCE = 0.25   # wall clock of the phone vs. of the proxy, same host, a loaded machine


async def test_calls_answered_before_sigkill_get_one_complete_vcr(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    gw = await Gateway(p.gateway).start()
    phones = await Phones("127.0.0.1", p.internal).start()
    try:
        calls = await asyncio.gather(*(phones.call() for _ in range(CALLS)))
        assert all(c.answered_at is not None for c in calls), proxy.log_text()
        await proxy.stop(signal.SIGKILL)     # every call is up: the dialogs die with it
        await proxy.start()
        statuses = await asyncio.gather(*(phones.hang_up(c, 10) for c in calls))
    finally:
        await phones.close()
        await gw.close()
        await proxy.stop()
    assert statuses == [200] * CALLS, proxy.log_text()   # the BYEs were routed to the gateway
    assert gw.byes == CALLS
    vcrs = await stored_vcrs(p.db)
    assert set(vcrs) == {c.call_id for c in calls}
    for c in calls:
        [v] = vcrs[c.call_id]
        assert c.answered_at is not None and c.bye_sent_at is not None
        assert (v.state, v.direction, v.callee) == ("complete", "originating", B_NUMBER)
        assert v.start <= c.answered_at and c.answered_at - v.start < TOLERANCE
        assert v.stop >= c.bye_sent_at and v.stop - c.bye_sent_at < TOLERANCE


async def test_restarted_proxy_marks_calls_without_bye_unterminated(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    text = p.config.read_text().replace(   # the BYE never comes within max_call_duration
        "  route_timeout: 1s\n", "  route_timeout: 1s\n  max_call_duration: 1s\n")
    p.config.write_text(text)
    proxy = await ProxyProcess(p).start()
    gw = await Gateway(p.gateway).start()
    phones = await Phones("127.0.0.1", p.internal).start()
    try:
        c = await phones.call()
        assert c.answered_at is not None, proxy.log_text()
        await proxy.stop(signal.SIGKILL)
        await asyncio.sleep(1.1)   # past max_call_duration: the condition under test, not sync
        await proxy.start()
        [v] = (await stored_vcrs(p.db))[c.call_id]
        assert (v.state, v.stop) == ("unterminated", v.start)   # no made-up stop time
    finally:
        await phones.close()
        await gw.close()
        await proxy.stop()


@pytest.mark.slow
async def test_five_kills_under_load_lose_no_answered_call(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    try:
        rep = await kill_under_load(p, proxy, kills=5, calls_per_round=30)
    finally:
        await proxy.stop()
    print(rep.as_dict())
    assert rep.kills == 5 and rep.calls_answered >= 50, rep
    assert rep.answered_without_vcr == 0, (rep, proxy.log_text())
    assert rep.answered_without_complete_vcr == 0, rep
