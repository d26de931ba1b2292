"""The pvp pauses while PostgreSQL is down and resumes when it is back (issue 15 item 3,
DESIGN §12): two providers' PvpDaemons on one throw-away cluster of their own, stopped with
`pg_ctl stop -m fast` and started again. While it is down, A's pvp holds the validation of a
VCR announced meanwhile (`vcr_added`), refuses `validate` with "paused", says so in `status`;
B's pvp refuses PVP connections. When it is back both resume and the held validation runs:
A learns B's route, nothing lost."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pvp_harness import (
    FakeOverlay,
    Provider,
    assert_learned,
    claim,
    cleanup,
    node_tls,
    short_dir,
    vcr,
    with_federation,
    write_config,
)

from tests.conftest import requires_postgresql
from tests.pg_cluster import Cluster, fresh_database, pg_bin
from vipr.config import load_config
from vipr.health import _role_health
from vipr.ipc import IpcError, IpcServer, ipc_call
from vipr.pvp.daemon import PvpDaemon
from vipr.store import Store

pytestmark = [requires_postgresql, pytest.mark.timeout(180)]

NODE_A, NODE_B = "a1" * 16, "b2" * 16
BOUND = 30.0   # seconds: a bound for noticing the outage and the return, not a figure


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _until(what: str, check: Callable[[], bool], timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_pvp_pauses_during_an_outage_and_resumes(base: Path) -> None:
    bin_dir = pg_bin()
    assert bin_dir is not None
    cluster = await asyncio.to_thread(Cluster, bin_dir)   # its own: this test stops it
    try:
        async with AsyncExitStack() as stack:
            daemons: dict[str, PvpDaemon] = {}
            for name, node in (("a", NODE_A), ("b", NODE_B)):
                cfg = with_federation(load_config(write_config(base, name)),
                                      f"sip:{name}.example.net:5061;transport=tls")
                cfg = dataclasses.replace(cfg, database=fresh_database(cluster))
                store = await stack.enter_async_context(Store.open(cfg.database))
                d = PvpDaemon(cfg, store, offload=True, backoff=(1.0, 2.0, 4.0),
                              tls=node_tls(base / name / "pki", node,
                                           user=f"pvp@{name}.example.net"))
                await d.start()
                stack.push_async_callback(d.close)
                daemons[name] = d
            a, b = daemons["a"], daemons["b"]
            overlay = FakeOverlay([NODE_A], claims={"+4930123456": [claim(NODE_B)]},
                                  peers={NODE_B: b.server.address})
            ov = IpcServer(a.cfg.runtime_dir / "overlay.sock", overlay.handlers())
            await ov.start()
            stack.push_async_callback(ov.close)
            await b.store.add_vcr(vcr("terminating"))
            vid = await a.store.add_vcr(vcr("originating"))
            assert vid is not None
            sock = a.cfg.runtime_dir / "pvp.sock"

            await asyncio.to_thread(cluster.stop)
            # A learns of a VCR while the database is down: held, not lost
            assert (await ipc_call(sock, "vcr_added", {"id": vid}, 10.0))["queued"] is True
            st = await ipc_call(sock, "status", {}, 10.0)
            assert st["store"]["state"] == "paused" and st["store"]["reason"], st
            with pytest.raises(IpcError) as refused:
                await ipc_call(sock, "validate", {"number": "+4930123456"}, 10.0)
            assert refused.value.code == "paused", refused.value
            assert (await _role_health(sock, "pvp"))["ok"] is False   # `vipr health`
            await _until("B's pvp pauses", lambda: b.watch.paused)
            # B refuses PVP connections at accept while paused
            reader, writer = await asyncio.open_connection(*b.server.address)
            assert await asyncio.wait_for(reader.read(), 10.0) == b""
            writer.close()
            assert b.watch.refused >= 1
            assert a.client.counters.learned == 0 and a.client.watch.held >= 1

            await asyncio.to_thread(cluster.start)
            await _until("A's held validation ran", lambda: a.client.counters.learned == 1)
            assert not a.watch.paused and not b.watch.paused
            pa = Provider(a.cfg, a.store, a.server, a.client, overlay, [], None)
            pb = Provider(b.cfg, b.store, b.server, b.client, FakeOverlay([NODE_B]), [], None)
            await assert_learned(pa, pb)
            st = await ipc_call(sock, "status", {}, 10.0)
            assert st["store"]["state"] == "running" and st["store"]["pauses"] == 1, st
            assert (await _role_health(sock, "pvp"))["ok"] is True
    finally:
        await asyncio.to_thread(cluster.remove)
