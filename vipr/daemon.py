"""Daemon runtime shared by every role: logging, signals, systemd notification.

`run_daemon(role, cfg, main)` sets up logging, creates `runtime_dir` (0700, vipr.private_files;
private keys that others can read are reported), and runs
`await main(stop)` under asyncio. SIGTERM and SIGINT set `stop` (and tell systemd
STOPPING=1); `main` then finishes its work and returns. SIGHUP re-reads the config
(`vipr.hot_reload`): `main` registers what applies it with `on_reload(fn)`; a bad config is
logged and the running one kept. `set_status(fn)` registers the role's STATUS= line, sent by
the watchdog timer (`vipr.watchdog`: WATCHDOG=1 every half $WATCHDOG_USEC). A listener
that cannot bind (`ListenError`) is logged as one line naming it.
`main` calls `notify_ready()` once its sockets are bound (systemd `Type=notify` waits for
that). A clean stop exits 0; `main` raising, or not returning within `stop_timeout` after
the stop, or a second signal, exit 1.

The notification protocol is sd_notify(3): one datagram "READY=1" etc. to the AF_UNIX socket
named by $NOTIFY_SOCKET ("@" = Linux abstract namespace). No dependency on libsystemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from vipr.cliutil import one_line_error
from vipr.config import ProviderConfig
from vipr.hot_reload import Reloader, reload_config
from vipr.ipc import IpcError
from vipr.listen_error import ListenError
from vipr.logsetup import setup_logging
from vipr.metrics import with_metrics
from vipr.private_files import private_dir, warn_if_exposed
from vipr.watchdog import StatusTicker, from_environment

__all__ = [
    "MemoryReleaser", "notify_ready", "notify_status", "notify_stopping", "on_reload",
    "release_memory", "run_daemon", "sd_notify", "set_status", "status_changed", "tune_gc",
]

log = logging.getLogger("vipr.daemon")

Main = Callable[[asyncio.Event], Awaitable[None]]

# Cyclic GC under load: 10-25 % of the proxy's CPU at 300 calls/s, and each full collection
# (~0.1 s in the proxy: modules, TLS, config; ~20 ms in pvp) stalls all work in flight.
# Objects alive after start-up are frozen (never scanned again) and young collections run less
# often; garbage cycles (futures, callbacks) are still collected.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Freeze the start-up heap and raise the collection thresholds (see GC_THRESHOLDS). Call
    once a daemon has started, before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def release_memory() -> None:
    """After a burst of closed connections (a flood that the caps turned away): collect the
    garbage cycles now rather than at the tuned, rare thresholds, and hand the freed heap
    back to the system (glibc `malloc_trim`; a no-op elsewhere). DESIGN §10: RSS returns
    close to its start-up size once a flood is over."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class MemoryReleaser:
    """`release_memory()` once every `every` ended connections, and `settle` seconds after the
    last of a burst: a listener under a flood of refused or failed handshakes gives their memory
    back while the flood goes on and once it is over (DESIGN §10)."""

    def __init__(self, every: int = 256, settle: float = 2.0) -> None:
        self.every = every
        self.settle = settle
        self.ended_total = 0
        self._since = 0
        self._timer: asyncio.TimerHandle | None = None

    def ended(self) -> None:
        """Count one ended connection (call on the event loop)."""
        self.ended_total += 1
        self._since += 1
        if self._since >= self.every:
            self.release()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.settle, self.release)

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._since = 0
        release_memory()


