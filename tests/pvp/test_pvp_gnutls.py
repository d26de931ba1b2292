"""TLS-SRP interop with GnuTLS (DESIGN §9): `gnutls-cli` against our PVP server, and our PVP
client against `gnutls-serv --srppasswd` (verifier file written here, RFC 5054 2048-bit group)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pvp_harness import CALLEE, CALLER, T0, cleanup, provider, short_dir, vcr
from tlslite.mathtls import goodGroupParameters, makeX
from tlslite.utils.cryptomath import numberToByteArray, powMod

from tests.conftest import requires_tool
from tests.ports import free_port
from vipr.pvp.credentials import Credentials, client_credentials
from vipr.pvp.messages import Framer, Validate, ValInfo, encode_message
from vipr.pvp.srp import SrpConnection, SrpError

PRIORITY = "NORMAL:-KX-ALL:+SRP:-VERS-TLS1.3"
RIGHT = client_credentials(CALLER, CALLEE, T0, T0 + 60, 10.0)
# libsrp's base64 (GnuTLS lib/auth/srp_sb64.c): alphabet below, most significant digit first,
# the len % 3 leading bytes form a first group written with as few digits as it needs.
SB64 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz./"


def _conn() -> SrpConnection:
    return SrpConnection(lifetime=30)


def sb64(data: bytes) -> str:
    mod = len(data) % 3
    out = ""
    if mod:
        n = int.from_bytes(data[:mod], "big")
        head = SB64[n & 63]
        while n >= 64:
            n >>= 6
            head = SB64[n & 63] + head
        out = head
    for i in range(mod, len(data), 3):
        n = int.from_bytes(data[i : i + 3], "big")
        out += "".join(SB64[(n >> s) & 63] for s in (18, 12, 6, 0))
    return out


def test_sb64_known_values() -> None:
    assert sb64(b"\x02") == "2"
    assert sb64(b"\x00\x00\x40") == "0010"
    assert sb64(b"\x01\x00\x00\x00") == "10000"


def write_tpasswd(d: Path, creds: Credentials) -> tuple[Path, Path]:
    """tpasswd.conf with the RFC 5054 2048-bit group as index 1, tpasswd with one verifier."""
    g, n = goodGroupParameters[2]
    assert n.bit_length() == 2048
    salt = b"\x01" + os.urandom(15)  # a leading zero byte would not survive libsrp base64
    x = makeX(bytearray(salt), bytearray(creds.username, "ascii"),
              bytearray(creds.password, "ascii"))
    v = powMod(g, x, n)
    conf, pw = d / "tpasswd.conf", d / "tpasswd"
    conf.write_text(f"1:{sb64(bytes(numberToByteArray(n)))}:{sb64(bytes([g]))}\n")
    pw.write_text(f"{creds.username}:{sb64(bytes(numberToByteArray(v)))}:{sb64(salt)}:1\n")
    return conf, pw


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


@requires_tool("gnutls-cli")
async def test_gnutls_cli_validates_against_our_server(base: Path) -> None:
    async with provider(base, "b", "b" * 32, tls=None) as b:  # the inner layer, plain stream
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        p = await asyncio.create_subprocess_exec(
            "gnutls-cli", "-p", str(port), host, "--srpusername", RIGHT.username,
            "--srppasswd", RIGHT.password, "--priority", PRIORITY,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            p.communicate(encode_message(Validate("a.example.net", "0000000000000001"))), 60)
        assert b"Handshake was completed" in out + err, err.decode()[-2000:]
        assert b"(SRP)" in out + err
        start = out.index(b"\x00\x00\x00")
        (msg,) = Framer().feed(out[start:].split(b"- Peer has closed")[0])
        assert isinstance(msg, ValInfo) and msg.number == CALLEE
        await b.server.wait_logged(1)
        (rec,) = await b.store.list_validations()
        assert rec.outcome == "ok"


@requires_tool("gnutls-cli")
async def test_gnutls_cli_wrong_password_is_refused(base: Path) -> None:
    async with provider(base, "b", "b" * 32, tls=None) as b:  # the inner layer, plain stream
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        p = await asyncio.create_subprocess_exec(
            "gnutls-cli", "-p", str(port), host, "--srpusername", RIGHT.username,
            "--srppasswd", "1;2", "--priority", PRIORITY,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode != 0
        await b.server.wait_logged(1)
        (rec,) = await b.store.list_validations()
        assert rec.outcome == "failed" and rec.reason.startswith("wrong-password")


async def _gnutls_serv(d: Path, creds: Credentials) -> tuple[asyncio.subprocess.Process, int]:
    conf, pw = write_tpasswd(d, creds)
    for _ in range(5):  # a leased port may still be taken by a process outside the leases
        port = free_port()  # gnutls-serv cannot report a port it chose itself
        p = await asyncio.create_subprocess_exec(
            "gnutls-serv", "-p", str(port), "--echo", "--srppasswd", str(pw),
            "--srppasswdconf", str(conf), "--priority", PRIORITY,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert p.stdout is not None
        async with asyncio.timeout(30):
            while b"listening on IPv4" not in (line := await p.stdout.readline()):
                assert line, "gnutls-serv exited"
        if b"bind() failed" not in line:
            return p, port
        p.terminate()
        await p.wait()
    raise AssertionError("gnutls-serv found no free port")


@requires_tool("gnutls-serv")
async def test_our_client_against_gnutls_serv(base: Path) -> None:
    p, port = await _gnutls_serv(base, RIGHT)
    try:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_conn, "127.0.0.1", port)
        await conn.handshake_client(RIGHT.username, RIGHT.password)
        assert conn.tls is not None and conn.tls.version == (3, 3)
        await conn.write(b"ping\n")
        assert await conn.read() == b"ping\n"
        await conn.close()
        # and the wrong password fails
        _, conn = await loop.create_connection(_conn, "127.0.0.1", port)
        with pytest.raises(SrpError):
            await conn.handshake_client(RIGHT.username, "0;0")
        conn.abort()
    finally:
        p.terminate()
        await asyncio.wait_for(p.wait(), 10)
