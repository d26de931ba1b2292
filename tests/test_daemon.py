"""vipr.daemon: a real daemon process gets SIGTERM/SIGINT and talks sd_notify to our socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipr.daemon import MemoryReleaser, notify_ready, notify_status, notify_stopping, sd_notify

SCRIPT = """\
import asyncio, sys
from vipr.config import load_config
from vipr.daemon import notify_ready, run_daemon

cfg = load_config(sys.argv[1])
mode = sys.argv[2]

async def main(stop: asyncio.Event) -> None:
    if mode == "fail":
        raise RuntimeError("kaput")
    notify_ready("serving")
    await stop.wait()
    if mode == "stubborn":
        await asyncio.sleep(3600)
    print("clean stop", flush=True)

run_daemon("pvp", cfg, main, stop_timeout=float(sys.argv[3]))
"""

CONFIG = """\
provider: {name: p, domain: p.example, vservice: "00000000000000aa"}
database: db.sqlite
runtime_dir: run
logging: {level: info, format: text}
"""


@pytest.fixture
def daemon_files(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "daemon.py"
    script.write_text(SCRIPT)
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG)
    return script, config


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(15)
    yield sock, str(path)
    sock.close()


def start(
    files: tuple[Path, Path], mode: str, notify: str | None, stop_timeout: float = 10.0
) -> subprocess.Popen[str]:
    script, config = files
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify
    return subprocess.Popen(
        [sys.executable, str(script), str(config), mode, str(stop_timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def test_sigterm_after_ready_exits_zero(
    daemon_files: tuple[Path, Path], notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = start(daemon_files, "serve", path)
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    assert (daemon_files[1].parent / "run").is_dir()  # runtime_dir created before main
    proc.send_signal(signal.SIGTERM)
    assert sock.recv(4096) == b"STOPPING=1"
    code, out, err = finish(proc)
    assert code == 0, err
    assert out == "clean stop\n"
    assert " pvp vipr.daemon INFO pvp starting (config " in err
    assert "SIGTERM: stopping" in err
    assert "pvp stopped (exit 0)" in err


def test_sigint_with_abstract_notify_socket(daemon_files: tuple[Path, Path]) -> None:
    name = f"vipr-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(15)
        proc = start(daemon_files, "serve", "@" + name)
        assert sock.recv(4096).startswith(b"READY=1")
        proc.send_signal(signal.SIGINT)
        assert sock.recv(4096) == b"STOPPING=1"
        code, _, err = finish(proc)
    assert code == 0, err
    assert "SIGINT: stopping" in err


def test_main_raising_exits_one(daemon_files: tuple[Path, Path]) -> None:
    code, _, err = finish(start(daemon_files, "fail", None))
    assert code == 1
    # One line for the operator; the traceback only at log level debug (issue 13 #9).
    assert "failed: RuntimeError: kaput" in err and "Traceback" not in err
    assert "pvp stopped (exit 1)" in err


def test_second_signal_forces_exit(
    daemon_files: tuple[Path, Path], notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = start(daemon_files, "stubborn", path, stop_timeout=60)
    assert sock.recv(4096).startswith(b"READY=1")
    proc.send_signal(signal.SIGTERM)
    assert sock.recv(4096) == b"STOPPING=1"
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 1
    assert "SIGTERM again: exiting now" in err and out == ""


def test_stop_timeout_cancels_main(
    daemon_files: tuple[Path, Path], notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = start(daemon_files, "stubborn", path, stop_timeout=0.2)
    assert sock.recv(4096).startswith(b"READY=1")
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 1
    assert "did not stop within 0.2 s after the signal: cancelling" in err


def test_notify_without_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify_ready() and not notify_stopping() and not notify_status("x")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    assert not sd_notify("READY=1")  # unreachable: a warning, never an exception
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert not sd_notify("READY=1")


async def test_memory_releaser_gives_memory_back_every_n_and_after_a_burst() -> None:
    """DESIGN §10: a flood's ended handshakes are released every `every` connections, and the
    tail of a burst `settle` seconds after its last connection."""
    released = asyncio.Event()
    calls: list[int] = []

    class Counted(MemoryReleaser):
        def release(self) -> None:
            calls.append(self.ended_total)
            super().release()
            released.set()

    r = Counted(every=3, settle=0.05)
    for _ in range(3):
        r.ended()
    assert calls == [3]  # the third ended connection released at once
    released.clear()
    r.ended()  # the tail of a burst: released by the timer
    async with asyncio.timeout(10):
        await released.wait()
    assert calls == [3, 4]
