"""PVP server robustness (DESIGN §9): bad input is logged and answered, never a crash."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pvp_harness import (
    CALLEE,
    CALLER,
    T0,
    Provider,
    cleanup,
    provider,
    short_dir,
    srp_client,
    vcr,
)

from vipr.pvp.credentials import Credentials, client_credentials
from vipr.pvp.messages import ErrorMsg, Framer, ValInfo
from vipr.pvp.server import DomainPolicy, RateLimiter, read_message
from vipr.pvp.srp import SrpConnection, SrpError

NODE_A, NODE_B = "a" * 32, "b" * 32
RIGHT = client_credentials(CALLER, CALLEE, T0, T0 + 60, 10.0)


def _conn() -> SrpConnection:
    return SrpConnection(lifetime=30)


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _reasons(p: Provider) -> list[str]:
    await p.server.wait_logged(1)
    return [r.reason for r in await p.store.list_validations()]


async def _still_serves(a: Provider, b: Provider) -> None:
    host, port = b.server.address
    assert isinstance(await a.client.validate_at(host, port, RIGHT, b.node), ValInfo)


async def _raw(b: Provider, data: bytes) -> bytes:
    r, w = await asyncio.open_connection(*b.server.address)
    w.write(data)
    await w.drain()
    w.write_eof()
    got = await asyncio.wait_for(r.read(), 10)
    w.close()
    return got


async def test_garbage_bytes_are_logged(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        assert await _raw(b, b"GET / HTTP/1.0\r\n\r\n") == b""
        assert (await _reasons(b))[0].startswith("bad-hello")
        await _still_serves(a, b)


async def test_tls_hello_without_srp_is_refused(base: Path) -> None:
    """The inner layer alone (profile v1 server, the API-level plain option): a TLS hello
    without the SRP extension is refused."""
    async with provider(base, "b", NODE_B, tls=None) as b:
        await b.store.add_vcr(vcr("terminating"))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.open_connection(*b.server.address, ssl=ctx)
        assert (await _reasons(b))[0] == "bad-hello no SRP extension"


async def test_v1_client_gets_a_protocol_version_alert(base: Path) -> None:
    """Profile v2 (DESIGN §5): a v1 client's raw TLS-SRP ClientHello is answered with a TLS
    protocol_version alert and logged as such, never dropped silently."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        _, conn = await asyncio.get_running_loop().create_connection(_conn, *b.server.address)
        with pytest.raises(SrpError, match="remote alert protocol_version"):
            await conn.handshake_client(RIGHT.username, RIGHT.password)
        conn.abort()
        assert (await _reasons(b))[0].startswith("v1-client raw TLS-SRP ClientHello")
        await _still_serves(a, b)


async def test_bad_login_gets_a_decoy(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        host, port = b.server.address
        bad = Credentials(dataclasses.replace(RIGHT.login, caller="nonsense"), RIGHT.password)
        with pytest.raises(Exception, match="wrong-password"):
            await a.client.validate_at(host, port, bad, b.node)
        assert (await _reasons(b))[0] == "bad-login malformed"


async def test_silent_client_times_out(base: Path) -> None:
    async with provider(base, "b", NODE_B, pvp={"handshake_timeout": 0.3}) as b:
        r, w = await asyncio.open_connection(*b.server.address)
        assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()
        assert (await _reasons(b))[0].startswith("timeout")


async def test_bad_message_after_handshake_gets_error_400(base: Path) -> None:
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        conn = await srp_client(b)
        await conn.handshake_client(RIGHT.username, RIGHT.password)
        body = b'{"type": "validate"}'
        await conn.write(struct.pack("!I", len(body)) + body)
        msg = await read_message(conn, Framer())
        await conn.close()
        assert msg == ErrorMsg(400, "bad message: bad-keys")
        assert (await _reasons(b))[0] == "bad-message bad-keys"
        assert await b.store.ticket_keys() == []


async def test_client_refuses_small_groups() -> None:
    # the client's minKeySize is 2048: a 1024-bit verifier is refused
    from vipr.pvp.srp import make_verifier

    loop = asyncio.get_running_loop()

    async def serve(conn: SrpConnection) -> None:
        await conn.connected.wait()
        user = await conn.peek_login()
        try:
            await conn.handshake_server(user, make_verifier(user, "x", 1024))
        except SrpError:
            conn.abort()

    tasks = []

    def factory() -> SrpConnection:
        c = _conn()
        tasks.append(loop.create_task(serve(c)))
        return c

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    _, conn = await loop.create_connection(_conn, *srv.sockets[0].getsockname()[:2])
    with pytest.raises(SrpError) as ei:
        await conn.handshake_client("pvp1;+1555;+1556;0;0.000;0.000", "x")
    assert ei.value.kind == "insufficient-security"
    conn.abort()
    await asyncio.gather(*tasks)
    srv.close()


def test_rate_limiter_window() -> None:
    rl = RateLimiter(2, window=60)
    assert rl.allow("h", 0) and rl.allow("h", 1) and not rl.allow("h", 2)
    assert rl.allow("other", 2)
    assert rl.allow("h", 60.5)


def test_domain_policy() -> None:
    p = DomainPolicy(allow=[], deny=["evil.example", "*.spam.example"])
    assert p.permits("a.example.net") and not p.permits("EVIL.example")
    assert not p.permits("x.spam.example") and p.permits("spam.example")
    q = DomainPolicy(allow=["a.example.net"], deny=[])
    assert q.permits("a.example.net") and not q.permits("b.example.net")


def _hello(identity: bytes | None) -> bytes:
    """A real ClientHello as tlslite's SRP client builds it."""
    from tlslite.extensions import SRPExtension
    from tlslite.messages import ClientHello

    ch = ClientHello()
    exts = [SRPExtension().create(bytearray(identity))] if identity is not None else None
    ch.create((3, 3), bytearray(32), bytearray(0), [0x002F], extensions=exts)
    return bytes(ch.write())


def test_srp_identity_from_a_real_hello() -> None:
    from vipr.pvp.srp import srp_identity

    assert srp_identity(_hello(RIGHT.username.encode())) == RIGHT.username.encode()
    with pytest.raises(SrpError, match="no SRP extension"):
        srp_identity(_hello(None))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(0, 200))
def test_fuzz_srp_identity_only_srp_error(junk: bytes, cut: int) -> None:
    from vipr.pvp.hello import client_hello, srp_identity

    real = _hello(b"pvp1;x")
    for data in (junk, real[:cut] + junk, real[:cut]):
        with contextlib.suppress(SrpError):
            srp_identity(data)
        with contextlib.suppress(SrpError):
            client_hello(b"\x16\x03\x03" + len(data).to_bytes(2, "big") + data)


async def test_ipv6_loopback(base: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    async with provider(base, "a", NODE_A) as a, provider(
            base, "b", NODE_B, pvp={"listen": "'[::1]:0'"}) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        assert host == "::1"
        assert isinstance(await a.client.validate_at(host, port, RIGHT, b.node), ValInfo)
        await b.server.wait_logged(1)
        (rec,) = await b.store.list_validations()
        assert rec.outcome == "ok" and rec.peer.startswith("[::1]:")
