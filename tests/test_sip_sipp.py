"""Interop with SIPp (Debian sip-tester): its built-in uac/uas scenarios, 100 calls each."""

from __future__ import annotations

import asyncio
import socket
import tempfile

import pytest

from tests.conftest import requires_tool
from tests.ports import free_port
from vipr.proxy.sip.ua import SimpleUAC, SimpleUAS

pytestmark = [requires_tool("sipp"), pytest.mark.slow, pytest.mark.timeout(90)]
CALLS = 100


def sipp_args(scenario: str, transport: str, port: int) -> list[str]:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    return [
        "sipp", "-sn", scenario, "-t", "u1" if transport == "udp" else "t1",
        "-i", "127.0.0.1", "-p", str(port if port else free_port(kind)),
        "-mp", str(free_port()), "-cp", str(free_port()),
        "-m", str(CALLS), "-nostdin", "-timeout", "40s", "-timeout_error",
    ]


async def run_sipp(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=tempfile.gettempdir())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_against_our_uas(transport: str) -> None:
    uas = SimpleUAS()
    _, port = await uas.start(transport, "127.0.0.1")
    try:
        args = [*sipp_args("uac", transport, 0), f"127.0.0.1:{port}",
                "-r", "100", "-l", "50"]
        proc = await run_sipp(args)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert (uas.invites, uas.acks, uas.byes) == (CALLS, CALLS, CALLS)
    finally:
        await uas.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_our_uac_against_sipp_uas(transport: str) -> None:
    port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    proc = await run_sipp(sipp_args("uas", transport, port))
    uac = SimpleUAC()
    await uac.start(transport, "127.0.0.1")
    sem = asyncio.Semaphore(10)

    async def one() -> int:
        async with sem:
            for _ in range(50):   # SIPp may still be starting: TCP connect is refused
                try:
                    return await uac.call("127.0.0.1", port, timeout=20)
                except ConnectionError:
                    await asyncio.sleep(0.1)
            return 0

    try:
        results = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(CALLS)]), 60)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert results == [200] * CALLS
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await uac.close()
