"""End-to-end transactions (RFC 6940 §6.2.1, §6.2.2): sans-I/O core plus a thin asyncio shell.

Client side: the originator retransmits a request with the same transaction id every
overlay-reliability-timer (3 s) up to 5 transmissions, then fails it. Server side: answers are
cached by transaction id so a retransmission within the maximum request lifetime (15 s) gets the
identical answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from vipr.reload.forwarding import Destination, ForwardingHeader, NodeDestination

RELIABILITY_TIMER = 3.0  # §11.1 overlay-reliability-timer default (3000 ms)
MAX_TRANSMISSIONS = 5  # §6.2.1
MAX_REQUEST_LIFETIME = 15.0  # §6.2.2


def response_destinations(request: ForwardingHeader,
                          previous_hop: bytes | None = None) -> tuple[Destination, ...]:
    """§6.3.2.1/§6.2.2: a response's destination list is the request's via list reversed,
    preceded by the node the request arrived from (which pops itself on receipt)."""
    dests = list(reversed(request.via_list))
    if previous_hop is not None:
        dests.insert(0, NodeDestination(previous_hop))
    return tuple(dests)


@dataclass(frozen=True, slots=True)
class Retransmit:
    """Send `data` again (same transaction id)."""

    transaction_id: int
    data: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The request got no answer after the last transmission's timer."""

    transaction_id: int


@dataclass(slots=True)
class _Pending:
    data: bytes
    sent: int
    deadline: float


@dataclass
class ClientTransactions:
    """Sans-I/O retransmission state; the caller sends the first copy itself."""

    timer: float = RELIABILITY_TIMER
    max_transmissions: int = MAX_TRANSMISSIONS
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _heap: list[tuple[float, int]] = field(default_factory=list)

    def start(self, transaction_id: int, data: bytes, now: float) -> None:
        if transaction_id in self._pending:
            raise ValueError("transaction id already pending")
        p = _Pending(data, 1, now + self.timer)
        self._pending[transaction_id] = p
        heapq.heappush(self._heap, (p.deadline, transaction_id))

    def __contains__(self, transaction_id: int) -> bool:
        return transaction_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def answered(self, transaction_id: int) -> bool:
        """An answer with this id arrived; True if it matched a pending request."""
        return self._pending.pop(transaction_id, None) is not None

    cancel = answered

    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, txid = self._heap[0]
            p = self._pending.get(txid)
            if p is None or p.deadline != deadline:
                heapq.heappop(self._heap)
                continue
            return deadline
        return None

    def poll(self, now: float) -> list[Retransmit | Failed]:
        out: list[Retransmit | Failed] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, txid = heapq.heappop(self._heap)
            p = self._pending.get(txid)
            if p is None or p.deadline != deadline:
                continue
            if p.sent >= self.max_transmissions:
                del self._pending[txid]
                out.append(Failed(txid))
                continue
            p.sent += 1
            p.deadline = deadline + self.timer
            heapq.heappush(self._heap, (p.deadline, txid))
            out.append(Retransmit(txid, p.data, p.sent))
        return out


@dataclass
class AnswerCache:
    """Server-side cache: identical answers to retransmitted requests for 15 s (§6.2.2)."""

    lifetime: float = MAX_REQUEST_LIFETIME
    max_entries: int = 100_000
    _entries: OrderedDict[int, tuple[float, bytes]] = field(default_factory=OrderedDict)

    def store(self, transaction_id: int, answer: bytes, now: float) -> None:
        self.expire(now)
        self._entries[transaction_id] = (now + self.lifetime, answer)
        self._entries.move_to_end(transaction_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, transaction_id: int, now: float) -> bytes | None:
        e = self._entries.get(transaction_id)
        if e is None or e[0] <= now:
            return None
        return e[1]

    def expire(self, now: float) -> None:
        while self._entries:
            txid, (exp, _) = next(iter(self._entries.items()))
            if exp > now:
                break
            del self._entries[txid]

    def __len__(self) -> int:
        return len(self._entries)


class RequestTimeout(Exception):
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
