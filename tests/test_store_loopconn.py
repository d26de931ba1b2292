"""The store's loop-thread connection (vipr.store.loopconn): hot-path statements run on the
loop's thread, fall back to the worker thread when the file is locked, and never checkpoint
on the loop."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_store import route, vcr
from vipr.store import Store, StoreError, loopconn


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "vipr.db") as s:
        yield s


def _commits(store: Store) -> int:
    assert store._loop_conn is not None
    return store._loop_conn.commits


async def test_hot_path_writes_commit_on_the_loop_thread(store: Store) -> None:
    vid = await store.add_vcr(vcr("o1", "originating"))
    assert vid is not None
    await store.learn_route(route(), vid)
    assert _commits(store) == 1
    v = await store.get_vcr(vid)
    assert v is not None and v.validated is not None
    assert await store.get_route(route().number) == route()
    # ... and a reader on another connection sees it committed
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT count(*) FROM route").fetchone() == (1,)


async def test_locked_file_falls_back_to_the_worker_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid = await store.add_vcr(vcr("o1", "originating"))
    assert store._loop_conn is not None
    met_lock = asyncio.Event()
    on_loop = store._loop_conn.transaction

    def watched(body: Any) -> Any:   # passes through; tells us when the lock was met
        try:
            return on_loop(body)
        except loopconn.LoopBusy:
            met_lock.set()
            raise

    monkeypatch.setattr(store._loop_conn, "transaction", watched)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        task = asyncio.create_task(store.learn_route(route(), vid))
        # the event, not one loop turn: its on-loop attempt met the lock (busy_timeout 0)
        await asyncio.wait_for(met_lock.wait(), 10)
        assert not task.done()
        other.execute("COMMIT")  # the worker thread's attempt now gets the lock
        await asyncio.wait_for(task, 10)
    finally:
        other.close()
    assert _commits(store) == 0  # committed by the worker thread, not on the loop
    assert await store.get_route(route().number) == route()
    # reads are not blocked by a writer in WAL mode: they stay on the loop
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE vcr SET failures = 2")
        v = await asyncio.wait_for(store.get_vcr(vid or 0), 1)
        assert v is not None and v.failures == 0  # the last committed state
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_no_checkpoint_on_the_loop_then_one_on_the_worker(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loopconn, "CHECKPOINT_EVERY", 5)
    db = Path(store.path)

    def digest() -> str:
        return hashlib.sha256(db.read_bytes()).hexdigest()

    await store.add_vcr(vcr("o1", "originating"))
    await store._fetch("PRAGMA wal_checkpoint(TRUNCATE)")
    before = digest()
    for i in range(4):
        await store.learn_route(route(f"+1408555{i:04d}"), None)
    assert store._checkpoint is None and digest() == before  # all in the WAL
    await store.learn_route(route("+14085559999"), None)  # the 5th commit
    assert store._checkpoint is not None
    await asyncio.wait_for(store._checkpoint, 10)
    assert digest() != before  # pages copied into the database file


async def test_closed_store_refuses_on_loop_work(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "vipr.db")
    await s.close()
    with pytest.raises(StoreError):
        await s.get_vcr(1)
    with pytest.raises(StoreError):
        await s.learn_route(route(), None)


async def test_memory_store_has_no_loop_connection() -> None:
    async with Store.open(":memory:") as s:
        assert s._loop_conn is None
        vid = await s.add_vcr(vcr("o1", "originating"))
        await s.learn_route(route(), vid)
        assert await s.get_route(route().number) == route()
