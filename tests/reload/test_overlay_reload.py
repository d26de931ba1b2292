"""Issue 16 item 4 (overlay side): SIGHUP with changed numbers publishes the new ones and
withdraws the removed ones; a bad config is logged and the running one kept; STATUS= says
what the overlay does and RELOADING=1 / READY=1 frame the reload (sd_notify(3)). A real
`vipr overlay` process; the test waits for its log lines and notifications, not for time."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from overlay_net import make_overlay

from vipr.ipc import ipc_call

pytestmark = pytest.mark.timeout(120)

VIPR = [str(Path(sys.executable).parent / "vipr")]
OLD, KEPT, NEW = "+14085551234", "+14085551235", "+442071230001"


def wait_log(log: Path, proc: subprocess.Popen[bytes], text: str, count: int = 1,
             timeout: float = 60.0) -> str:
    """Until `text` appears `count` times in the daemon's log (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        out = log.read_text(errors="replace")
        if out.count(text) >= count:
            return out
        assert proc.poll() is None, out
        assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{out}"
        time.sleep(0.05)


def claims(sock: Path, number: str) -> list[object]:
    res = asyncio.run(ipc_call(sock, "lookup", {"number": number}, timeout=30))
    out = res["claims"]
    assert isinstance(out, list)
    return out


def notified(sock: socket.socket, want: str) -> list[str]:
    """Datagrams until one that contains `want` (bounded by the socket's timeout)."""
    seen: list[str] = []
    while not seen or want not in seen[-1]:
        seen.append(sock.recv(4096).decode())
    return seen


def test_sighup_publishes_new_numbers_and_withdraws_removed(tmp_path: Path) -> None:
    (cfg,) = make_overlay(tmp_path, [("pa", [OLD, KEPT], 1)])
    log = tmp_path / "pa.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "n.sock"))
    notify.settimeout(30)
    env = dict(os.environ, PYTHONUNBUFFERED="1", NOTIFY_SOCKET=str(tmp_path / "n.sock"))
    proc = subprocess.Popen([*VIPR, "overlay", "--config", str(cfg)], cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    sock = tmp_path / "run" / "pa" / "overlay.sock"
    try:
        assert "STATUS=joining the overlay (0 of 1 nodes joined)" in notified(notify, "READY=1")
        wait_log(log, proc, "published 2 of 2 numbers")
        notified(notify, "STATUS=joined: 1 nodes, 2 numbers published")
        assert claims(sock, OLD) and claims(sock, KEPT) and not claims(sock, NEW)

        text = cfg.read_text()
        cfg.write_text(text.replace(f'"{OLD}"', f'"{NEW}"')
                       .replace("listen: \"127.0.0.1:", "listen: \"127.0.0.2:", 1))
        proc.send_signal(signal.SIGHUP)
        seen = notified(notify, "READY=1")
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in seen), seen
        out = wait_log(log, proc, "reload done")
        assert "withdrew 1 numbers" in out
        assert "overlay.listen cannot change while overlay runs" in out
        assert claims(sock, NEW) and claims(sock, KEPT)
        assert not claims(sock, OLD)

        cfg.write_text(text + "bogus_key: 1\n")       # a bad config: logged, old one kept
        proc.send_signal(signal.SIGHUP)
        out = wait_log(log, proc, "reload failed")
        assert "bogus_key" in out and "the running configuration is kept" in out
        assert proc.poll() is None and claims(sock, NEW)
    finally:
        notify.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
