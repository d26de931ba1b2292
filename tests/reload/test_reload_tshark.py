"""Every message type we emit, framed, decodes in Wireshark's RELOAD dissector (tshark)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reload_pki import Pki

from tests.conftest import requires_tool
from vipr.reload.tools.pcap import TSHARK_KIND_UAT, sample_messages, write_frames
from vipr.reload.wire.bodies import MessageCode

BAD = "_ws.malformed || _ws.expert.severity == error"


def _tshark(pcap: Path, *args: str) -> str:
    # tcp.port 6084 is reload-framing in Wireshark's decode table (digest B.1).
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", TSHARK_KIND_UAT, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return p.stdout


@requires_tool("tshark")
def test_every_message_type_decodes_cleanly(pki: Pki, tmp_path: Path) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    msgs = sample_messages(a, b)
    pcap = tmp_path / "reload.pcap"
    write_frames(pcap, msgs)
    assert _tshark(pcap, "-Y", BAD) == ""
    rows = _tshark(pcap, "-Y", "reload-framing", "-T", "fields", "-E", "separator=;",
                   "-e", "reload_framing.type", "-e", "reload.message.code")
    data_codes, acks = [], 0
    for row in rows.splitlines():
        ftype, code = row.split(";")
        if ftype == "129":
            acks += 1
        else:
            data_codes.append(int(code))
    assert len(data_codes) == len(msgs) and acks == len(msgs)
    assert set(data_codes) == {int(c) for c in MessageCode}  # every request, answer, Error


@requires_tool("tshark")
def test_tshark_flags_a_broken_message(tmp_path: Path, pki: Pki) -> None:
    """The check can fail: a truncated body is reported as malformed/error."""
    a = pki.context(pki.node_a)
    from vipr.reload.wire.bodies import ProbeReq
    from vipr.reload.wire.forwarding import NodeDestination

    _, good = a.request(ProbeReq((1, 2)), (NodeDestination(pki.node_b.node_id),))
    body_at = good.index(bytes([0, 1, 0, 0, 0, 3, 2, 1, 2]))
    broken = good[: body_at + 6] + b"\x09" + good[body_at + 7 :]  # list length 9 > body
    pcap = tmp_path / "bad.pcap"
    write_frames(pcap, [(True, broken)])
    assert _tshark(pcap, "-Y", BAD) != ""
