"""Real TLS framed links on loopback, plus the sans-I/O framing core."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from reload_pki import Pki

from vipr.reload.aio.link import Link, connect, serve
from vipr.reload.core.framing import AckFrame, DataFrame, FramingState, TooLarge, encode_data_frame
from vipr.reload.tools.pcap import PcapTap
from vipr.reload.wire import bodies as m
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.forwarding import ForwardingHeader, NodeDestination
from vipr.reload.wire.security import ReloadSecurityError


async def _server(pki: Pki, links: asyncio.Queue[Link], **kw: object) -> tuple[asyncio.Server,
                                                                               int]:
    server = await serve("127.0.0.1", 0, pki.files["b"], pki.trust(), links.put_nowait, **kw)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def test_signed_ping_over_tls_link(pki: Pki, tmp_path: Path) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    links: asyncio.Queue[Link] = asyncio.Queue()
    server, port = await _server(pki, links)
    tap = PcapTap(tmp_path / "link.pcap")
    async with server:
        client = await connect("127.0.0.1", port, pki.files["a"], pki.trust(),
                               expected_node_id=pki.node_b.node_id, tap=tap)
        srv_link = await asyncio.wait_for(links.get(), 5)
        assert client.peer_node_id == pki.node_b.node_id
        assert srv_link.peer_node_id == pki.node_a.node_id  # from the client's certificate
        txid, req = a.request(m.PingReq(b"hi"), (NodeDestination(pki.node_b.node_id),))
        await client.send(req)
        rx = b.decode(await srv_link.receive(5), expected_node_id=srv_link.peer_node_id)
        assert rx.body == m.PingReq(b"hi")
        await srv_link.send(b.answer(rx.message, m.PingAns(7, 8),
                                     previous_hop=srv_link.peer_node_id))
        ans = a.decode(await client.receive(5), expected_node_id=client.peer_node_id)
        assert ans.message.transaction_id == txid and ans.body == m.PingAns(7, 8)
        # both sides saw the other's ACKs: an RTT sample exists
        await asyncio.wait_for(client.acked.wait(), 5)
        await asyncio.wait_for(srv_link.acked.wait(), 5)
        assert client.state.srtt is not None and srv_link.state.srtt is not None
        assert not client.state.suspect(asyncio.get_running_loop().time())
        await client.close()
        await asyncio.wait_for(srv_link.closed.wait(), 5)
    tap.close()
    if shutil.which("tshark"):  # what the client really wrote and read, decoded by Wireshark
        cmd = ["tshark", "-n", "-r", str(tmp_path / "link.pcap"), "-T", "fields", "-E",
               "separator=;", "-e", "reload_framing.type", "-e", "reload.message.code",
               "-e", "_ws.malformed", "-e", "_ws.expert.severity"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [r.split(";") for r in out.splitlines() if r.strip(";")]
        assert sorted(r[1] for r in rows if r[0] == "128") == ["23", "24"]
        assert sum(r[0] == "129" for r in rows) == 2  # one ACK each way
        assert all(r[2] == "" and r[3] == "" for r in rows if r[0])  # no malformed, no expert


async def test_oversize_message_gets_error_and_link_closes(pki: Pki) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    links: asyncio.Queue[Link] = asyncio.Queue()

    def too_large(link: Link, header: ForwardingHeader) -> bytes:
        return b.error_to(header, m.ErrorCode.MESSAGE_TOO_LARGE, "message too large",
                          previous_hop=link.peer_node_id)

    server, port = await _server(pki, links, on_too_large=too_large, max_message_size=2000)
    async with server:
        client = await connect("127.0.0.1", port, pki.files["a"], pki.trust())
        srv_link = await asyncio.wait_for(links.get(), 5)
        txid, big = a.request(m.PingReq(b"\0" * 3000), (NodeDestination(pki.node_b.node_id),))
        await client.send(big)
        rx = a.decode(await client.receive(5), expected_node_id=pki.node_b.node_id)
        assert rx.message.transaction_id == txid
        assert isinstance(rx.body, m.ErrorResponse)
        assert rx.body.error_code == m.ErrorCode.MESSAGE_TOO_LARGE
        await asyncio.wait_for(srv_link.closed.wait(), 5)
        await asyncio.wait_for(client.closed.wait(), 5)
        assert srv_link.close_reason == "message too large"


async def test_link_rejects_certificate_of_other_ca(pki: Pki) -> None:
    links: asyncio.Queue[Link] = asyncio.Queue()
    server, port = await _server(pki, links)
    async with server:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            c = await connect("127.0.0.1", port, pki.files["foreign"], pki.trust())
            # TLS 1.3: the server's rejection of our certificate arrives after the handshake
            await asyncio.wait_for(c.closed.wait(), 5)
            raise ConnectionError(c.close_reason)
        assert links.empty()


async def test_link_rejects_expired_certificate(pki: Pki) -> None:
    links: asyncio.Queue[Link] = asyncio.Queue()
    server, port = await _server(pki, links)
    async with server:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            c = await connect("127.0.0.1", port, pki.files["expired"], pki.trust())
            await asyncio.wait_for(c.closed.wait(), 5)
            raise ConnectionError(c.close_reason)
        assert links.empty()


async def test_link_rejects_unexpected_peer_node_id(pki: Pki) -> None:
    links: asyncio.Queue[Link] = asyncio.Queue()
    server, port = await _server(pki, links)
    async with server:
        with pytest.raises(ReloadSecurityError, match="expected Node-ID"):
            await connect("127.0.0.1", port, pki.files["a"], pki.trust(),
                          expected_node_id=pki.node_a.node_id)  # the server is node B


def test_framing_ack_bitmap_and_rtt() -> None:
    tx, rx = FramingState(), FramingState()
    frames = b"".join(tx.send_data(bytes([i]) * 3, 0.0) for i in range(3))
    events, acks = rx.receive(frames[:5], 0.0)
    assert events == [] and acks == b""
    events, acks = rx.receive(frames[5:], 0.0)
    assert [e.message for e in events if isinstance(e, DataFrame)] == [b"\0" * 3, b"\1" * 3,
                                                                       b"\2" * 3]
    ev, _ = tx.receive(acks, 0.2)
    a3 = [e for e in ev if isinstance(e, AckFrame)][-1]
    assert a3.sequence == 3 and a3.received == (1 << 1) | (1 << 2)  # §6.6.3.1 bit N-M
    assert tx.srtt == pytest.approx(0.2) and tx.rto >= 1.0
    assert tx.oldest_unacked() is None


def test_dead_link_detection() -> None:
    s = FramingState(dead_after=30.0)
    s.send_data(b"x", 100.0)
    assert not s.suspect(100.5)
    assert s.suspect(101.5)  # no ACK within RTO (initial 1 s)
    assert not s.dead(120.0) and s.dead(131.0)


def test_framing_errors() -> None:
    with pytest.raises(ReloadDecodeError):
        FramingState().receive(b"\x42rest", 0.0)
    s = FramingState(max_message_size=100)
    big = encode_data_frame(1, b"\0" * 200)
    ev, _ = s.receive(big, 0.0)
    assert len(ev) == 1 and isinstance(ev[0], TooLarge) and ev[0].header is None


async def test_transactions_over_real_link_with_answer_cache(pki: Pki) -> None:
    """A lost first copy is retransmitted with the same transaction id; the server answers a
    retransmission of an answered request from its cache, byte-identical (§6.2.1, §6.2.2)."""
    from vipr.reload.aio.transactions import AsyncTransactions
    from vipr.reload.core.transactions import AnswerCache

    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    cache = AnswerCache()
    seen: list[int] = []
    answers: list[bytes] = []
    second = asyncio.Event()

    async def server_handler(link: Link, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        rx = b.decode(data, expected_node_id=link.peer_node_id)
        txid = rx.message.transaction_id
        seen.append(txid)
        if len(seen) == 1:
            return  # first copy "lost"
        ans = cache.lookup(txid, now)
        if ans is None:
            ans = b.answer(rx.message, m.PingAns(len(seen), 0), previous_hop=link.peer_node_id)
            cache.store(txid, ans, now)
        answers.append(ans)
        if len(answers) == 2:
            second.set()
        await link.send(ans)

    links: asyncio.Queue[Link] = asyncio.Queue()
    server, port = await _server(pki, links, on_message=server_handler)
    async with server:
        tr = AsyncTransactions(timer=0.2)
        client = await connect("127.0.0.1", port, pki.files["a"], pki.trust())

        async def client_handler(link: Link, data: bytes) -> None:
            tr.deliver(a.decode(data).message.transaction_id, data)

        client.on_message = client_handler
        txid, req = a.request(m.PingReq(), (NodeDestination(pki.node_b.node_id),))
        answer = await asyncio.wait_for(tr.request(txid, req, client.send), 5)
        assert a.decode(answer).body == m.PingAns(2, 0)
        assert seen == [txid, txid]
        await client.send(req)  # a late duplicate: same answer from the cache
        await asyncio.wait_for(second.wait(), 5)
        assert answers[1] == answers[0]
        await tr.close()
        await client.close()
