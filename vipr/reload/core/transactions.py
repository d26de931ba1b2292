"""End-to-end transactions (RFC 6940 §6.2.1, §6.2.2): the sans-I/O core
(the asyncio shell is aio/transactions.py).

Client side: the originator retransmits a request with the same transaction id every
overlay-reliability-timer (3 s) up to 5 transmissions, then fails it. Server side: answers are
cached by transaction id so a retransmission within the maximum request lifetime (15 s) gets the
identical answer.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from vipr.reload.wire.forwarding import response_destinations

__all__ = ["AnswerCache", "ClientTransactions", "Failed", "Retransmit", "response_destinations"]

RELIABILITY_TIMER = 3.0  # §11.1 overlay-reliability-timer default (3000 ms)
MAX_TRANSMISSIONS = 5  # §6.2.1
MAX_REQUEST_LIFETIME = 15.0  # §6.2.2


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
