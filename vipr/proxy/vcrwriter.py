"""Writes VCR changes in short batched transactions, then tells pvp (`vcr_added`) about
completed ones (DESIGN §7, §8).

`submit(change)` returns a future that is done once the change is committed (result: the VCR
id, or None). The proxy holds the 200 OK to the INVITE until the call's 'open' VCR is committed
and the 200 OK to the BYE until it is complete: a call the caller saw answered has its VCR on
disk even if the proxy is SIGKILLed right after (WAL + synchronous=NORMAL survives a process
crash). Changes are committed in submission order; the ones queued while a commit runs share
the next transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from vipr.ipc import IpcError, ipc_call
from vipr.logsetup import printable
from vipr.store import Store, StoreError
from vipr.store.models import CompleteVcr, VcrChange

log = logging.getLogger("vipr.proxy.vcr")

MAX_BATCH = 500
NOTIFY_TIMEOUT = 2.0


class VcrWriter:
    def __init__(self, store: Store, pvp_socket: Path) -> None:
        self.store = store
        self.pvp_socket = pvp_socket
        self._queue: list[tuple[VcrChange, asyncio.Future[int | None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_queue: asyncio.Queue[int] = asyncio.Queue()
        self.opened = 0
        self.written = 0
        self.failed = 0
        self.notified = 0
        self.pvp_unavailable = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._notify_task = asyncio.create_task(self._notify_loop())

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._wake.set()
            while self._queue:
                await self._flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._notify_task is not None:
            self._notify_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._notify_task

    def submit(self, change: VcrChange) -> asyncio.Future[int | None]:
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append((change, fut))
        self._wake.set()
        return fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._flush()

    async def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            ids = await self.store.apply_vcr_changes([ch for ch, _ in batch])
        except StoreError as exc:
            self.failed += len(batch)
            log.error("could not write %d VCR change(s): %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            return
        for (ch, fut), vid in zip(batch, ids, strict=True):
            if not fut.done():
                fut.set_result(vid)
            v = ch.vcr
            if vid is not None and not isinstance(ch, CompleteVcr):
                self.opened += 1
                log.debug("VCR %d opened %s %s→%s (call %s)", vid, v.direction,
                          printable(v.caller or "?"), printable(v.callee), printable(v.call_id))
            elif vid is not None:
                self.written += 1
                log.info("VCR %d %s %s→%s %.3f s (call %s)", vid, v.direction,
                         printable(v.caller or "?"), printable(v.callee), v.stop - v.start,
                         printable(v.call_id))
                self._notify_queue.put_nowait(vid)

    async def _notify_loop(self) -> None:
        while True:
            vid = await self._notify_queue.get()
            if not self.pvp_socket.exists():   # pvp not running: it reads the store later
                self.pvp_unavailable += 1
                continue
            try:
                await ipc_call(self.pvp_socket, "vcr_added", {"id": vid}, timeout=NOTIFY_TIMEOUT)
                self.notified += 1
            except IpcError as exc:
                # pvp absent: it picks pending VCRs up from the store when it starts
                self.pvp_unavailable += 1
                if self.pvp_unavailable in (1, 10, 100) or self.pvp_unavailable % 1000 == 0:
                    log.warning("vcr_added %d not delivered to %s: %s", vid, self.pvp_socket,
                                exc)
