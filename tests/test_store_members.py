"""Store.join_overlay_members / overlay_members (DESIGN §12): the live overlay publishers of a
provider. SQLite: the process alone. PostgreSQL: every process holding its advisory lock, gone
as soon as its store closes; a key already held makes a process take the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import requires_postgresql
from tests.pg_cluster import Cluster, pg_bin
from vipr.store import Store, StoreError


async def test_members_on_both_backends(db_target: str | Path, backend: str) -> None:
    async with Store.open(db_target) as a:
        assert await a.overlay_members() == []
        assert await a.join_overlay_members(1000) == 1000
        assert await a.overlay_members() == [1000]
        if backend == "sqlite":
            return
        async with Store.open(db_target) as b, Store.open(db_target) as c:
            assert await b.join_overlay_members(7) == 7
            assert await c.join_overlay_members(1000) == 1001   # 1000 is a's
            assert await a.overlay_members() == [7, 1000, 1001]
            await b.close()
            assert await c.overlay_members() == [1000, 1001]
        assert await a.overlay_members() == [1000]


@requires_postgresql
async def test_membership_comes_back_after_a_database_restart() -> None:
    bin_dir = pg_bin()
    assert bin_dir is not None
    cluster = await asyncio.to_thread(Cluster, bin_dir)   # its own: this test stops it
    try:
        async with Store.open(cluster.url()) as a, Store.open(cluster.url()) as b:
            await a.join_overlay_members(5)
            await b.join_overlay_members(9)
            assert await a.overlay_members() == [5, 9]
            await asyncio.to_thread(cluster.stop)
            with pytest.raises(StoreError):
                await a.overlay_members()
            await asyncio.to_thread(cluster.start)
            assert await a.overlay_members() in ([5], [5, 9])   # a locks again at once
            assert await b.overlay_members() == [5, 9]          # b too, the same keys
            assert await a.overlay_members() == [5, 9]
    finally:
        await asyncio.to_thread(cluster.remove)
