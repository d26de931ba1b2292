"""Issue 16 item 5: with `logging.format: json` the proxy's routing decision, admission and
VCR lines carry call-id, numbers, peer, reason and duration as separate fields. Real
`vipr proxy` processes and SIPp; the log lines are parsed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_tool
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    Provider,
    ProxyProcess,
    add_route,
    finish,
    free_port,
    kill,
    make_pki,
    mint_for,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.ipc import ipc_call

pytestmark = [requires_tool("sipp"), pytest.mark.timeout(120)]

PSTN_NUMBER = "+33140000000"


def json_logs(p: Provider) -> None:
    p.config.write_text(p.config.read_text().replace(
        "logging: {level: info}", "logging: {level: debug, format: json}"))


def records(proxy: ProxyProcess) -> list[dict[str, Any]]:
    out = []
    for line in proxy.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))        # every log line is one JSON object
    return out


def find(recs: list[dict[str, Any]], **want: object) -> dict[str, Any]:
    for r in recs:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    raise AssertionError(f"no record with {want} in {json.dumps(recs)[-3000:]}")


async def test_json_logs_carry_call_fields(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    b = write_provider(tmp_path, "b", "b.example.org", [B_NUMBER], pki)
    json_logs(a)
    json_logs(b)
    ticket = await mint_for(b.db, B_NUMBER, "a.example.net")
    await add_route(a.db, B_NUMBER, f"sip:127.0.0.1:{b.federation};transport=tls", ticket,
                    "b.example.org")
    pa, pb = await ProxyProcess(a).start(), await ProxyProcess(b).start()
    phone_b = await run(sipp_cmd("uas", b.target, calls=1), tmp_path)
    gw = await run(sipp_cmd("uas", a.gateway, calls=1), tmp_path)
    try:
        assert await ipc_call(a.sock, "route_learned", {"number": B_NUMBER}) == {"cached": True}
        for number in (B_NUMBER, PSTN_NUMBER):     # over the route to b; to the PSTN
            uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                     service=number, calls=1, duration_ms=100), tmp_path)
            rc, err = await finish(uac)
            assert rc == 0, err + pa.log_text() + pb.log_text()
    finally:
        await kill(phone_b)
        await kill(gw)
        await pa.stop()
        await pb.stop()
    ra, rb = records(pa), records(pb)
    fed = find(ra, route="federation", callee=B_NUMBER)
    assert fed["call_id"] and fed["reason"] and fed["peer"].startswith("127.0.0.1:")
    adm = find(rb, outcome="admitted", callee=B_NUMBER)
    assert adm["call_id"] == fed["call_id"] and adm["peer"] == "a.example.net"
    assert adm["reason"] == "ok"
    pstn = find(ra, route="pstn", callee=PSTN_NUMBER)
    vcr = find(ra, direction="originating", callee=PSTN_NUMBER)
    assert vcr["call_id"] == pstn["call_id"]
    assert isinstance(vcr["duration"], float) and vcr["duration"] >= 0.1
    assert isinstance(vcr["vcr_id"], int) and "caller" in vcr   # SIPp's From is no number
    for r in ra + rb:   # the standard keys are never overwritten by a field
        assert {"ts", "level", "role", "logger", "msg"} <= r.keys()
