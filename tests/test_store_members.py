"""Store.join_overlay_members / overlay_members (DESIGN §12): the live overlay publishers of a
provider. SQLite: the process alone. PostgreSQL: every process holding its advisory lock, gone
as soon as its store closes; a key already held makes a process take the next one."""

from __future__ import annotations

from pathlib import Path

from vipr.store import Store


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
