"""The provider's live overlay publishers, as the store sees them (DESIGN §12).

Several overlay daemons of one provider (one per host, each with its own node certificates)
share its numbers: each registers in the provider's store (`Store.join_overlay_members`) and
looks at who is live every `POLL` seconds; `changed` is set when that list changes, and the
daemon then publishes its new share (vipr.reload.core.shares). While the store cannot answer
the last known list stays (publishing goes on from memory); with SQLite the daemon is alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from vipr.store import Store, StoreError

__all__ = ["OverlayMembers"]

log = logging.getLogger("vipr.overlay")

POLL = 2.0          # seconds between looks at the live members
FIRST_WAIT = 10.0   # the first publication waits this long for the first answer


class OverlayMembers:
    def __init__(self, database: str | Path, me: int, *, poll: float = POLL) -> None:
        self.database = database
        self.me = me
        self.poll = poll
        self.live: list[int] = [me]
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()   # the first answer came (or the store failed once)
        self._failing = False

    async def run(self, stop: asyncio.Event) -> None:
        store: Store | None = None
        try:
            while not stop.is_set():
                try:
                    if store is None:
                        store = await Store.open(self.database)
                        self.me = await store.join_overlay_members(self.me)
                    self._update(await store.overlay_members())
                    if self._failing:
                        log.info("overlay members: the store answers again")
                    self._failing = False
                except StoreError as e:
                    if not self._failing:
                        log.warning("overlay members: cannot see the provider's other overlay "
                                    "hosts (%s); publishing the last known share (%d member(s))",
                                    e, len(self.live))
                    self._failing = True
                self.ready.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
        finally:
            if store is not None:
                await store.close()   # leaves: the others take our share at their next look

    def _update(self, members: list[int]) -> None:
        live = sorted(set(members) | {self.me})
        if live != self.live:
            log.info("overlay members of this provider: %d live (this one %d, was %d)",
                     len(live), self.me, len(self.live))
            self.live = live
            self.changed.set()