def sd_notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET; False when unset or unreachable."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    elif not addr.startswith("/"):
        log.warning("NOTIFY_SOCKET %r: only AF_UNIX paths are supported", addr)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("cannot notify systemd at %r: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def notify_ready(status: str | None = None) -> bool:
    """Tell systemd the daemon is serving (call once the sockets are bound)."""
    _Hooks.ready = True
    sent = sd_notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
    if status and _Hooks.ticker is not None:
        _Hooks.ticker.resend()      # the role's own line replaces `status` at once
    return sent


def notify_stopping() -> bool:
    """Tell systemd the daemon is shutting down."""
    return sd_notify("STOPPING=1")


def notify_status(status: str) -> bool:
    """A one-line status shown by `systemctl status`."""
    return sd_notify(f"STATUS={status}")


class _Hooks:
    """What the running role registered (one role per process)."""

    reloader: Reloader | None = None
    ready = False
    ticker: StatusTicker | None = None
    status: Callable[[], str] | None = None


def on_reload(fn: Reloader) -> None:
    """`await fn(new_cfg)` on SIGHUP, with the re-read config (the keys that cannot change
    live already set back, `vipr.hot_reload`). Raising keeps the running config."""
    _Hooks.reloader = fn


def set_status(fn: Callable[[], str]) -> None:
    """The role's STATUS= line (what it is doing); sent whenever it changes."""
    _Hooks.status = fn
    if _Hooks.ticker is not None:
        _Hooks.ticker.status = fn
        _Hooks.ticker.refresh()


def status_changed() -> None:
    """Send the role's STATUS= line now (if it changed) rather than at the next tick."""
    if _Hooks.ticker is not None:
        _Hooks.ticker.refresh()


def private_key_files(cfg: ProviderConfig) -> list[tuple[str, Path]]:
    """(what, path) of every private key the config names (checked for exposure at start)."""
    keys: list[tuple[str, Path]] = []
    if cfg.overlay.key is not None:
        keys.append(("overlay key", cfg.overlay.key))
    ifaces = cfg.proxy.interfaces
    for name, iface in (("internal", ifaces.internal), ("pstn", ifaces.pstn),
                        ("federation", ifaces.federation)):
        if iface is not None and iface.tls is not None:
            keys.append((f"TLS key of interface {name}", iface.tls.key))
    return keys


def run_daemon(role: str, cfg: ProviderConfig, main: Main, *, stop_timeout: float = 10.0) -> None:
    """Run `main(stop)` until it returns; raise SystemExit(1) on failure (see module doc)."""
    setup_logging(cfg.logging, role)
    extra = {"provider": cfg.provider.name, "pid": os.getpid()}
    try:
        private_dir(cfg.runtime_dir)
    except OSError as exc:
        log.error("cannot create runtime_dir %s: %s", cfg.runtime_dir, exc, extra=extra)
        raise SystemExit(1) from None
    for what, key in private_key_files(cfg):
        warn_if_exposed(key, what)
    log.info("%s starting (config %s)", role, cfg.path, extra=extra)
    code = asyncio.run(_supervise(with_metrics(role, cfg, main), stop_timeout, role, cfg))
    log.info("%s stopped (exit %d)", role, code, extra=extra)
    logging.shutdown()
    if code:
        raise SystemExit(code)


async def _supervise(main: Main, stop_timeout: float, role: str, cfg: ProviderConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _Hooks.reloader = _Hooks.status = None      # registered anew by this `main`
    _Hooks.ready = False
    ticker = _Hooks.ticker = from_environment(sd_notify)
    ticker.start()
    task: asyncio.Task[None] = asyncio.ensure_future(main(stop))
    forced = False
    running = cfg
    reloading: asyncio.Task[None] | None = None

    def on_signal(signum: int) -> None:
        nonlocal forced
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting now", name)
            forced = True
            task.cancel()
            return
        log.info("%s: stopping", name)
        notify_stopping()
        stop.set()

    async def reload() -> None:
        nonlocal running
        # sd_notify(3): RELOADING=1 (with the monotonic time) ... READY=1 once done
        was_ready = _Hooks.ready
        if was_ready:
            now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            sd_notify(f"RELOADING=1\nMONOTONIC_USEC={now_us}")
        try:
            before = running.logging
            running = await reload_config(role, running, _Hooks.reloader)
            if running.logging != before:
                setup_logging(running.logging, role)
        finally:
            if was_ready:
                sd_notify("READY=1")
            ticker.refresh()

    def on_hup() -> None:
        nonlocal reloading
        if stop.is_set():
            return
        if reloading is not None and not reloading.done():
            log.warning("SIGHUP: a reload is still running; ignored")
            return
        reloading = loop.create_task(reload())

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in signals[:2]:
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=stop_timeout)
            if not done:
                log.error("did not stop within %.3g s after the signal: cancelling", stop_timeout)
                forced = True
                task.cancel()
                await asyncio.wait({task}, timeout=stop_timeout)
        if not task.done() or task.cancelled():
            return 1
        exc = task.exception()
        if isinstance(exc, ListenError):
            log.error("%s", exc)            # one line: which listener, which address
            return 1
        if isinstance(exc, IpcError) and exc.code == "address-in-use":
            log.error("cannot listen on the local socket: %s", exc.message)
            return 1
        if exc is not None:
            # One line for the operator (it may be their terminal under `vipr up`); the
            # traceback only at debug level, for a bug report.
            log.error("failed: %s", one_line_error(exc))
            log.debug("failure traceback", exc_info=exc)
            return 1
        if not stop.is_set():
            notify_stopping()
        return 1 if forced else 0
    finally:
        ticker.stop()
        _Hooks.ticker = None
        if reloading is not None and not reloading.done():
            reloading.cancel()
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
