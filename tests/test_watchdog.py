"""systemd watchdog and STATUS= (issue 16 item 3): a real daemon process talks to a notify
socket the test binds, as systemd's would be; plus sd_watchdog_enabled(3) semantics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipr.watchdog import watchdog_interval

pytestmark = pytest.mark.timeout(60)

SCRIPT = """\
import asyncio, sys, time
from vipr.config import load_config
from vipr.daemon import notify_ready, run_daemon, sd_notify, set_status

cfg = load_config(sys.argv[1])
mode = sys.argv[2]
served = 0

async def main(stop: asyncio.Event) -> None:
    global served
    set_status(lambda: f"served {served}")
    notify_ready("serving")
    served = 3
    if mode == "stuck":
        await asyncio.sleep(0.3)
        sd_notify("STATUS=stuck now")
        time.sleep(3600)          # the event loop hangs: no more pings
    await stop.wait()

run_daemon("pvp", cfg, main)
"""

CONFIG = """\
provider: {name: p, domain: p.example, vservice: "00000000000000aa"}
database: db.sqlite
runtime_dir: run
"""


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(15)
    yield sock, str(path)
    sock.close()


def start(tmp: Path, mode: str, notify: str, **env_extra: str) -> subprocess.Popen[str]:
    (tmp / "daemon.py").write_text(SCRIPT)
    (tmp / "p.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHDOG_", "NOTIFY_"))}
    env.update(NOTIFY_SOCKET=notify, **env_extra)
    return subprocess.Popen([sys.executable, str(tmp / "daemon.py"), str(tmp / "p.yaml"), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parent.parent)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    _, err = proc.communicate(timeout=15)
    return err


def messages(sock: socket.socket, until: str, limit: int = 200) -> list[str]:
    """Datagrams until one that contains `until` (bounded by the socket timeout)."""
    out: list[str] = []
    while len(out) < limit:
        out.append(sock.recv(4096).decode())
        if until in out[-1]:
            return out
    raise AssertionError(f"no {until!r} in {out}")


def test_ready_status_and_watchdog_pings(tmp_path: Path,
                                         notify: tuple[socket.socket, str]) -> None:
    sock, path = notify
    proc = start(tmp_path, "serve", path, WATCHDOG_USEC="200000", WATCHDOG_PID=str(0))
    try:
        # WATCHDOG_PID=0 is not this process: first check the variable is honoured below
        got = messages(sock, "READY=1")
        got += messages(sock, "STATUS=served 3")
    finally:
        err = stop(proc)
    assert not any(m == "WATCHDOG=1" for m in got), got   # meant for another pid: no pings

    proc = start(tmp_path, "serve", path, WATCHDOG_USEC="200000")
    try:
        got = messages(sock, "READY=1")
        got += messages(sock, "STATUS=served 3")
        pings = [m for m in messages(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
        pings += [m for m in messages(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
    finally:
        err = stop(proc)
    assert len(pings) == 2
    assert "systemd watchdog: pinging every 0.1 s" in err


def test_a_stuck_event_loop_stops_the_pings(tmp_path: Path,
                                            notify: tuple[socket.socket, str]) -> None:
    sock, path = notify
    proc = start(tmp_path, "stuck", path, WATCHDOG_USEC="100000", WATCHDOG_PID="")
    try:
        before = messages(sock, "STATUS=stuck now")
        assert "WATCHDOG=1" in before            # it pinged while the loop ran
        sock.settimeout(1.0)                     # 20 ping intervals of 50 ms
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        assert proc.poll() is None
    finally:
        stop(proc)


def test_watchdog_interval_follows_sd_watchdog_enabled() -> None:
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
