"""`vipr tickets rotate|inspect`, `vipr proxy status`, and a proxy that survives bad SIP."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.proxy.proxy_helpers import A_NUMBER, VIPR, ProxyProcess, mint_for, write_provider
from vipr.cli import main
from vipr.store import Store


def test_rotate_adds_epochs_and_inspect_verifies(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    r = CliRunner()
    res = r.invoke(main, ["tickets", "rotate", "--config", str(p.config), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["epoch"] == 1
    res = r.invoke(main, ["tickets", "rotate", "--config", str(p.config)])
    assert res.exit_code == 0 and "epoch 2" in res.output

    async def keys() -> list[int]:
        async with Store.open(p.db) as s:
            return [k.epoch for k in await s.ticket_keys()]

    assert asyncio.run(keys()) == [1, 2]
    tok = asyncio.run(mint_for(p.db, "+442071234567", "b.example.org"))
    res = r.invoke(main, ["tickets", "inspect", tok, "--json"])
    assert res.exit_code == 0
    fields = json.loads(res.output)
    assert (fields["epoch"], fields["number"], fields["domain"]) == (2, "+442071234567",
                                                                     "b.example.org")
    res = r.invoke(main, ["tickets", "inspect", tok, "--config", str(p.config)])
    assert res.exit_code == 0 and "verifies:" in res.output and "True" in res.output
    res = r.invoke(main, ["tickets", "inspect", tok, "--config", str(p.config),
                          "--number", "+442071234568"])
    assert res.exit_code == 1 and "number-mismatch" in res.output
    res = r.invoke(main, ["tickets", "inspect", tok[:-3] + "AAA", "--config", str(p.config)])
    assert res.exit_code == 1 and "bad-mac" in res.output
    res = r.invoke(main, ["tickets", "inspect", "%%%"])
    assert res.exit_code == 1 and "bad-base64" in res.output


async def test_malformed_sip_gets_400_or_is_dropped_and_proxy_keeps_running(
        tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            s.sendto(b"\x00\xff garbage \r\n\r\n", ("127.0.0.1", p.internal))   # dropped
            port = s.getsockname()[1]
            bad = (f"INVITE sip:+1@a SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK1"
                   "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:+1@a>\r\nCall-ID: c1\r\n"
                   "CSeq: 1 INVITE\r\nMax-Forwards: banana\r\nContent-Length: 0\r\n\r\n")
            s.sendto(bad.encode(), ("127.0.0.1", p.internal))
            data, _ = await asyncio.get_running_loop().run_in_executor(None, s.recvfrom, 65535)
            assert data.startswith(b"SIP/2.0 400")
            opts = (f"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK2"
                    "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@a>\r\nCall-ID: c2\r\n"
                    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(opts.encode(), ("127.0.0.1", p.internal))
            data, _ = await asyncio.get_running_loop().run_in_executor(None, s.recvfrom, 65535)
            assert data.startswith(b"SIP/2.0 200")
        out = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
            [*VIPR, "proxy", "status", "--config", str(p.config), "--json"],
            capture_output=True, text=True, timeout=30))
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        assert set(st["interfaces"]) == {"internal", "pstn"}
        assert proxy.proc is not None and proxy.proc.returncode is None
    finally:
        await proxy.stop()


def test_status_without_a_running_proxy_fails_clearly(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    res = CliRunner().invoke(main, ["proxy", "status", "--config", str(p.config)])
    assert res.exit_code == 1 and "proxy not reachable" in res.output


@pytest.mark.timeout(60)
async def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)
    # the event is the exit itself (bounded generously); 0 = clean, not killed
    assert await asyncio.wait_for(proxy.proc.wait(), 45) == 0, proxy.log_text()


@pytest.mark.timeout(60)
async def test_proxy_creates_and_rotates_ticket_keys(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None, rotate_interval="1s")
    proxy = await ProxyProcess(p).start()
    try:
        assert (await proxy.status())["ticket_epochs"] == [1]   # none in the store: created
        deadline = time.monotonic() + 30
        while len((await proxy.status())["ticket_epochs"]) < 2:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, proxy.log_text()
            await asyncio.sleep(0.2)
    finally:
        await proxy.stop()
