"""PostgreSQL stopped under load (issue 15 acceptance, scaled down to a few seconds): calls
through a real `vipr proxy` keep completing while the database is away, and once it is back
every call has exactly one complete VCR (counted), nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import requires_postgresql, requires_tool
from tests.pg_cluster import Cluster, pg_bin
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    ProxyProcess,
    finish,
    free_port,
    kill,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.store import Store

pytestmark = [requires_tool("sipp"), requires_postgresql, pytest.mark.timeout(150)]

CALLS, RATE = 300, 40          # about 7.5 s of calls
OUTAGE_AFTER = 60              # complete VCRs in the database before it is stopped
OUTAGE = 3.0                   # seconds the database stays away while calls go on


async def _complete(url: str) -> int:
    async with Store.open(url) as s:
        return sum(v.state == "complete" for v in await s.list_vcrs(limit=None))


async def test_calls_go_on_and_no_vcr_is_lost_while_postgresql_is_down(tmp_path: Path) -> None:
    bin_dir = pg_bin()
    assert bin_dir is not None
    cluster = await asyncio.to_thread(Cluster, bin_dir)
    try:
        a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
        a.config.write_text(a.config.read_text().replace(
            "database: vipr.db", f"database: {cluster.url()}"))
        proxy = await ProxyProcess(a).start()
        gw = await run(sipp_cmd("uas", a.gateway, calls=CALLS), tmp_path)
        try:
            uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                     service=B_NUMBER, calls=CALLS, rate=RATE,
                                     duration_ms=200), tmp_path)
            deadline = time.monotonic() + 60
            while await _complete(cluster.url()) < OUTAGE_AFTER:
                assert time.monotonic() < deadline, proxy.log_text()
                await asyncio.sleep(0.1)
            await asyncio.to_thread(cluster.stop)
            await asyncio.sleep(OUTAGE)   # the outage itself: calls go on meanwhile
            spooled = (await proxy.status())["vcrs"]
            await asyncio.to_thread(cluster.start)
            rc, err = await finish(uac)
            assert rc == 0, err + proxy.log_text()   # 0 failed calls
            deadline = time.monotonic() + 60
            while (await proxy.status())["vcrs"]["spool_pending"]:  # type: ignore[index]
                assert time.monotonic() < deadline, proxy.log_text()
                await asyncio.sleep(0.1)
            status = await proxy.status()
        finally:
            await kill(gw)
            await proxy.stop()
        assert spooled["spooled"] > 0, spooled   # type: ignore[index]
        assert status["vcrs"]["failed"] == 0     # type: ignore[index]
        async with Store.open(cluster.url()) as s:
            vcrs = await s.list_vcrs(limit=None)
        assert len(vcrs) == len({v.call_id for v in vcrs}) == CALLS   # none lost, none twice
        assert {v.state for v in vcrs} == {"complete"}
        log = proxy.log.read_text(errors="replace")
        assert "database unavailable" in log and "spooled VCR change(s) written" in log
    finally:
        await asyncio.to_thread(cluster.remove)
