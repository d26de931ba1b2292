"""Child processes with systemd-style readiness, and `vipr up` (one provider's three roles).

Each child gets its own `NOTIFY_SOCKET` (an AF_UNIX datagram socket we own), so it reports
"READY=1" exactly as it would to systemd (`vipr.daemon.notify_ready`); `Child.wait_ready`
returns on that datagram, or when an optional probe (e.g. an IPC `status` call) succeeds,
and fails as soon as the process exits. Nothing here sleeps to synchronise.

`vipr up --config F` starts `vipr overlay`, `vipr pvp` and `vipr proxy` for one provider,
tells its own supervisor (systemd) it is ready once all three are, restarts a role that dies
(exponential back-off, 1 s to 30 s), and stops all three on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import click

__all__ = ["ROLES", "Child", "ChildError", "register", "vipr_argv"]

log = logging.getLogger("vipr.supervisor")

ROLES = ("overlay", "pvp", "proxy")
Probe = Callable[[], Awaitable[bool]]


class ChildError(Exception):
    """A child did not start, exited early, or was not ready in time."""


def vipr_argv() -> list[str]:
    """The command line prefix that runs this installation's `vipr`."""
    return [sys.executable, "-m", "vipr"]


class Child:
    """One supervised process. `notify_dir` holds its NOTIFY_SOCKET (short path!)."""

    def __init__(self, name: str, argv: Sequence[str], *, notify_dir: Path,
                 log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.notify_path = notify_dir / f"{name}.notify"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.status = ""
        self._sock: socket.socket | None = None
        self._exited: asyncio.Event = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready.clear()
        self._exited.clear()
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(self.notify_path))
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._on_notify)
        env = dict(os.environ if self.env is None else self.env)
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out if out else None, stderr=asyncio.subprocess.STDOUT if out else None,
                start_new_session=True)
        except OSError as exc:
            self._close_sock()
            raise ChildError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        finally:
            if out:
                out.close()
        self._watcher = loop.create_task(self._watch(self.proc))

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if proc is self.proc:
            self._exited.set()

    def _on_notify(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, OSError):
                return
            for line in data.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition("=")
                if key == "READY" and value == "1":
                    self.ready.set()
                elif key == "STATUS":
                    self.status = value

    async def wait_ready(self, timeout: float, probe: Probe | None = None,
                         interval: float = 0.1) -> None:
        """Until READY=1 arrives or `probe()` is true; ChildError on exit or timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready.is_set():
            if self._exited.is_set():
                raise ChildError(f"{self.name} exited with status "
                                 f"{self.proc.returncode if self.proc else '?'} before ready")
            if probe is not None and await probe():
                self.ready.set()
                break
            left = deadline - loop.time()
            if left <= 0:
                raise ChildError(f"{self.name} not ready after {timeout:.0f} s")
            waiters = {asyncio.ensure_future(self.ready.wait()),
                       asyncio.ensure_future(self._exited.wait())}
            await asyncio.wait(waiters, timeout=min(left, interval if probe else left),
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def wait_exit(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return self.proc.returncode

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL (whole process group) after `timeout`; the exit status."""
        proc = self.proc
        try:
            if proc is None or proc.returncode is not None:
                return proc.returncode if proc else None
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing", self.name,
                            proc.pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            return proc.returncode
        finally:
            self._close_sock()

    def kill_now(self) -> None:
        """Synchronous last resort (atexit / second Ctrl-C): SIGKILL the process group."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _close_sock(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.notify_path.unlink()


# ---------------------------------------------------------------------- vipr up


async def _up(config: Path, roles: Sequence[str], ready_timeout: float) -> int:
    from vipr.daemon import notify_ready, notify_status, notify_stopping

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="vipr-up-") as tmp:
        children = [Child(r, [*vipr_argv(), r, "--config", str(config)], notify_dir=Path(tmp))
                    for r in roles]
        try:
            for c in children:
                await c.start()
            await asyncio.gather(*(c.wait_ready(ready_timeout) for c in children))
        except ChildError as exc:
            log.error("%s", exc)
            await asyncio.gather(*(c.stop() for c in reversed(children)))
            return 1
        log.info("all roles ready: %s", ", ".join(f"{c.name}[{c.pid}]" for c in children))
        notify_ready(f"{len(children)} roles running")
        backoff = dict.fromkeys(roles, 1.0)
        while not stop.is_set():
            waits = {asyncio.ensure_future(c.wait_exit()): c for c in children}
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({stopper, *waits}, return_when=asyncio.FIRST_COMPLETED)
            for w in (stopper, *waits):
                w.cancel()
            if stop.is_set():
                break
            for w in done:
                dead = waits.get(w)
                if dead is None or dead.running:
                    continue
                code = dead.proc.returncode if dead.proc else None
                delay = backoff[dead.name]
                log.error("%s exited (status %s): restarting in %.0f s", dead.name, code, delay)
                notify_status(f"{dead.name} restarting")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                backoff[dead.name] = min(delay * 2, 30.0)
                try:
                    await dead.start()
                    await dead.wait_ready(ready_timeout)
                    backoff[dead.name] = 1.0
                    notify_status(f"{len(children)} roles running")
                except ChildError as exc:
                    log.error("%s", exc)
        notify_stopping()
        log.info("stopping %s", ", ".join(c.name for c in children))
        for c in reversed(children):       # proxy first: calls stop before learning does
            await c.stop()
    return 0


@click.command("up")
@click.option("--config", "-c", "config", required=True, envvar="VIPR_CONFIG",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Provider config (YAML). Env: VIPR_CONFIG.")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="Only these roles (repeatable; default: all three).")
@click.option("--ready-timeout", default=60.0, show_default=True,
              help="Seconds each role may take to become ready.")
def up_cmd(config: Path, roles: tuple[str, ...], ready_timeout: float) -> None:
    """Start and supervise the three roles (overlay, pvp, proxy) of one provider.

    Ready (systemd Type=notify) once all are ready; a role that dies is restarted;
    SIGTERM stops them all."""
    from vipr.cliutil import load_config_or_fail
    from vipr.config import LoggingSection
    from vipr.logsetup import setup_logging

    roles = roles or ROLES
    cfg = load_config_or_fail(config, files_of=roles)  # a bad file: one line, before any role
    setup_logging(LoggingSection(level=cfg.logging.level, format=cfg.logging.format), "up")
    raise SystemExit(asyncio.run(_up(config.resolve(), roles, ready_timeout)))


def register(group: click.Group) -> None:
    group.add_command(up_cmd)
