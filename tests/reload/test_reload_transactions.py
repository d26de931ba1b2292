"""End-to-end transactions (§6.2.1, §6.2.2): retransmission, matching, answer cache."""

from __future__ import annotations

import asyncio

import pytest
from reload_pki import Pki

from vipr.reload.aio.transactions import AsyncTransactions, RequestTimeout
from vipr.reload.core.transactions import AnswerCache, ClientTransactions, Failed, Retransmit
from vipr.reload.wire import bodies as m
from vipr.reload.wire.context import response_destinations
from vipr.reload.wire.envelope import decode_message
from vipr.reload.wire.forwarding import ForwardingHeader, NodeDestination


def test_retransmits_three_seconds_five_times_then_fails() -> None:
    t = ClientTransactions()
    t.start(7, b"req", now=0.0)
    assert t.poll(2.99) == []
    events = []
    for now in (3.0, 6.0, 9.0, 12.0, 15.0):
        assert t.next_deadline() == pytest.approx(now)
        events += t.poll(now)
    assert events == [Retransmit(7, b"req", n) for n in (2, 3, 4, 5)] + [Failed(7)]
    assert 7 not in t and t.next_deadline() is None


def test_answer_stops_retransmission() -> None:
    t = ClientTransactions()
    t.start(1, b"a", 0.0)
    t.start(2, b"b", 1.0)
    assert t.answered(1) and not t.answered(1) and not t.answered(99)
    assert t.poll(4.0) == [Retransmit(2, b"b", 2)]


def test_answer_cache_15_seconds() -> None:
    c = AnswerCache()
    c.store(5, b"ans", now=100.0)
    assert c.lookup(5, 114.9) == b"ans"
    assert c.lookup(5, 115.0) is None
    c.expire(200.0)
    assert len(c) == 0


def test_response_routed_by_reversed_via_list() -> None:
    o, p1, p2 = (NodeDestination(bytes([i]) * 16) for i in (1, 2, 3))
    h = ForwardingHeader(overlay=1, transaction_id=9, via_list=(o, p1))
    assert response_destinations(h, previous_hop=p2.node_id) == (p2, p1, o)
    assert response_destinations(h) == (p1, o)


async def test_async_transactions_match_and_retransmit(pki: Pki) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    tr = AsyncTransactions(timer=0.05)
    sent: list[bytes] = []
    txid, req = a.request(m.PingReq(), (NodeDestination(pki.node_b.node_id),))

    async def send(data: bytes) -> None:
        sent.append(data)
        if len(sent) == 3:  # the first two copies are "lost"
            ans = b.answer(decode_message(data), m.PingAns(1, 2), previous_hop=a.node_id)
            asyncio.get_running_loop().call_soon(tr.deliver, txid, ans)

    answer = await asyncio.wait_for(tr.request(txid, req, send), 5)
    assert a.decode(answer).body == m.PingAns(1, 2)
    assert sent == [req, req, req]  # same transaction id and bytes each time
    with pytest.raises(RequestTimeout):
        tx2, req2 = a.request(m.PingReq(), (NodeDestination(pki.node_b.node_id),))
        fast = AsyncTransactions(timer=0.01, max_transmissions=2)

        async def drop(data: bytes) -> None:
            return None

        await asyncio.wait_for(fast.request(tx2, req2, drop), 5)
    await tr.close()
