"""`overlay.debug.capture` (issue 16 item 8): a node's decrypted RELOAD traffic as a pcap that
tshark decodes with no malformed packet, a TLS key log, and the warning while it is on."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest
from overlay_net import make_overlay
from reload_pki import Pki
from test_overlay_processes import start, vipr, wait_socket

from vipr.config import load_config
from vipr.reload.core.framing import FramingState
from vipr.reload.tools.capture import CaptureState, pcap_file_header
from vipr.reload.tools.pcap import TSHARK_KIND_UAT, sample_messages
from vipr.reload.wire.bodies import MessageCode as C

BAD = "_ws.malformed || _ws.expert.severity == error"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def _tshark(pcap: Path, *args: str) -> str:
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", TSHARK_KIND_UAT, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def _records(data: bytes) -> list[bytes]:
    out, at = [], 24
    while at < len(data):
        _, _, incl, orig = struct.unpack_from("<IIII", data, at)
        assert incl == orig
        out.append(data[at + 16 : at + 16 + incl])
        at += 16 + incl
    assert at == len(data)
    return out


def test_stream_chunks_become_one_segment_run_per_frame(pki: Pki) -> None:
    """Reads arrive in arbitrary chunks: frames are cut out of the stream, a partial one
    waits for its rest; each flow opens with a handshake."""
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    msgs = [m for _, m in sample_messages(a, b)[:4]]
    fs = FramingState(max_message_size=1 << 20)
    stream = b"".join(fs.send_data(m, 0.0) for m in msgs) + b"\x81" + b"\0" * 8  # + an ACK
    st = CaptureState()
    out = b"".join(st.feed("link", False, stream[i : i + 700], 1.0, peer="192.0.2.7")
                   for i in range(0, len(stream), 700))
    frames = _records(pcap_file_header() + out)
    payloads = [f[14 + 20 + 20 :] for f in frames]
    assert [len(p) for p in payloads[:3]] == [0, 0, 0]  # SYN, SYN-ACK, ACK
    assert frames[1][14 + 12 : 14 + 16] == bytes([192, 0, 2, 7])  # the peer's own address
    data = payloads[3:]
    assert b"".join(data) == stream  # nothing lost, nothing added
    starts = [p[0] for p in data]
    assert starts.count(0x80) == len(msgs) and data[-1] == b"\x81" + b"\0" * 8
    assert st.feed("link", False, stream[:5], 2.0) == b""  # a partial frame waits
    assert st.close("link", 3.0) and not st.knows("link")


@needs_tshark
def test_capture_records_decode_cleanly(pki: Pki, tmp_path: Path) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    fs = {True: FramingState(max_message_size=1 << 24),
          False: FramingState(max_message_size=1 << 24)}
    st = CaptureState()
    out = bytearray(pcap_file_header())
    for i, (from_a, msg) in enumerate(sample_messages(a, b)):
        frame = fs[from_a].send_data(msg, 0.0)
        _, ack = fs[not from_a].receive(frame, 0.0)
        # two links, so two flows in one file
        out += st.feed(i % 2, from_a, frame, 10.0 + i)
        out += st.feed(i % 2, not from_a, ack, 10.0 + i)
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(out)
    assert _tshark(pcap, "-Y", BAD) == ""
    codes = _tshark(pcap, "-Y", "reload", "-T", "fields", "-e", "reload.message.code")
    assert {int(c) for c in codes.split()} == {int(c) for c in C}


@needs_tshark
def test_two_node_overlay_capture_decodes_in_tshark(tmp_path: Path) -> None:
    """Acceptance (issue 16): two real `vipr overlay` processes, capture on in the first;
    tshark finds RELOAD messages (join, store, fetch) and no malformed packet; the key log
    has TLS secrets; the log warns that capture is on."""
    paths = make_overlay(tmp_path, [("pa", ["+14085551234"], 1), ("pb", ["+442071234567"], 1)])
    cap = tmp_path / "capture"
    text = paths[0].read_text()
    paths[0].write_text(text.replace("\npvp:\n", (
        f"\n  debug:\n    capture:\n      pcap: {cap / 'overlay.pcap'}\n"
        f"      keylog: {cap / 'keys.log'}\npvp:\n"), 1))
    cap.mkdir()
    assert load_config(paths[0]).overlay.debug.capture.pcap == cap / "overlay.pcap"
    assert not load_config(paths[1]).overlay.debug.capture.on  # off by default
    logs = [tmp_path / f"{p.stem}.log" for p in paths]
    procs = []
    try:
        for p, log in zip(paths, logs, strict=True):
            procs.append(start(p, log))
            wait_socket(tmp_path / "run" / p.stem / "overlay.sock", procs[-1], log)
        r = vipr("lookup", "+442071234567", "--config", str(paths[0]), "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = vipr("lookup", "+14085551234", "--config", str(paths[1]), "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    assert [p.returncode for p in procs] == [0, 0], [log.read_text()[-2000:] for log in logs]
    text = logs[0].read_text()
    assert "WARNING" in text and "debug capture is ON" in text, text
    assert "debug capture" not in logs[1].read_text()
    pcap = cap / "overlay.pcap"
    assert os.stat(pcap).st_mode & 0o077 == 0 and os.stat(cap / "keys.log").st_mode & 0o077 == 0
    assert b"CLIENT_RANDOM" in (cap / "keys.log").read_bytes() or b"TRAFFIC_SECRET" in (
        cap / "keys.log").read_bytes()
    assert _tshark(pcap, "-Y", BAD) == ""
    rows = _tshark(pcap, "-Y", "reload", "-T", "fields", "-e", "reload.message.code")
    codes = {int(c) for row in rows.split() for c in row.split(",")}
    for c in (C.ATTACH_REQ, C.ATTACH_ANS, C.JOIN_REQ, C.JOIN_ANS, C.STORE_REQ, C.STORE_ANS,
              C.FETCH_REQ, C.FETCH_ANS):
        assert int(c) in codes, (c, sorted(codes))


def test_capture_config_is_checked(tmp_path: Path) -> None:
    from vipr.config import ConfigError

    (cfg,) = make_overlay(tmp_path, [("pa", ["+14085551234"], 1)])
    text = cfg.read_text()
    cfg.write_text(text.replace("\npvp:\n", "\n  debug:\n    capture:\n      max_bytes: 10\n"
                                "      pcapp: x.pcap\npvp:\n", 1))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = "\n".join(e.value.messages)
    assert "overlay.debug.capture.max_bytes" in msg and "did you mean 'pcap'" in msg, msg


async def test_warning_repeats_while_capture_is_on(tmp_path: Path) -> None:
    """A WARNING at start and again every interval until the daemon stops; the pcap stops at
    max_bytes with a warning of its own."""
    import asyncio
    import logging

    from vipr.config.schema import DebugCapture
    from vipr.reload.aio.capture import Capture

    cap = Capture(DebugCapture(pcap=tmp_path / "c.pcap", keylog=tmp_path / "k.log",
                               max_bytes=4096))
    seen: list[str] = []
    three = asyncio.Event()

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING:
                seen.append(record.getMessage())
                if len(seen) >= 3:
                    three.set()

    log = logging.getLogger("vipr.overlay")
    h = Grab()
    log.addHandler(h)
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(cap.warn_while_on(stop, every=0.01))
        await asyncio.wait_for(three.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert all("debug capture is ON" in m and "c.pcap" in m and "k.log" in m
                   for m in seen), seen
        assert cap.pcap is not None
        seen.clear()
        cap.pcap._write(b"\0" * 5000)  # over max_bytes: stops, says so once
        cap.pcap._write(b"\0" * 10)
        assert cap.pcap.full and (tmp_path / "c.pcap").stat().st_size == 24
        assert len(seen) == 1 and "max_bytes" in seen[0], seen
    finally:
        log.removeHandler(h)
        cap.close()
