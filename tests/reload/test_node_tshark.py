"""What a joining node really sends and receives, decoded by Wireshark's RELOAD dissector."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from node_harness import Overlay, make_overlay

from vipr.reload.aio.link import Link
from vipr.reload.tools.pcap import PcapTap
from vipr.reload.wire.bodies import MessageCode as C

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]


class PerLinkTap:
    """One pcap per link (a pcap holds one TCP flow), one framed message per TCP segment:
    Wireshark 4.0's framing dissector flags an ACK followed by a data frame in one segment
    as malformed although the stream is fine (§6.6.2 frames are back to back on TCP)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taps: dict[int, PcapTap] = {}
        self.bufs: dict[tuple[int, bool], bytearray] = {}

    def __call__(self, link: Link, outgoing: bool, data: bytes) -> None:
        tap = self.taps.get(id(link))
        if tap is None:
            tap = self.taps[id(link)] = PcapTap(self.directory / f"link{len(self.taps)}.pcap")
        buf = self.bufs.setdefault((id(link), outgoing), bytearray())
        buf += data
        while len(buf) >= 8:
            n = 9 if buf[0] == 0x81 else 8 + int.from_bytes(buf[5:8], "big")
            if len(buf) < n:
                break
            tap(link, outgoing, bytes(buf[:n]))
            del buf[:n]

    def close(self) -> list[Path]:
        for t in self.taps.values():
            t.close()
        return sorted(self.directory.glob("link*.pcap"))


async def test_join_messages_decode_cleanly_in_tshark(tmp_path: Path) -> None:
    overlay: Overlay = make_overlay(tmp_path, 5)
    tap = PerLinkTap(tmp_path)
    try:
        await overlay.start(4)
        await overlay.converge(20)
        joiner = overlay.make_node(overlay.creds[4])
        joiner.tap = tap
        await joiner.start()
        overlay.nodes.append(joiner)
        await overlay.converge(20)
    finally:
        await overlay.stop_all()
    files = tap.close()
    assert len(files) >= 3  # bootstrap link + attached neighbors
    codes: set[int] = set()
    for f in files:
        cmd = ["tshark", "-n", "-r", str(f), "-T", "fields", "-E", "separator=;",
               "-e", "reload_framing.type", "-e", "reload.message.code", "-e", "_ws.malformed",
               "-e", "_ws.expert.severity"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [r.split(";") for r in out.splitlines() if r.strip(";")]
        bad = [r for r in rows if r[0] and (r[2] or r[3])]
        assert not bad, (f, bad)  # clean RELOAD
        codes |= {int(c) for r in rows if r[0] == "128" for c in r[1].split(",") if c}
    # the join sequence of §10.5: Attach, Update (send_update), Join, each with its answer
    for c in (C.ATTACH_REQ, C.ATTACH_ANS, C.UPDATE_REQ, C.UPDATE_ANS, C.JOIN_REQ, C.JOIN_ANS):
        assert int(c) in codes, (c, sorted(codes))
