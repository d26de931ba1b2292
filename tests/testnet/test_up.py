"""`vipr up`: starts one provider's roles, is ready when they are, restarts a dead role,
stops everything on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest

from vipr.ipc import ipc_call
from vipr.supervisor import Child, vipr_argv
from vipr.testnet.workdir import make_workdir

pytestmark = pytest.mark.slow


async def _until(what: str, check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_up_supervises_the_three_roles() -> None:
    with tempfile.TemporaryDirectory(prefix="tu", dir="/tmp") as d:
        tmp = Path(d)
        layout = make_workdir(tmp / "w")
        cfg = layout.configs["a"]
        log = tmp / "up.log"
        up = Child("up", [*vipr_argv(), "up", "--config", str(cfg)], notify_dir=tmp,
                   log_path=log)
        await up.start()
        try:
            await up.wait_ready(60.0)          # READY=1 only once all three roles are ready
            assert up.status == "3 roles running"
            run = layout.runtime_dir("a")
            await ipc_call(run / "overlay.sock", "status")
            await ipc_call(run / "pvp.sock", "status")
            await ipc_call(run / "proxy.sock", "status")
            m = re.search(r"pvp\[(\d+)\]", log.read_text())
            px = re.search(r"proxy\[(\d+)\]", log.read_text())
            assert m and px, log.read_text()
            os.kill(int(m[1]), signal.SIGKILL)            # the role dies …
            await _until("restart logged", lambda: "pvp exited" in log.read_text())
            await _until("pvp back", lambda: (run / "pvp.sock").exists())

            async def pvp_answers() -> bool:
                try:
                    await ipc_call(run / "pvp.sock", "status", timeout=2.0)
                except Exception:
                    return False
                return True

            deadline = time.monotonic() + 30
            while not await pvp_answers():               # … and is back
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        finally:
            code = await up.stop(20.0)
        assert code == 0, log.read_text()
        assert "stopping overlay, pvp, proxy" in log.read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(int(px[1]), 0)                        # the roles went with it
