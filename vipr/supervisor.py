"""Child processes with systemd-style readiness, and `vipr up` (one provider's three roles).

Each child gets its own `NOTIFY_SOCKET` (an AF_UNIX datagram socket we own), so it reports
"READY=1" exactly as it would to systemd (`vipr.daemon.notify_ready`); `Child.wait_ready`
returns on that datagram, or when an optional probe (e.g. an IPC `status` call) succeeds,
and fails as soon as the process exits. Nothing here sleeps to synchronise.

`vipr up --config F` starts `vipr overlay`, `vipr pvp` and `vipr proxy` for one provider and
supervises each on its own (`Supervisor`): a role that is late or dead never stops another (the
proxy keeps PSTN fallback and admission while the overlay joins or is down). A role that exits
is restarted after a back-off (1 s doubling to 30 s, back to 1 s once it ran 60 s); one not
ready after --ready-timeout is logged and waited for. READY=1 goes to our own supervisor
(systemd) once every role is ready or at --ready-timeout, STATUS names each role's state.
SIGTERM/SIGINT at any moment stop everything (SIGTERM to the roles, SIGKILL after 10 s);
SIGHUP is forwarded to every running role (each re-reads the config, `vipr.hot_reload`); with
a systemd watchdog ($WATCHDOG_USEC) `vipr up` pings it from its own loop (the roles are not
given the watchdog variables); the roles die with us (vipr.parent_death), even on `kill -9`.
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
from dataclasses import dataclass
from pathlib import Path

import click

from vipr.parent_death import PARENT_PID_ENV

__all__ = ["ROLES", "Backoff", "Child", "ChildError", "Supervisor", "UpOptions", "register",
           "status_line", "vipr_argv"]

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
    def exited(self) -> asyncio.Event:
        """Set once the process started last has exited."""
        return self._exited

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready.clear()
        self._exited.clear()
        self._close_sock()      # a restart: the old socket's reader must go with it
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(self.notify_path))
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._on_notify)
        env = dict(os.environ if self.env is None else self.env)
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        for var in ("WATCHDOG_USEC", "WATCHDOG_PID"):   # systemd's watchdog is ours, not theirs
            env.pop(var, None)
        env[PARENT_PID_ENV] = str(os.getpid())    # vipr.parent_death: dies with us
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

    def signal(self, sig: int) -> bool:
        """Send `sig` to the running process; False when it is not running."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            return False
        return True

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


@dataclass(frozen=True)
class UpOptions:
    """Timers of `vipr up` (command-line options; the defaults suit production)."""

    ready_timeout: float = 60.0     # a role not ready by then is logged (and kept waiting for)
    restart_delay: float = 1.0      # first restart delay; doubles per exit up to restart_max
    restart_max: float = 30.0
    stable_after: float = 60.0      # a role that ran this long restarts after restart_delay again
    stop_grace: float = 10.0        # SIGTERM → SIGKILL on stop (whole stop stays under 15 s)


class Backoff:
    """Restart delays of one role: `first`, doubling up to `maximum`, back to `first` once a
    run lasted `stable_after` seconds (sans-I/O: the caller passes how long the run lasted)."""

    def __init__(self, first: float, maximum: float, stable_after: float) -> None:
        self.first = first
        self.maximum = maximum
        self.stable_after = stable_after
        self._next = first

    def delay(self, ran_for: float) -> float:
        """The delay before the next start, after a run of `ran_for` seconds."""
        if ran_for >= self.stable_after:
            self._next = self.first
        d = self._next
        self._next = min(d * 2, self.maximum)
        return d


def status_line(states: dict[str, str]) -> str:
    """The supervisor's STATUS: "3 roles running", or each role's state when one is not."""
    if states and all(s == "ready" for s in states.values()):
        n = len(states)
        return f"{n} role{'s' if n != 1 else ''} running"
    return ", ".join(f"{name} {state}" for name, state in states.items())


