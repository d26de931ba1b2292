"""`vipr health` (issue 16, for container HEALTHCHECKs): exit 0/1 from the roles' sockets."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import A_NUMBER, VIPR, ProxyProcess, write_provider


def health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIPR, "health", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(60)
async def test_health_reports_running_and_missing_roles(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    cfg = str(p.config)
    down = await asyncio.to_thread(health, "--config", cfg, "--role", "proxy")
    assert down.returncode == 1 and "proxy: FAIL" in down.stdout, down.stdout + down.stderr
    proxy = await ProxyProcess(p).start()
    try:
        up = await asyncio.to_thread(health, "--config", cfg, "--role", "proxy")
        assert up.returncode == 0 and "proxy: ok" in up.stdout, up.stdout + up.stderr
        every = await asyncio.to_thread(health, "--config", cfg, "--json")
        assert every.returncode == 1, every.stdout          # overlay and pvp are not running
        doc = json.loads(every.stdout)
        assert doc["ok"] is False
        assert {c["role"]: c["ok"] for c in doc["checks"]} == {
            "overlay": False, "pvp": False, "proxy": True}
        sip = await asyncio.to_thread(health, "--sip", f"127.0.0.1:{p.internal}")
        assert sip.returncode == 0 and "SIP/2.0 200" in sip.stdout, sip.stdout + sip.stderr
    finally:
        await proxy.stop()
    gone = await asyncio.to_thread(health, "--sip", f"127.0.0.1:{p.internal}", "--json")
    assert gone.returncode == 1 and json.loads(gone.stdout)["ok"] is False
