"""`vipr up` lifecycle (issue 13 defect 5), with real processes on a real demo config:
a restarted role is seen READY again, SIGTERM works during start-up, SIGHUP is forwarded to
the roles (each reloads its config and keeps running), the roles die with the supervisor
(even on kill -9), and an overlay that cannot join never takes the proxy or pvp down. Plus
the sans-I/O pieces (back-off, status line)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vipr.ipc import ipc_call
from vipr.supervisor import Backoff, Child, status_line, vipr_argv
from vipr.testnet.workdir import Layout, make_workdir

STOP_BOUND = 15.0          # the bound for "SIGTERM stops everything"


# ---------------------------------------------------------------------- helpers


def children_of(pid: int) -> dict[str, int]:
    """Role name → pid of the live (non-zombie) children of `pid` (scans /proc)."""
    out: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != pid or fields[0] == "Z":
            continue
        role = next((a.decode() for a in argv if a in (b"overlay", b"pvp", b"proxy")), "?")
        out[role] = int(entry)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(what: str, check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def answers(sock: Path) -> bool:
    """The role's IPC socket answers `status`."""
    try:
        asyncio.run(ipc_call(sock, "status", timeout=2.0))
    except Exception:
        return False
    return True


class Up:
    """`vipr up` as a real process, its NOTIFY_SOCKET ours, its log (and the roles') a file."""

    def __init__(self, tmp: Path, config: Path, *args: str) -> None:
        self.log = tmp / "up.log"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify = tmp / "n.sock"
        self.sock.bind(str(notify))
        env = dict(os.environ, NOTIFY_SOCKET=str(notify))
        env.pop("VIPR_PARENT_PID", None)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*vipr_argv(), "up", "--config", str(config), *args],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         env=env)
        self.roles: dict[str, int] = {}
        self.messages: list[str] = []

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_notify(self, pred: Callable[[str], bool], timeout: float) -> str:
        """The first datagram (from now on) for which `pred` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no such notification in {timeout:.0f} s; got {self.messages}\n" \
                             f"{self.text()}"
            self.sock.settimeout(min(left, 1.0))
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                assert self.proc.poll() is None, f"vipr up exited\n{self.text()}"
                continue
            self.messages.append(msg)
            if pred(msg):
                return msg

    def wait_roles(self, names: set[str], timeout: float = 30.0) -> dict[str, int]:
        wait_until(f"roles {names} started", lambda: names <= set(children_of(self.proc.pid)),
                   timeout)
        self.roles = children_of(self.proc.pid)
        return self.roles

    def close(self) -> None:
        """Whatever happened: nothing of this test keeps running."""
        pids = set(self.roles.values())
        if self.proc.poll() is None:
            pids |= set(children_of(self.proc.pid).values())
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.sock.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory (AF_UNIX paths of runtime_dir and NOTIFY_SOCKET are limited)."""
    with tempfile.TemporaryDirectory(prefix="tl", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def layout(short_tmp: Path) -> Layout:
    return make_workdir(short_tmp / "w")


@pytest.fixture
def up_factory(short_tmp: Path) -> Iterator[Callable[..., Up]]:
    ups: list[Up] = []

    def make(config: Path, *args: str) -> Up:
        up = Up(short_tmp, config, *args)
        ups.append(up)
        return up

    yield make
    for up in ups:
        up.close()


def status_of(msg: str) -> str:
    return next((line[7:] for line in msg.splitlines() if line.startswith("STATUS=")), "")


# ---------------------------------------------------------------------- vipr up, real processes


def test_killed_role_comes_back_ready_each_time(layout: Layout,
                                                up_factory: Callable[..., Up]) -> None:
    up = up_factory(layout.configs["a"], "--role", "pvp", "--role", "proxy",
                    "--ready-timeout", "20", "--restart-delay", "0.2")
    up.wait_notify(lambda m: m.startswith("READY=1"), 60)
    assert status_of(up.messages[-1]) == "2 roles running"
    for _ in range(2):
        old = up.wait_roles({"pvp", "proxy"})["pvp"]
        os.kill(old, signal.SIGKILL)
        up.wait_notify(lambda m: "pvp" in status_of(m), 10)          # pvp restarting …
        up.wait_notify(lambda m: status_of(m) == "2 roles running", 20)   # … and READY again
        new = up.wait_roles({"pvp", "proxy"})["pvp"]
        assert new != old
    asyncio.run(ipc_call(layout.runtime_dir("a") / "pvp.sock", "status", timeout=5.0))
    assert "pvp ready (pid" in up.text()
    assert "not ready" not in up.text()


def test_sigterm_during_startup_stops_everything(layout: Layout,
                                                 up_factory: Callable[..., Up]) -> None:
    # B's overlay joins through A's, which is not running: start-up never completes
    up = up_factory(layout.configs["b"], "--ready-timeout", "60")
    roles = up.wait_roles({"overlay", "pvp", "proxy"})
    wait_until("proxy serving", lambda: answers(layout.runtime_dir("b") / "proxy.sock"), 60)
    t0 = time.monotonic()
    up.proc.send_signal(signal.SIGTERM)
    code = up.proc.wait(STOP_BOUND + 5)
    took = time.monotonic() - t0
    assert code == 0, up.text()
    assert took < STOP_BOUND, took
    wait_until("roles gone", lambda: not any(alive(p) for p in roles.values()), 5)
    assert "SIGTERM: stopping" in up.text()


def test_sighup_is_forwarded_to_the_roles(layout: Layout,
                                          up_factory: Callable[..., Up]) -> None:
    up = up_factory(layout.configs["a"], "--role", "pvp", "--role", "proxy",
                    "--ready-timeout", "20")
    up.wait_notify(lambda m: m.startswith("READY=1"), 60)
    roles = up.wait_roles({"pvp", "proxy"})
    up.proc.send_signal(signal.SIGHUP)
    wait_until("SIGHUP forwarded", lambda: "SIGHUP: forwarded to " in up.text(), 10)
    # both roles (their output is ours) re-read the config and went on
    wait_until("roles reloaded", lambda: up.text().count("reload done") == 2, 30)
    assert up.proc.poll() is None
    assert children_of(up.proc.pid) == roles
    asyncio.run(ipc_call(layout.runtime_dir("a") / "proxy.sock", "status", timeout=5.0))
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(STOP_BOUND + 5) == 0, up.text()
    wait_until("roles gone", lambda: not any(alive(p) for p in roles.values()), 5)


def test_roles_die_with_a_killed_supervisor(layout: Layout,
                                            up_factory: Callable[..., Up]) -> None:
    up = up_factory(layout.configs["a"], "--role", "pvp", "--role", "proxy",
                    "--ready-timeout", "20")
    up.wait_notify(lambda m: m.startswith("READY=1"), 60)
    roles = up.wait_roles({"pvp", "proxy"})
    up.proc.kill()
    up.proc.wait(10)
    wait_until(f"roles {roles} exited after kill -9 of vipr up",
               lambda: not any(alive(p) for p in roles.values()), STOP_BOUND)


def test_overlay_that_cannot_join_takes_nothing_down(layout: Layout,
                                                     up_factory: Callable[..., Up]) -> None:
    up = up_factory(layout.configs["b"], "--ready-timeout", "3")
    ready = up.wait_notify(lambda m: m.startswith("READY=1"), 60)   # at the timeout at most
    assert "overlay" in status_of(ready), ready                     # sent with overlay not ready

    def others_ready(msg: str) -> bool:
        return "proxy ready" in status_of(msg) and "pvp ready" in status_of(msg)

    # on a loaded machine proxy and pvp may still be starting at the 3 s timeout: their
    # readiness then arrives as a STATUS of its own, while the overlay still is not ready
    if not others_ready(ready):
        up.wait_notify(others_ready, 60)
    assert "overlay ready" not in status_of(up.messages[-1]), up.messages
    wait_until("overlay lateness logged", lambda: "not ready after 3 s" in up.text(), 30)
    roles = up.wait_roles({"overlay", "pvp", "proxy"})
    run = layout.runtime_dir("b")
    status = asyncio.run(ipc_call(run / "proxy.sock", "status", timeout=5.0))
    assert "internal" in status["interfaces"]
    asyncio.run(ipc_call(run / "pvp.sock", "status", timeout=5.0))
    assert up.proc.poll() is None
    assert children_of(up.proc.pid) == roles, up.text()


# ---------------------------------------------------------------------- one Child, restarted

READY_SCRIPT = """\
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1")
time.sleep(60)
"""


async def test_child_is_ready_again_after_each_restart(short_tmp: Path) -> None:
    child = Child("t", [sys.executable, "-c", READY_SCRIPT], notify_dir=short_tmp)
    try:
        for _ in range(3):
            await child.start()
            await child.wait_ready(10.0)
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            await child.wait_exit(10.0)
    finally:
        await child.stop(2.0)


# ---------------------------------------------------------------------- sans-I/O


def test_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    b = Backoff(1.0, 8.0, stable_after=60.0)
    assert [b.delay(0.5) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert b.delay(61.0) == 1.0          # it ran a minute: start over
    assert b.delay(2.0) == 2.0


def test_status_line() -> None:
    assert status_line({"overlay": "ready", "pvp": "ready", "proxy": "ready"}) == \
        "3 roles running"
    assert status_line({"pvp": "ready"}) == "1 role running"
    assert status_line({"overlay": "not ready", "proxy": "ready"}) == \
        "overlay not ready, proxy ready"


# ---------------------------------------------------------------------- a port already taken


@pytest.mark.parametrize("role", ["proxy", "pvp"])
def test_address_in_use_names_the_listener(layout: Layout, role: str) -> None:
    ports = layout.ports["a"]
    kind, port, what = ((socket.SOCK_DGRAM, ports.internal, "proxy interface internal udp")
                        if role == "proxy" else (socket.SOCK_STREAM, ports.pvp, "PVP server"))
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        done = subprocess.run([*vipr_argv(), role, "--config", str(layout.configs["a"])],
                              capture_output=True, text=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on {what} 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_local_socket_in_use_is_one_line(layout: Layout) -> None:
    path = layout.runtime_dir("a") / "proxy.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as taken:
        taken.bind(str(path))
        taken.listen()                       # "another process is serving" it
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        done = subprocess.run([*vipr_argv(), "proxy", "--config", str(layout.configs["a"])],
                              capture_output=True, text=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on the local socket: another process is serving {path}" \
        in done.stderr
    assert "Traceback" not in done.stderr