async def _first(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of `events` is set (or `timeout`)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Supervisor:
    """One provider's roles, each started, watched and restarted on its own: a role that
    is slow, not ready or dead never stops another (the proxy keeps PSTN fallback and
    admission while the overlay joins). `stop` ends everything (`shutdown`)."""

    def __init__(self, children: Sequence[Child], opts: UpOptions) -> None:
        from vipr.daemon import notify_status

        self.children = list(children)
        self.opts = opts
        self.stop = asyncio.Event()
        self.states = {c.name: "starting" for c in self.children}
        self._notify_status = notify_status
        self._all_ready = asyncio.Event()
        self._last_status = ""

    def _set(self, name: str, state: str) -> None:
        self.states[name] = state
        if all(s == "ready" for s in self.states.values()):
            self._all_ready.set()
        line = status_line(self.states)
        if line != self._last_status:
            self._last_status = line
            self._notify_status(line)

    async def run(self) -> None:
        """Start every role and supervise until `stop`; then stop them all."""
        from vipr.daemon import notify_ready, notify_stopping

        roles = [asyncio.create_task(self._run_role(c), name=f"role-{c.name}")
                 for c in self.children]
        announce = asyncio.create_task(self._announce_ready(notify_ready))
        await self.stop.wait()
        notify_stopping()
        log.info("stopping %s", ", ".join(c.name for c in self.children))
        announce.cancel()
        _, pending = await asyncio.wait(roles, timeout=1.0)
        for t in pending:
            t.cancel()
        await asyncio.gather(announce, *roles, return_exceptions=True)
        await self.shutdown()

    async def _announce_ready(self, notify_ready: Callable[[str | None], bool]) -> None:
        """READY=1 to our own supervisor once every role is ready, or after ready_timeout
        with the roles that are ready (systemd would otherwise fail the start and kill them
        all); STATUS says which are not."""
        await _first(self._all_ready, timeout=self.opts.ready_timeout)
        running = [f"{c.name}[{c.pid}]" for c in self.children if self.states[c.name] == "ready"]
        late = [c.name for c in self.children if self.states[c.name] != "ready"]
        if late:
            log.warning("ready with %s; not ready yet: %s",
                        ", ".join(running) or "no role", ", ".join(late))
        else:
            log.info("all roles ready: %s", ", ".join(running))
        notify_ready(status_line(self.states))

    async def _run_role(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        opts = self.opts
        backoff = Backoff(opts.restart_delay, opts.restart_max, opts.stable_after)
        while not self.stop.is_set():
            self._set(child.name, "starting")
            started = loop.time()
            try:
                await child.start()
                await self._watch(child)
            except ChildError as exc:
                log.error("%s", exc)
            except Exception as exc:   # never let one role's bug end its supervision
                log.error("supervising %s: %r", child.name, exc)
            if self.stop.is_set():
                return
            delay = backoff.delay(loop.time() - started)
            code = child.proc.returncode if child.proc is not None else None
            log.error("%s exited (status %s) after %.1f s: restarting in %.1f s", child.name,
                      code, loop.time() - started, delay)
            self._set(child.name, "restarting")
            await _first(self.stop, timeout=delay)

    async def _watch(self, child: Child) -> None:
        """Until `child` exits or we stop: note its readiness (warn when it is late)."""
        exited = child.exited
        await _first(child.ready, exited, self.stop, timeout=self.opts.ready_timeout)
        if not (child.ready.is_set() or exited.is_set() or self.stop.is_set()):
            log.warning("%s (pid %s) not ready after %.0f s%s; still waiting, the other roles "
                        "keep running", child.name, child.pid, self.opts.ready_timeout,
                        f" ({child.status})" if child.status else "")
            self._set(child.name, "not ready")
            await _first(child.ready, exited, self.stop)
        if child.ready.is_set() and not exited.is_set():
            log.info("%s ready (pid %s)", child.name, child.pid)
            self._set(child.name, "ready")
            await _first(exited, self.stop)

    async def shutdown(self) -> None:
        """SIGTERM the proxy first (calls stop before learning does), then pvp and overlay;
        SIGKILL whatever is left after stop_grace (all within stop_grace + a moment)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.stop_grace
        first = [c for c in self.children if c.name == "proxy"]
        rest = [c for c in self.children if c.name != "proxy"]
        for group in (first, rest):
            await asyncio.gather(*(c.stop(max(0.5, deadline - loop.time())) for c in group))

    def kill_now(self) -> None:
        for c in self.children:
            c.kill_now()


async def _up(config: Path, roles: Sequence[str], opts: UpOptions) -> int:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="vipr-up-") as tmp:
        children = [Child(r, [*vipr_argv(), r, "--config", str(config)], notify_dir=Path(tmp))
                    for r in roles]
        sup = Supervisor(children, opts)

        def on_stop(signum: int) -> None:
            name = signal.Signals(signum).name
            if sup.stop.is_set():
                log.warning("%s again: killing the roles now", name)
                sup.kill_now()
                return
            log.info("%s: stopping", name)
            sup.stop.set()

        def on_hup() -> None:
            sent = [f"{c.name}[{c.pid}]" for c in children if c.signal(signal.SIGHUP)]
            log.info("SIGHUP: forwarded to %s", ", ".join(sent) or "no running role")

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        from vipr.daemon import sd_notify
        from vipr.watchdog import from_environment

        ticker = from_environment(sd_notify)     # WATCHDOG=1 from this loop
        ticker.start()
        try:
            await sup.run()
        finally:
            ticker.stop()
            sup.kill_now()          # nothing outlives us, even on an unexpected error
    return 0


@click.command("up")
@click.option("--config", "-c", "config", required=True, envvar="VIPR_CONFIG",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Provider config (YAML). Env: VIPR_CONFIG.")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="Only these roles (repeatable; default: all three).")
@click.option("--ready-timeout", default=UpOptions.ready_timeout, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds after which a role that is not ready is logged (it keeps running, "
                   "the others are not affected) and READY=1 is sent with the roles that are.")
@click.option("--restart-delay", default=UpOptions.restart_delay, show_default=True,
              type=click.FloatRange(min=0.0),
              help="First delay before restarting a role that exited; doubles per exit up to "
                   f"{UpOptions.restart_max:.0f} s, back to this once a role ran "
                   f"{UpOptions.stable_after:.0f} s.")
def up_cmd(config: Path, roles: tuple[str, ...], ready_timeout: float,
           restart_delay: float) -> None:
    """Start and supervise the roles (overlay, pvp, proxy) of one provider.

    Each role is started and restarted on its own; ready (systemd Type=notify) once all are
    ready or after --ready-timeout; SIGTERM stops them all; SIGHUP is forwarded to the
    roles (each re-reads the config); the roles exit when this process dies."""
    from vipr.cliutil import load_config_or_fail
    from vipr.config import LoggingSection
    from vipr.logsetup import setup_logging

    roles = roles or ROLES
    cfg = load_config_or_fail(config, files_of=roles)  # a bad file: one line, before any role
    setup_logging(LoggingSection(level=cfg.logging.level, format=cfg.logging.format), "up")
    opts = UpOptions(ready_timeout=ready_timeout, restart_delay=restart_delay,
                     restart_max=max(UpOptions.restart_max, restart_delay))
    raise SystemExit(asyncio.run(_up(config.resolve(), roles, opts)))


def register(group: click.Group) -> None:
    group.add_command(up_cmd)
