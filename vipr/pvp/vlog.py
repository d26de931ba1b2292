"""The validation log writer of the pvp daemon: records are queued and written in batches
(one transaction for everything queued meanwhile, DESIGN §8 "batched bulk inserts"), so the
log costs a validation almost nothing. A batch waits `linger` seconds before it is written:
under load that gathers several validations into one transaction (each transaction costs a
hand-off to the store's thread and a few WAL pages, docs/benchmarks.md ## PVP). `flush()`
waits until everything queued is stored; `close()` flushes, so only a crash can lose the
last `linger` seconds of records."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from vipr.store import Store, StoreError, ValidationRecord

__all__ = ["ValidationLog"]

log = logging.getLogger("vipr.pvp")

LINGER = 0.05  # seconds a batch waits for more records


class ValidationLog:
    def __init__(self, store: Store, *, linger: float = LINGER) -> None:
        self.store = store
        self.linger = linger
        self._queue: list[ValidationRecord] = []
        self._wake = asyncio.Event()
        self._written = asyncio.Condition()
        self.queued = 0
        self.written = 0  # records stored (or given up on after a store error)
        self._task: asyncio.Task[None] | None = None

    def add(self, rec: ValidationRecord) -> None:
        self._queue.append(rec)
        self.queued += 1
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._queue:
            if self.linger > 0:
                await asyncio.sleep(self.linger)
            batch, self._queue = self._queue, []
            self._wake.clear()
            try:
                await self.store.log_validations(batch)
            except StoreError as e:
                log.error("cannot write %d validation records: %s", len(batch), e)
            async with self._written:
                self.written += len(batch)
                self._written.notify_all()

    async def wait_written(self, n: int, timeout: float = 30.0) -> None:
        """Wait until `n` records in all have been written."""
        async with asyncio.timeout(timeout), self._written:
            await self._written.wait_for(lambda: self.written >= n)

    async def flush(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            await self.wait_written(self.queued, timeout)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
