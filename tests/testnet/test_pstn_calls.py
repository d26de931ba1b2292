"""`vipr pstn` as a real process between two test phones standing in for providers' trunks."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ports import free_port
from vipr.supervisor import Child, vipr_argv
from vipr.testnet.ua import Phone

pytestmark = pytest.mark.slow

A_NUMBER, B_NUMBER = "+14085550001", "+442071230001"


@dataclass
class Net:
    pstn: Child
    a: Phone
    b: Phone
    config: Path


async def _network(tmp: Path, *, skew: str | None = None,
                   b_answer_delay: float | None = 0.0) -> Net:
    pa, pb, gw = free_port(), free_port(), free_port()
    doc: dict[str, object] = {
        "listen": f"127.0.0.1:{gw}",
        "providers": {
            "provider-a": {"trunk": f"127.0.0.1:{pa}", "numbers": ["+1408555[0000-0009]"]},
            "provider-b": {"trunk": f"127.0.0.1:{pb}", "numbers": ["+4420712[30000-30009]"]},
        },
        "answer_timeout": "5s",
    }
    if skew:
        doc["skew"] = {"provider": "provider-a", "delay": skew}
    cfg = tmp / "pstn.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    pstn = Child("pstn", [*vipr_argv(), "pstn", "--config", str(cfg), "--log-level", "debug"],
                 notify_dir=tmp, log_path=tmp / "pstn.log")
    await pstn.start()
    await pstn.wait_ready(30.0)           # READY=1 on NOTIFY_SOCKET, as under systemd
    # each phone sits where a provider's trunk would be, and sends its calls to the gateway
    a = Phone("a", A_NUMBER, "a.example.net", listen=("127.0.0.1", pa),
              outbound=("127.0.0.1", gw))
    b = Phone("b", B_NUMBER, "b.example.org", listen=("127.0.0.1", pb),
              outbound=("127.0.0.1", gw), answer_delay=b_answer_delay)
    await a.start()
    await b.start()
    return Net(pstn, a, b, cfg)


@pytest.fixture
async def tmp_short() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tn", dir="/tmp") as d:
        yield Path(d)


async def _close(net: Net) -> None:
    await net.a.close()
    await net.b.close()
    assert await net.pstn.stop(10.0) == 0, "vipr pstn must exit 0 on SIGTERM"


async def test_call_through_the_pstn_is_narrowband(tmp_short: Path) -> None:
    net = await _network(tmp_short)
    try:
        r = await net.a.call(B_NUMBER, hold=0.3, timeout=10.0)
        assert r.ok, r.as_dict()
        assert r.ringing
        assert r.offered is not None and r.offered.wideband and r.offered.video
        assert r.answer is not None
        assert r.answer.audio == ("PCMU", "PCMA") and not r.answer.video
        assert len(net.b.rings) == 1
        ring = net.b.rings[0]
        assert ring.caller == A_NUMBER and ring.callee == B_NUMBER   # caller id delivered
        assert ring.offer is not None and ring.offer.narrowband_only and not ring.offer.video
        await asyncio.wait_for(ring.ended.wait(), 10.0)             # the BYE got relayed
    finally:
        await _close(net)


async def test_callee_hangs_up_first_and_unknown_number(tmp_short: Path) -> None:
    net = await _network(tmp_short)
    try:
        r = await net.b.call(A_NUMBER, hold=0.3, timeout=10.0)     # the other direction
        assert r.ok and r.answer is not None and r.answer.narrowband_only
        r = await net.a.call("+33100000000", hold=0.1, timeout=10.0)
        assert r.status == 404 and not r.ringing
        assert len(net.b.rings) == 0
    finally:
        await _close(net)


async def test_cancel_is_relayed(tmp_short: Path) -> None:
    net = await _network(tmp_short, b_answer_delay=None)          # B rings, never answers
    try:
        r = await net.a.call(B_NUMBER, timeout=10.0, cancel_after=0.5)
        assert r.status == 487, r.as_dict()
        assert r.ringing and "CANCEL 200" in r.reason
        assert len(net.b.rings) == 1
    finally:
        await _close(net)


async def test_skew_delays_the_answer_towards_one_side(tmp_short: Path) -> None:
    net = await _network(tmp_short, skew="400ms")                 # late towards provider A
    try:
        r = await net.a.call(B_NUMBER, hold=0.1, timeout=10.0)
        assert r.ok and r.setup_time is not None
        assert r.setup_time >= 0.4                                 # the 200 OK waited
        r = await net.b.call(A_NUMBER, hold=0.1, timeout=10.0)     # A is callee: no wait
        assert r.ok
    finally:
        await _close(net)


async def test_garbage_and_sdp_less_invite_do_not_hurt(tmp_short: Path) -> None:
    net = await _network(tmp_short)
    try:
        gw = yaml.safe_load(net.config.read_text())["listen"].rsplit(":", 1)
        addr = (gw[0], int(gw[1]))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10.0)
            s.bind(("127.0.0.1", 0))
            s.sendto(b"\x00\xffnot sip at all\r\n\r\n", addr)
            port = s.getsockname()[1]
            invite = (
                f"INVITE sip:{B_NUMBER}@{gw[0]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKjunk1\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:z@y>\r\n"
                "Call-ID: junk1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
            s.sendto(invite, addr)
            statuses = []
            while not statuses or statuses[-1] < 200:
                statuses.append(int(s.recv(4096).split(b" ", 2)[1]))
            assert statuses[-1] == 488                     # nothing the PSTN can carry
        r = await net.a.call(B_NUMBER, hold=0.1, timeout=10.0)  # and it still works
        assert r.ok
    finally:
        await _close(net)
