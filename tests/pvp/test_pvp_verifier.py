"""SRP verifiers through the fixed-base table: the same values as tlslite-ng's, and usable."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlslite.mathtls import makeX

from vipr.pvp.srp import SrpConnection, SrpError
from vipr.pvp.verifier import SRP_GROUPS, fixed_base_pow, make_verifier


@settings(max_examples=200, deadline=None)
@given(x=st.integers(min_value=0, max_value=(1 << 160) - 1), bits=st.sampled_from([1024, 2048]))
def test_fixed_base_pow_equals_pow(x: int, bits: int) -> None:
    g, n = SRP_GROUPS[bits]
    assert fixed_base_pow(g, x, n) == pow(g, x, n)


def test_edges_and_range() -> None:
    g, n = SRP_GROUPS[2048]
    for x in (0, 1, 63, 64, (1 << 160) - 1, 1 << 159):
        assert fixed_base_pow(g, x, n) == pow(g, x, n)
    with pytest.raises(ValueError):
        fixed_base_pow(g, 1 << 160, n)
    with pytest.raises(ValueError):
        fixed_base_pow(g, -1, n)


def test_entry_matches_the_rfc_formula_with_a_fresh_salt() -> None:
    n, g, salt, v = make_verifier("pvp1;+1555;+1556;0;0.000;0.000", "12;13")
    assert (g, n) == SRP_GROUPS[2048] and len(salt) == 16
    x = makeX(salt, bytearray(b"pvp1;+1555;+1556;0;0.000;0.000"), bytearray(b"12;13"))
    assert v == pow(g, x, n)
    assert make_verifier("u", "p")[2] != make_verifier("u", "p")[2]  # fresh salt each time


async def _handshake(server_password: str) -> None:
    """tlslite's client against a server holding our verifier for `server_password`."""
    loop = asyncio.get_running_loop()
    user = "pvp1;+1555;+1556;0;0.000;0.000"
    done: list[asyncio.Task[None]] = []

    async def serve(conn: SrpConnection) -> None:
        await conn.connected.wait()
        login = await conn.peek_login()
        with contextlib.suppress(SrpError):  # the client sees the failure
            await conn.handshake_server(login, make_verifier(login, server_password))
        conn.abort()

    def factory() -> SrpConnection:
        c = SrpConnection(lifetime=30)
        done.append(loop.create_task(serve(c)))
        return c

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        _, conn = await loop.create_connection(lambda: SrpConnection(lifetime=30),
                                               *srv.sockets[0].getsockname()[:2])
        try:
            await conn.handshake_client(user, "12;13")
        finally:
            conn.abort()
        await asyncio.gather(*done)
    finally:
        srv.close()


async def test_handshake_succeeds_with_the_right_password() -> None:
    await _handshake("12;13")


async def test_handshake_fails_with_a_wrong_password() -> None:
    with pytest.raises(SrpError) as ei:
        await _handshake("12;14")
    assert ei.value.kind == "wrong-password"
