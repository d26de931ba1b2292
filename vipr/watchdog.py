"""systemd watchdog pings and STATUS= lines, driven from the daemon's event loop.

sd_watchdog_enabled(3): the service manager sets $WATCHDOG_USEC (the `WatchdogSec=` of the
unit, in µs) and $WATCHDOG_PID (the process meant; when set and not ours, the watchdog is not
for us). We send "WATCHDOG=1" every half interval, as sd_watchdog_enabled(3) advises. The timer
runs on the asyncio loop, so a loop that is stuck (a blocking call, an endless callback)
stops the pings and systemd restarts the daemon (`Restart=on-failure`).

The same timer refreshes STATUS= (shown by `systemctl status`) from a callable the role
registers (what it is doing: joining, numbers published, validations so far); a line is sent
only when it changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping

__all__ = ["STATUS_REFRESH", "StatusTicker", "watchdog_interval"]

log = logging.getLogger("vipr.daemon")

STATUS_REFRESH = 5.0  # seconds between STATUS= checks when no watchdog asks for more often


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """The watchdog interval in seconds, or None when no watchdog is meant for `pid`
    (sd_watchdog_enabled(3): WATCHDOG_USEC unset, not a positive integer, or WATCHDOG_PID
    set to another process)."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1e6


class StatusTicker:
    """Sends WATCHDOG=1 every half watchdog interval and STATUS= when the role's status line
    changed. `send` is `vipr.daemon.sd_notify`; `status` returns the current line."""

    def __init__(self, send: Callable[[str], bool], *, watchdog: float | None,
                 refresh: float = STATUS_REFRESH) -> None:
        self.send = send
        self.watchdog = watchdog
        self.period = min(refresh, watchdog / 2) if watchdog else refresh
        self.status: Callable[[], str] | None = None
        self.pings = 0
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.watchdog:
            log.info("systemd watchdog: pinging every %.3g s (WatchdogSec=%.3g s)",
                     self.watchdog / 2, self.watchdog)
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def resend(self) -> None:
        """Send the status line now even if unchanged (another STATUS= replaced it)."""
        self._last = ""
        self.refresh()

    def refresh(self) -> None:
        """Send the status line now if it changed (e.g. right after a reload)."""
        if self.status is None:
            return
        try:
            line = self.status()
        except Exception as exc:    # a status source must never stop the watchdog
            log.debug("status line failed: %r", exc)
            return
        if line and line != self._last:
            self._last = line
            self.send(f"STATUS={line}")

    def _tick(self) -> None:
        if self.watchdog:
            self.pings += 1
            self.send("WATCHDOG=1")
        self.refresh()
        self._timer = asyncio.get_running_loop().call_later(self.period, self._tick)


def from_environment(send: Callable[[str], bool]) -> StatusTicker:
    """A ticker for this process (the watchdog from $WATCHDOG_USEC / $WATCHDOG_PID)."""
    return StatusTicker(send, watchdog=watchdog_interval(os.environ, os.getpid()))
