"""Issue 13 defect 2 (SIP): what an unauthenticated peer may hold (DESIGN §10).

Real sockets against a real `SipEndpoint` listener (TCP, TLS with mutual authentication,
UDP) with small `SipLimits`: the attacker connects from 127.0.0.2/127.0.0.3, the legitimate
client from 127.0.0.1. Each cap must hold, and the legitimate client must get its answer
afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import Pki, make_pki
from vipr.limits import SipLimits
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.framing import StreamFramer
from vipr.proxy.sip.transport import StreamTransport, UdpTransport

pytestmark = pytest.mark.timeout(60)

LIMITS = SipLimits(max_connections=4, max_connections_per_address=2, handshake_timeout=0.5,
                   max_message_size=4000, max_headers=20, max_vias=5)
ATTACKER, OTHER, LEGIT = "127.0.0.2", "127.0.0.3", "127.0.0.1"


def options(transport: str, branch: str = "z9hG4bKok", extra: str = "",
            vias: int = 1) -> bytes:
    via = "".join(f"Via: SIP/2.0/{transport} 127.0.0.1:9;branch={branch}{i or ''}\r\n"
                  for i in range(vias))
    return (f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n{via}"
            "From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\n"
            f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}"
            "Content-Length: 0\r\n\r\n").encode()


@dataclass
class Env:
    ep: SipEndpoint
    pki: Pki
    ports: dict[str, int]

    def stream(self, name: str) -> StreamTransport:
        tr = self.ep.transports[name]
        assert isinstance(tr, StreamTransport)
        return tr

    async def connect(self, kind: str, source: str, *, tls: bool = False
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ctx = self.pki.client_ctx("a.example.net") if tls else None
        return await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", self.ports[kind], local_addr=(source, 0), ssl=ctx,
            server_hostname="b.example.org" if tls else None), 5)

    async def ask(self, kind: str, data: bytes | None = None) -> bytes:
        """One request from the legitimate client; the raw response."""
        tls = kind == "tls"
        r, w = await self.connect(kind, LEGIT, tls=tls)
        try:
            w.write(data or options(kind.upper()))
            return await read_message(r)
        finally:
            w.close()


async def read_message(r: asyncio.StreamReader) -> bytes:
    framer = StreamFramer()
    while True:
        chunk = await asyncio.wait_for(r.read(65536), 5)
        assert chunk, "connection closed before a response"
        got = framer.feed(chunk)
        if got:
            return got[0]


async def closed_by_server(r: asyncio.StreamReader, timeout: float = 5) -> bool:
    """True when the server closes (EOF or reset) within `timeout`."""
    try:
        while await asyncio.wait_for(r.read(65536), timeout):
            pass
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    pki = make_pki(tmp_path)
    ep = SipEndpoint(lambda r, s, h: h.respond(200) if h is not None else None)
    ports = {}
    for kind, ctx in (("tcp", None), ("tls", pki.server_ctx("b.example.org")), ("udp", None)):
        tr = await ep.listen(kind, "127.0.0.1", 0, ssl=ctx, limits=LIMITS,
                             client_ssl=pki.client_ctx("b.example.org") if ctx else None)
        ports[kind] = tr.local_port
    try:
        yield Env(ep, pki, ports)
    finally:
        await ep.close()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_per_address_cap_refuses_at_accept(env: Env, kind: str) -> None:
    held = [await env.connect(kind, ATTACKER) for _ in range(2)]
    r, w = await env.connect(kind, ATTACKER)
    assert await closed_by_server(r, 2)   # the third from one address: closed at once
    w.close()
    st = env.stream(kind).status()
    assert st["refused"] == {"address_full": 1} and st["open"] == 2
    assert b"SIP/2.0 200 OK" in await env.ask(kind)   # another address still gets in
    for _, hw in held:
        hw.close()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_silent_peers_filling_the_listener_cannot_lock_out_a_client(env: Env,
                                                                          kind: str) -> None:
    held = [await env.connect(kind, src) for src in (ATTACKER, ATTACKER, OTHER, OTHER)]
    assert env.stream(kind).status()["unauthenticated"] == 4
    # full of connections that never authenticated: the oldest makes room for the newcomer
    assert b"SIP/2.0 200 OK" in await env.ask(kind)
    assert await closed_by_server(held[0][0], 2)
    st = env.stream(kind).status()
    assert st["closed"] == {"evicted": 1} and st["refused"] == {}, st
    # the rest: closed after handshake_timeout (nothing sent / no ClientHello)
    for hr, _ in held[1:]:
        assert await closed_by_server(hr, 3)
    st = env.stream(kind).status()
    reason = "first_message_timeout" if kind == "tcp" else "handshake_timeout"
    assert st["closed"] == {"evicted": 1, reason: 3} and st["open"] == 0, st
    for _, w in held:
        w.close()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_listener_cap_refuses_when_every_slot_is_authenticated(env: Env,
                                                                     kind: str) -> None:
    tls = kind == "tls"
    held = []
    for i, src in enumerate((ATTACKER, ATTACKER, OTHER, OTHER)):
        r, w = await env.connect(kind, src, tls=tls)
        w.write(options(kind.upper(), f"z9hG4bKheld{i}"))   # authenticated: a whole message
        assert b"200 OK" in await read_message(r)
        held.append((r, w))
    assert env.stream(kind).status()["unauthenticated"] == 0
    r, w = await env.connect(kind, LEGIT)
    assert await closed_by_server(r, 2)   # the cap holds: refused at accept
    w.close()
    assert env.stream(kind).status()["refused"] == {"listener_full": 1}
    for _, hw in held:
        hw.close()
    for hr, _ in held:
        await closed_by_server(hr, 3)
    for _ in range(100):
        if env.stream(kind).gate.open == 0:
            break
        await asyncio.sleep(0.02)
    assert b"SIP/2.0 200 OK" in await env.ask(kind)   # slots back once they left


async def test_tcp_slow_sender_is_closed_after_the_handshake_timeout(env: Env) -> None:
    r, w = await env.connect("tcp", ATTACKER)
    msg = options("TCP")
    closed = asyncio.ensure_future(closed_by_server(r, 3))
    for b in msg[:60]:   # slowloris: a byte at a time, never a whole message
        if closed.done():
            break
        w.write(bytes([b]))
        await asyncio.sleep(0.02)
    assert await closed
    w.close()
    assert env.stream("tcp").status()["closed"] == {"first_message_timeout": 1}
    assert b"SIP/2.0 200 OK" in await env.ask("tcp")


async def test_a_whole_first_message_keeps_a_tcp_connection_open(env: Env) -> None:
    r, w = await env.connect("tcp", LEGIT)
    w.write(options("TCP", "z9hG4bKfirst"))
    assert b"200 OK" in await read_message(r)
    await asyncio.sleep(LIMITS.handshake_timeout * 2)   # past the deadline: it no longer applies
    w.write(options("TCP", "z9hG4bKsecond"))
    assert b"z9hG4bKsecond" in await read_message(r)
    w.close()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_oversized_request_gets_513_then_the_stream_closes(env: Env, kind: str) -> None:
    r, w = await env.connect(kind, ATTACKER, tls=kind == "tls")
    big = options(kind.upper(), "z9hG4bKbig").replace(b"Content-Length: 0",
                                                      b"Content-Length: 999999")
    w.write(big)   # the body is never sent: the header alone says it is too large
    resp = await read_message(r)
    assert resp.startswith(b"SIP/2.0 513 ") and b"z9hG4bKbig" in resp
    assert await closed_by_server(r, 2)
    w.close()
    assert env.stream(kind).status()["closed"] == {"too_large": 1}
    assert b"SIP/2.0 200 OK" in await env.ask(kind)


async def test_header_section_without_end_is_not_buffered_past_the_cap(env: Env) -> None:
    r, w = await env.connect("tcp", ATTACKER)
    w.write(options("TCP")[:200] + b"X-Pad: " + b"a" * (LIMITS.max_message_size + 10))
    assert await closed_by_server(r, 2)
    w.close()
    assert env.stream("tcp").status()["closed"] == {"too_large": 1}
    assert b"SIP/2.0 200 OK" in await env.ask("tcp")


@pytest.mark.parametrize("kind", ["tcp", "udp"])
@pytest.mark.parametrize(("extra", "vias", "reason"), [
    ("".join(f"X-H{i}: {i}\r\n" for i in range(20)), 1, b"too many header fields"),
    ("", 6, b"too many Via entries"),
])
async def test_header_and_via_caps_answer_400(env: Env, kind: str, extra: str, vias: int,
                                              reason: bytes) -> None:
    bad = options(kind.upper(), "z9hG4bKcap", extra, vias)
    if kind == "tcp":
        r, w = await env.connect("tcp", ATTACKER)
        w.write(bad)
        resp = await read_message(r)
        w.write(options("TCP", "z9hG4bKafter"))   # framing intact: the stream goes on
        assert b"z9hG4bKafter" in await read_message(r)
        w.close()
    else:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ATTACKER, 0))
            s.setblocking(False)
            s.sendto(bad, ("127.0.0.1", env.ports["udp"]))
            resp = await asyncio.wait_for(loop.sock_recv(s, 65535), 5)
    assert resp.startswith(b"SIP/2.0 400 Bad Request (" + reason), resp[:80]
    if kind == "udp":
        assert b"SIP/2.0 200 OK" in await udp_ask(env)


async def udp_ask(env: Env, data: bytes | None = None) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LEGIT, 0))
        s.setblocking(False)
        s.sendto(data or options("UDP"), ("127.0.0.1", env.ports["udp"]))
        return await asyncio.wait_for(loop.sock_recv(s, 65535), 5)


async def test_oversized_datagram_gets_513(env: Env) -> None:
    big = options("UDP", "z9hG4bKbigudp", "X-Pad: " + "a" * LIMITS.max_message_size + "\r\n")
    resp = await udp_ask(env, big)
    assert resp.startswith(b"SIP/2.0 513 ") and b"z9hG4bKbigudp" in resp
    assert b"SIP/2.0 200 OK" in await udp_ask(env)
    tr = env.ep.transports["udp"]
    assert isinstance(tr, UdpTransport) and tr.state == "open"


async def test_refused_and_timed_out_connections_release_their_slots(env: Env) -> None:
    """Many rounds of a full listener: the counts go back to zero (no leaked slots)."""
    for _ in range(3):
        conns = [await env.connect("tls", src) for src in (ATTACKER, ATTACKER, OTHER)]
        extra = await env.connect("tls", ATTACKER)
        assert await closed_by_server(extra[0], 2)
        for _, w in [*conns, extra]:
            w.close()
        for r, _ in conns:
            await closed_by_server(r, 3)
    for _ in range(100):
        if env.stream("tls").gate.open == 0:
            break
        await asyncio.sleep(0.02)
    assert env.stream("tls").gate.open == 0 and env.stream("tls").gate.sources() == 0
    assert b"SIP/2.0 200 OK" in await env.ask("tls")
    for _ in range(100):   # a good connection that ends gives its slot back too
        if env.stream("tls").gate.open == 0:
            break
        await asyncio.sleep(0.02)
    assert env.stream("tls").gate.open == 0 and env.stream("tls").memory.ended_total == 3 * 3 + 1


async def test_request_in_the_same_segment_as_the_tls_finished_is_served(env: Env) -> None:
    """asyncio hands application data that arrives with the client's Finished to the
    protocol before start_tls returns: it must be kept, not lost (or asserted on)."""
    loop = asyncio.get_running_loop()
    ctx = env.pki.client_ctx("a.example.net")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="b.example.org")
    with socket.socket() as s:
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", env.ports["tls"]))
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    await loop.sock_sendall(s, outgoing.read())
                data = await asyncio.wait_for(loop.sock_recv(s, 65536), 5)
                assert data, "server closed during the handshake"
                incoming.write(data)
        tls.write(options("TLS", "z9hG4bKsame"))
        await loop.sock_sendall(s, outgoing.read())   # Finished + request: one segment
        framer = StreamFramer()
        got: list[bytes] = []
        while not got:
            try:
                got = framer.feed(tls.read(65536))
            except ssl.SSLWantReadError:
                data = await asyncio.wait_for(loop.sock_recv(s, 65536), 5)
                assert data, "server closed without answering"
                incoming.write(data)
    assert got[0].startswith(b"SIP/2.0 200 OK") and b"z9hG4bKsame" in got[0]
