"""The pvp pauses while its store cannot be reached, and resumes (issue 15, DESIGN §12).

`StoreWatch` asks the store a trivial question (its schema version) every PROBE_INTERVAL
seconds, and at once when a validation met a store error. While the store does not answer
the pvp is paused: the server refuses new PVP connections at accept (the caller retries later
with its backoff), the client holds its validations (each runs when the store is back, none
is dropped), `vipr validate` is refused, and `status` says "paused". One log line when it
pauses, one when it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from vipr.store import Store, StoreError

__all__ = ["PROBE_INTERVAL", "StoreWatch"]

log = logging.getLogger("vipr.pvp")

PROBE_INTERVAL = 2.0   # seconds between looks at the store
PROBE_TIMEOUT = 5.0


class StoreWatch:
    def __init__(self, store: Store, *, interval: float = PROBE_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._open = asyncio.Event()
        self._open.set()
        self._probing = asyncio.Lock()
        self.since: float | None = None   # wall clock time the pause began
        self.reason = ""
        self.pauses = 0
        self.held = 0      # client validations that waited for the store
        self.refused = 0   # server connections refused while paused

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self, reason: str) -> None:
        if self.paused:
            return
        self._open.clear()
        self.since, self.reason = time.time(), reason
        self.pauses += 1
        log.warning("pvp paused: the database is unreachable (%s); validations wait and "
                    "PVP connections are refused until it answers", reason)

    def resume(self) -> None:
        if not self.paused:
            return
        took = time.time() - (self.since or time.time())
        self.since, self.reason = None, ""
        self._open.set()
        log.warning("pvp resumed: the database answers again after %.1f s", took)

    async def probe(self) -> bool:
        """Ask the store; pause or resume by the answer. True when it answered."""
        async with self._probing:
            try:
                await asyncio.wait_for(self.store.schema_version(), PROBE_TIMEOUT)
            except (StoreError, TimeoutError) as e:
                self.pause(str(e) or "no answer")
                return False
            self.resume()
            return True

    async def wait_open(self) -> None:
        """Until the store answers (probing it meanwhile, whether or not `run` is running)."""
        while self.paused:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._open.wait(), self.interval)
            if self.paused:
                await self.probe()

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)

    def status(self) -> dict[str, Any]:
        return {"state": "paused" if self.paused else "running", "paused_since": self.since,
                "reason": self.reason, "pauses": self.pauses, "held": self.held,
                "refused": self.refused}
