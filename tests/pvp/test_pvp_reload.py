"""Issue 16 item 4 (pvp side): SIGHUP re-reads the config of a running `vipr pvp`: the outer
TLS certificates are loaded again for new connections and a domain now denied is refused;
the daemon keeps running. Two real pvp processes, as in test_pvp_e2e; the test waits for log
lines, not for time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pvp_harness import CALLEE
from test_pvp_e2e import _import, _two_pvp_daemons, base, pki_cfgs, run

from tests.ports import free_port

__all__ = ["base"]   # the fixture, imported for this module

pytestmark = pytest.mark.timeout(120)


async def wait_log(log: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in (out := log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{out}"
        await asyncio.sleep(0.05)
    return out


async def test_sighup_applies_a_denied_domain_to_new_validations(base: Path) -> None:
    b_port = free_port()
    a_cfg, b_cfg, node_a, node_b = await pki_cfgs(base, b_port)
    await _import(a_cfg, b_cfg, base)

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        return {"cached": True}

    b_log = b_cfg.parent / "pvp.log"
    async with _two_pvp_daemons(base, a_cfg, b_cfg, b_port, route_learned,
                                (node_a, node_b)):
        started = await wait_log(b_log, "pvp starting (config")
        pid = re.search(r"pvp starting \(config .*? pid=(\d+)", started)
        assert pid is not None, started
        b_cfg.write_text(b_cfg.read_text().replace(
            "  handshake_timeout: 20s\n",
            "  handshake_timeout: 20s\n  deny_domains: [a.example.net]\n"))
        os.kill(int(pid.group(1)), signal.SIGHUP)
        out = await wait_log(b_log, "reload done")
        assert "outer TLS: new certificates for new connections" in out
        rc, out, err = await run("validate", CALLEE, "--config", str(a_cfg))
        assert rc != 0 or not out.startswith(f"{CALLEE}: learned"), out + err
        await wait_log(b_log, "domain-denied a.example.net")

