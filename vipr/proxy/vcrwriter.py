"""Writes VCR changes in short batched transactions, then tells pvp (`vcr_added`) about
completed ones (DESIGN §7, §8).

`submit(change)` returns a future that is done once the change is committed (result: the VCR
id, or None). The proxy holds the 200 OK to the INVITE until the call's 'open' VCR is committed
and the 200 OK to the BYE until it is complete: a call the caller saw answered has its VCR on
disk even if the proxy is SIGKILLed right after (WAL + synchronous=NORMAL survives a process
crash). Changes are committed in submission order; the ones queued while a commit runs share
the next transaction.

Database outage (issue 15, DESIGN §12): with a spool directory, a batch the store refuses is
appended to the on-disk spool (vipr.store.spool, fsync'd) and its futures complete then, so
calls go on; later changes queue behind it in the spool, which is replayed in order, in
batches, as soon as the store takes writes again. The spool's file work (append + fsync,
reads, the progress mark) runs on one worker thread of its own, one operation at a time and in
submission order: an fsync on a busy disk takes tens to hundreds of milliseconds, and on the
event loop it delayed every call's SIP timers (INVITE retransmissions after the callee had
answered, calls lost under 200 calls/s; tests/proxy/test_proxy_pg_outage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from vipr.ipc import IpcError, ipc_call
from vipr.logsetup import fields, printable
from vipr.store import Store, StoreError
from vipr.store.models import CompleteVcr, VcrChange
from vipr.store.spool import DEFAULT_MAX_CHANGES, VcrSpool

log = logging.getLogger("vipr.proxy.vcr")

MAX_BATCH = 500
NOTIFY_TIMEOUT = 2.0
SPOOL_RETRY = 1.0   # seconds between replay attempts while the database is away

_T = TypeVar("_T")


class VcrWriter:
    def __init__(self, store: Store, pvp_socket: Path, spool_dir: Path | None = None, *,
                 spool_max: int = DEFAULT_MAX_CHANGES) -> None:
        self.store = store
        self.pvp_socket = pvp_socket
        self.spool = VcrSpool(spool_dir, spool_max) if spool_dir is not None else None
        self._spool_thread: ThreadPoolExecutor | None = None
        self._spool_wake = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self.spooled = 0
        self.replayed = 0
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
        if self.spool is not None:
            if self.spool.pending:
                log.warning("%d VCR change(s) spooled during a database outage: replaying",
                            self.spool.pending)
                self._spool_wake.set()
            self._drain_task = asyncio.create_task(self._drain_loop())

    @property
    def spool_pending(self) -> int:
        return self.spool.pending if self.spool is not None else 0

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._wake.set()
            while self._queue:
                await self._flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in (self._drain_task, self._notify_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._spool_thread is not None:
            self._spool_thread.shutdown(wait=True)   # an append in flight finishes
            self._spool_thread = None

    async def _in_spool_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run one spool operation on the spool's own worker thread (one at a time, FIFO)."""
        if self._spool_thread is None:
            self._spool_thread = ThreadPoolExecutor(1, thread_name_prefix="vipr-vcr-spool")
        return await asyncio.get_running_loop().run_in_executor(self._spool_thread, fn, *args)

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
        if self.spool is not None and self.spool.pending:
            await self._to_spool(batch)   # behind the spooled ones: order kept
            return
        try:
            ids = await self.store.apply_vcr_changes([ch for ch, _ in batch])
        except StoreError as exc:
            if self.spool is not None:
                log.error("database unavailable (%s): spooling VCR changes in %s", exc,
                          self.spool.dir)
                await self._to_spool(batch)
                return
            self.failed += len(batch)
            log.error("could not write %d VCR change(s): %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            return
        for (ch, fut), vid in zip(batch, ids, strict=True):
            if not fut.done():
                fut.set_result(vid)
            self._written(ch, vid)

    async def _to_spool(self, batch: list[tuple[VcrChange, asyncio.Future[int | None]]]) -> None:
        """On disk before the futures complete (the answer is relayed then, as after a
        commit); beyond the spool's bound a change is lost, counted and logged."""
        assert self.spool is not None
        try:
            n = await self._in_spool_thread(self.spool.append, [ch for ch, _ in batch])
        except OSError as exc:
            log.error("cannot spool VCR changes in %s: %s", self.spool.dir, exc)
            n = 0
        self.spooled += n
        if n < len(batch):
            self.failed += len(batch) - n
            log.error("VCR spool full (%d): %d VCR change(s) lost", self.spool.max_changes,
                      len(batch) - n)
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)
        self._spool_wake.set()

    async def _drain_loop(self) -> None:
        """Replay the spool, oldest first, one transaction per batch, when the store is back."""
        assert self.spool is not None
        while True:
            await self._spool_wake.wait()
            while self.spool.pending:
                changes, end, lines = await self._in_spool_thread(self.spool.peek, MAX_BATCH)
                if not lines:
                    self.spool.pending = 0
                    break
                try:
                    ids = await self.store.apply_vcr_changes(changes) if changes else []
                except StoreError:
                    await asyncio.sleep(SPOOL_RETRY)
                    continue
                await self._in_spool_thread(self.spool.commit, end, lines)
                self.replayed += len(changes)
                for ch, vid in zip(changes, ids, strict=True):
                    self._written(ch, vid)
                if not self.spool.pending:
                    log.warning("database back: %d spooled VCR change(s) written",
                                self.replayed)
            self._spool_wake.clear()

    def _written(self, ch: VcrChange, vid: int | None) -> None:
        v = ch.vcr
        if vid is not None and not isinstance(ch, CompleteVcr):
            self.opened += 1
            log.debug("VCR %d opened %s %s→%s (call %s)", vid, v.direction,
                      printable(v.caller or "?"), printable(v.callee), printable(v.call_id))
        elif vid is not None:
            self.written += 1
            log.info("VCR %d %s %s→%s %.3f s (call %s)", vid, v.direction,
                     printable(v.caller or "?"), printable(v.callee), v.stop - v.start,
                     printable(v.call_id),
                     extra=fields(call_id=v.call_id, caller=v.caller, callee=v.callee,
                                  duration=round(v.stop - v.start, 3), direction=v.direction,
                                  vcr_id=vid))
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
