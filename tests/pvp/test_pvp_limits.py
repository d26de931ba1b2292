"""PVP listener limits (DESIGN §10, issue 13 defects 2 and 4): the connection gate at accept,
the pre-handshake timeout, bounded buffers, the rate-limited refusal log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
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

from vipr.limits import Refusal
from vipr.pvp.credentials import client_credentials
from vipr.pvp.messages import ErrorMsg, Framer, Validate, ValInfo, encode_message
from vipr.pvp.server import RefusalLog, read_message
from vipr.pvp.srp import MAX_INBUF, SrpConnection, SrpError, make_verifier

NODE_A, NODE_B = "a" * 32, "b" * 32
RIGHT = client_credentials(CALLER, CALLEE, T0, T0 + 60, 10.0)
ATTACKER = "127.0.0.2"  # the whole 127.0.0.0/8 is loopback on Linux


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _idle(host: str, port: int, n: int) -> list[tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]]:
    """`n` TCP connections from ATTACKER that never send a byte."""
    out = []
    for _ in range(n):
        out.append(await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0)))
    return out


async def test_idle_flood_from_one_address_leaves_room_for_a_validation(base: Path) -> None:
    """Issue 13 defect 4: 300 idle connections used to hold every slot (256) for the whole
    pvp.handshake_timeout, and a legitimate validation was refused as busy."""
    pvp = {"handshake_timeout": 30, "limits": "{handshake_timeout: 2}"}
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, pvp=pvp) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        flood = await _idle(host, port, 300)
        try:
            info = await a.client.validate_at(host, port, RIGHT, b.node)  # from 127.0.0.1
            assert isinstance(info, ValInfo) and info.number == CALLEE
            # every attacker connection ends: refused at once, or at the pre-handshake timeout
            async with asyncio.timeout(10):
                got = await asyncio.gather(*(r.read() for r, _ in flood))
            assert got == [b""] * 300
        finally:
            for _, w in flood:
                w.close()
        st = b.server.status()["connections"]
        per_address = b.cfg.pvp.limits.max_connections_per_address
        assert st["refused"] == {Refusal.ADDRESS_FULL.value: 300 - per_address}
        await b.server.wait_logged(1 + per_address)
        recs = await b.store.list_validations()
        assert sorted(r.outcome for r in recs).count("ok") == 1
        # refused connections are not written to the validation log; admitted idle ones are
        assert len(recs) == 1 + per_address
        assert {r.reason.split(" ")[0] for r in recs if r.outcome != "ok"} == {"timeout"}


async def test_listener_cap_refuses_at_accept(base: Path) -> None:
    pvp = {"limits": "{max_connections: 2, max_connections_per_address: 2}"}
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, pvp=pvp) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        flood = await _idle(host, port, 2)
        try:
            with pytest.raises(Exception, match="closed"):
                await a.client.validate_at(host, port, RIGHT, b.node)
            assert b.server.status()["connections"]["refused"] == {"listener_full": 1}
        finally:
            for _, w in flood:
                w.close()
        async with asyncio.timeout(10):  # the slots come back once the idle ones close
            while b.server.gate.open:
                await asyncio.sleep(0.01)
        assert isinstance(await a.client.validate_at(host, port, RIGHT, b.node), ValInfo)


async def test_silent_connection_closed_at_the_pre_handshake_timeout(base: Path) -> None:
    pvp = {"handshake_timeout": 30, "limits": "{handshake_timeout: 0.3}"}
    async with provider(base, "b", NODE_B, pvp=pvp) as b:
        r, w = await asyncio.open_connection(*b.server.address)
        try:
            assert await asyncio.wait_for(r.read(), 5) == b""
        finally:
            w.close()
        await b.server.wait_logged(1)
        (rec,) = await b.store.list_validations()
        assert rec.reason.startswith("timeout") and "0.3 s" in rec.reason
        assert b.server.gate.open == 0


async def test_trickled_hello_closed_at_the_pre_handshake_timeout(base: Path) -> None:
    """A slowloris peer that keeps sending a few bytes is still closed at the deadline."""
    pvp = {"handshake_timeout": 30, "limits": "{handshake_timeout: 0.5}"}
    async with provider(base, "b", NODE_B, pvp=pvp) as b:
        r, w = await asyncio.open_connection(*b.server.address)
        try:
            w.write(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record, sent byte by byte

            async def trickle() -> None:
                with contextlib.suppress(ConnectionError):
                    for _ in range(200):
                        w.write(b"\x01")
                        await w.drain()
                        await asyncio.sleep(0.05)

            t = asyncio.create_task(trickle())
            assert await asyncio.wait_for(r.read(), 5) == b""
            t.cancel()
        finally:
            w.close()


async def test_unread_input_is_bounded(base: Path) -> None:
    """Bytes a peer pushes while the server is not reading stay under MAX_INBUF (backpressure),
    however much it sends."""
    async with provider(base, "b", NODE_B) as b:
        seen: list[int] = []
        gate = asyncio.Event()
        orig = b.server._serve_connected

        async def stalled(conn):  # type: ignore[no-untyped-def]
            await gate.wait()  # a server busy elsewhere: nobody reads this connection
            seen.append(len(conn.bio.inbuf))
            conn.abort()

        b.server._serve_connected = stalled  # type: ignore[method-assign]
        _, w = await asyncio.open_connection(*b.server.address)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    for _ in range(400):  # up to 25 MB offered; blocks once buffers are full
                        w.write(b"\x00" * 65536)
                        await w.drain()
            gate.set()
            async with asyncio.timeout(5):
                while not seen:
                    await asyncio.sleep(0.01)
        finally:
            w.close()
            b.server._serve_connected = orig  # type: ignore[method-assign]
        assert 0 < seen[0] < MAX_INBUF + 300_000  # one socket read beyond the mark at most


def test_refusal_log_summarises() -> None:
    rl = RefusalLog(interval=10.0)
    first = rl.note(Refusal.ADDRESS_FULL, "192.0.2.1", 100.0)
    assert first is not None and "address_full 1" in first
    assert [rl.note(Refusal.ADDRESS_FULL, "192.0.2.1", 100.0 + i / 10) for i in range(50)] == [
        None] * 50
    assert rl.note(Refusal.LISTENER_FULL, "192.0.2.9", 105.0) is None
    line = rl.flush(110.0)
    assert line == ("refused 51 connection(s) at accept (address_full 50, listener_full 1);"
                    " last from 192.0.2.9")
    assert rl.flush(111.0) is None
    assert rl.note(Refusal.ADDRESS_FULL, "192.0.2.1", 111.0) is None  # within 10 s of the last
    assert rl.note(Refusal.ADDRESS_FULL, "192.0.2.1", 121.0) is not None


async def test_refusals_are_logged_once_per_interval(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pvp = {"limits": "{max_connections_per_address: 1}"}
    async with provider(base, "b", NODE_B, pvp=pvp) as b:
        host, port = b.server.address
        with caplog.at_level(logging.WARNING, logger="vipr.pvp.server"):
            flood = await _idle(host, port, 40)
            async with asyncio.timeout(10):
                await asyncio.gather(*(r.read() for r, _ in flood[1:]))
            for _, w in flood:
                w.close()
        lines = [m for m in caplog.messages if "at accept" in m]
        assert len(lines) == 1 and "address_full 1" in lines[0]
        assert b.server.status()["connections"]["refused"] == {"address_full": 39}


async def test_oversized_length_prefix_answered_before_any_body(base: Path) -> None:
    """A message length over MAX_MESSAGE is refused from the 4-byte prefix alone: the server
    neither waits for nor buffers the announced body."""
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        conn = await srp_client(b)
        try:
            await conn.handshake_client(RIGHT.username, RIGHT.password)
            await conn.write(struct.pack("!I", 1 << 30))
            msg = await asyncio.wait_for(read_message(conn, Framer()), 5)
        finally:
            await conn.close()
        assert msg == ErrorMsg(400, "bad message: too-large")


# ---------------------------------------------------------------- TLS close_notify (issue 13 #12)


async def test_server_ends_a_validation_with_close_notify(base: Path) -> None:
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        conn = await srp_client(b)
        try:
            await conn.handshake_client(RIGHT.username, RIGHT.password)
            await conn.write(encode_message(Validate("a.example.net", "00000000000000aa")))
            assert isinstance(await read_message(conn, Framer()), ValInfo)
            # tlslite returns b"" only after a close_notify; a bare TCP close raises
            # SrpError("closed", "TLSAbruptCloseError")
            assert await conn.read() == b""
        finally:
            conn.abort()


async def test_server_sends_close_notify_after_an_error_answer(base: Path) -> None:
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        conn = await srp_client(b)
        try:
            await conn.handshake_client(RIGHT.username, RIGHT.password)
            body = b'{"type": "validate"}'
            await conn.write(struct.pack("!I", len(body)) + body)
            assert await read_message(conn, Framer()) == ErrorMsg(400, "bad message: bad-keys")
            assert await conn.read() == b""
        finally:
            conn.abort()


async def test_client_ends_a_validation_with_close_notify(base: Path) -> None:
    """Our client against a server written here that reads once more after its answer (the
    inner layer over the plain stream: the server here speaks TLS-SRP only)."""
    async with provider(base, "a", NODE_A, tls=None) as a:
        loop = asyncio.get_running_loop()
        after: asyncio.Future[bytes | str] = loop.create_future()

        async def serve(conn: SrpConnection) -> None:
            await conn.connected.wait()
            user = await conn.peek_login()
            await conn.handshake_server(user, make_verifier(user, RIGHT.password))
            assert isinstance(await read_message(conn, Framer()), Validate)
            await conn.write(encode_message(ValInfo(CALLEE, ("sip:b.example.net",), "t", 1)))
            try:
                after.set_result(await conn.read())
            except SrpError as e:
                after.set_result(f"{e.kind} {e.detail}")
            conn.abort()

        tasks = []

        def factory() -> SrpConnection:
            c = SrpConnection(lifetime=30)
            tasks.append(loop.create_task(serve(c)))
            return c

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        try:
            host, port = srv.sockets[0].getsockname()[:2]
            assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
            assert await asyncio.wait_for(after, 10) == b""
            await asyncio.gather(*tasks)
        finally:
            srv.close()


# ---------------------------------------------------------------- decoy work (issue 13 #8)


async def _statements(b: Provider, host: str, port: int, username: str, password: str
                      ) -> list[str]:
    """The SQL the server runs on its loop connection for one wrong-password attempt (the
    batched validation-log insert aside), parameters masked."""
    seen: list[str] = []
    conn = b.store._loop_conn._open()  # type: ignore[union-attr]
    conn.set_trace_callback(seen.append)
    try:
        n = b.server.logged
        c = await srp_client(b)
        with pytest.raises(SrpError, match="wrong-password"):
            await c.handshake_client(username, password)
        c.abort()
        await b.server.wait_logged(n + 1)
    finally:
        conn.set_trace_callback(None)
    return [re.sub(r"'[^']*'|\b\d+(\.\d+)?\b", "?", s) for s in seen
            if "INTO validation" not in s]


async def test_decoy_and_real_vcr_run_the_same_statements(base: Path) -> None:
    """DESIGN §10: a wrong password against a real VCR and any password for an unknown one
    make the server run the same statements (the lookup, then the failure count)."""
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        real = await _statements(b, host, port, RIGHT.username, "1;2")
        unknown = client_credentials(CALLER, "+4930999999", T0, T0 + 60, 10.0)
        decoy = await _statements(b, host, port, unknown.username, unknown.password)
        assert any(s.startswith("UPDATE vcr SET failures") for s in real), real
        assert decoy == real
        (v,) = await b.store.list_vcrs()
        assert v.failures == 1 and not v.burned


async def test_failed_handshake_is_closed_before_any_store_write(base: Path) -> None:
    """The failure count (real) and its decoy twin run only once the socket is closed, so
    their cost cannot show in what the peer times. asyncio closes a socket one loop
    iteration after `close()`; the gate counts a connection out when it is really gone."""
    async with provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        open_at_write: list[tuple[str, int]] = []
        for name in ("record_vcr_failure", "record_decoy_failure"):
            orig = getattr(b.store, name)

            async def spy(*args: object, _orig: Any = orig, _name: str = name) -> object:
                open_at_write.append((_name, b.server.gate.open))
                return await _orig(*args)

            setattr(b.store, name, spy)
        unknown = client_credentials(CALLER, "+4930999999", T0, T0 + 60, 10.0)
        for user, pw in ((RIGHT.username, "1;2"), (unknown.username, unknown.password)):
            n = b.server.logged
            c = await srp_client(b)
            with pytest.raises(SrpError, match="wrong-password"):
                await c.handshake_client(user, pw)
            c.abort()
            await b.server.wait_logged(n + 1)
        assert open_at_write == [("record_vcr_failure", 0), ("record_decoy_failure", 0)]
