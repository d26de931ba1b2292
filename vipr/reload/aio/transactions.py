"""asyncio shell over the sans-I/O client transactions (core/transactions.py, RFC 6940 §6.2.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from vipr.reload.core.transactions import (
    MAX_TRANSMISSIONS,
    RELIABILITY_TIMER,
    ClientTransactions,
    Retransmit,
)
from vipr.reload.errors import ReloadError


class RequestTimeout(ReloadError):
    """No answer after every transmission (§6.2.1)."""


class AsyncTransactions:
    """asyncio shell over `ClientTransactions`: `await request(txid, data, send)` → answer."""

    def __init__(self, timer: float = RELIABILITY_TIMER,
                 max_transmissions: int = MAX_TRANSMISSIONS) -> None:
        self.core = ClientTransactions(timer, max_transmissions)
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._senders: dict[int, Callable[[bytes], Awaitable[None]]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def request(self, transaction_id: int, data: bytes,
                      send: Callable[[bytes], Awaitable[None]]) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        self._waiters[transaction_id] = fut
        self._senders[transaction_id] = send
        self.core.start(transaction_id, data, loop.time())
        self._ensure_task()
        self._wakeup.set()
        try:
            await send(data)
            return await fut
        finally:
            self._waiters.pop(transaction_id, None)
            self._senders.pop(transaction_id, None)
            self.core.cancel(transaction_id)

    def deliver(self, transaction_id: int, answer: bytes) -> bool:
        """Hand an answer (or error) to its waiter; False when nothing waits for this id."""
        fut = self._waiters.get(transaction_id)
        if fut is None or fut.done():
            return False
        self.core.answered(transaction_id)
        fut.set_result(answer)
        return True

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters or len(self.core):
            deadline = self.core.next_deadline()
            self._wakeup.clear()
            if deadline is not None:
                delay = max(0.0, deadline - loop.time())
                try:
                    await asyncio.wait_for(self._wakeup.wait(), delay)
                    continue
                except TimeoutError:
                    pass
            else:
                await self._wakeup.wait()
                continue
            for ev in self.core.poll(loop.time()):
                if isinstance(ev, Retransmit):
                    send = self._senders.get(ev.transaction_id)
                    if send is not None:
                        with contextlib.suppress(ConnectionError, OSError):
                            await send(ev.data)
                else:
                    fut = self._waiters.get(ev.transaction_id)
                    if fut is not None and not fut.done():
                        fut.set_exception(RequestTimeout(f"{ev.transaction_id:016x}"))

    async def close(self) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
