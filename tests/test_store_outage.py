"""Database outage (issue 15 item 3): the proxy's VCR changes go to an on-disk spool while
PostgreSQL is down and are written when it returns, nothing lost or duplicated (counted),
across a proxy restart too. The spool's own rules are tested without a database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import requires_postgresql, until
from tests.pg_cluster import Cluster, pg_bin
from vipr.proxy.vcrwriter import VcrWriter
from vipr.store import Store, StoreError, Vcr
from vipr.store.models import CompleteVcr, OpenVcr, VcrChange
from vipr.store.spool import VcrSpool, encode_change

T0 = 1_700_000_000.0
BOUND = 60.0   # seconds: a bound for the replay, not a figure the test relies on


def answered(call_id: str, start: float) -> OpenVcr:
    return OpenVcr(Vcr(None, "originating", "+14085551234", "+442071234567", start, start,
                       call_id, start, state="open"), '{"legs": 2}')


def hung_up(call_id: str, start: float) -> CompleteVcr:
    return CompleteVcr(Vcr(None, "originating", "+14085551234", "+442071234567", start,
                           start + 42, call_id, start + 42))


async def _calls(w: VcrWriter, names: list[str], *, bye: bool = True) -> None:
    """Answer (and hang up) calls the way the proxy does: wait for each change's future."""
    for i, c in enumerate(names):
        await w.submit(answered(c, T0 + i))
        if bye:
            await w.submit(hung_up(c, T0 + i))


@requires_postgresql
async def test_outage_spools_and_replays_exactly_once(tmp_path: Path) -> None:
    bin_dir = pg_bin()
    assert bin_dir is not None
    cluster = await asyncio.to_thread(Cluster, bin_dir)   # its own: this test stops it
    spool_dir, sock = tmp_path / "spool", tmp_path / "pvp.sock"
    try:
        store = await Store.open(cluster.url())
        try:
            w = VcrWriter(store, sock, spool_dir)
            w.start()
            before = [f"before-{i}" for i in range(20)]
            await _calls(w, before)
            assert w.spooled == 0

            await asyncio.to_thread(cluster.stop)
            during = [f"during-{i}" for i in range(30)]
            ongoing = [f"ongoing-{i}" for i in range(10)]
            await _calls(w, during)
            await _calls(w, ongoing, bye=False)
            assert (w.spooled, w.spool_pending, w.failed) == (70, 70, 0)
            await w.close()   # the proxy restarts while the database is still away

            w = VcrWriter(store, sock, spool_dir)
            assert w.spool_pending == 70
            await asyncio.to_thread(cluster.start)
            w.start()
            await until("spool replayed", lambda: w.spool_pending == 0, timeout=BOUND)
            for i, c in enumerate(ongoing):   # their BYEs come after the database is back
                assert await w.submit(hung_up(c, T0 + i)) is not None
            await w.close()
            assert not any(spool_dir.iterdir())   # replayed: the spool files are gone

            # A crash between a replay's commit and the spool's progress mark replays those
            # changes again: nothing changes.
            again = [answered(c, T0 + i) for i, c in enumerate(during)] + [
                hung_up(c, T0 + i) for i, c in enumerate(during)]
            assert VcrSpool(spool_dir).append(list(again)) == len(again)
            w = VcrWriter(store, sock, spool_dir)
            w.start()
            await until("second replay", lambda: w.spool_pending == 0, timeout=BOUND)
            await w.close()

            vcrs = await store.list_vcrs(limit=None)
            names = sorted(v.call_id for v in vcrs)
            assert names == sorted(before + during + ongoing)   # none lost, none twice
            assert {(v.state, v.duration) for v in vcrs} == {("complete", 42.0)}
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(cluster.remove)


def test_spool_bound_torn_line_and_progress(tmp_path: Path) -> None:
    s = VcrSpool(tmp_path / "sp", max_changes=5)
    changes: list[VcrChange] = [answered(f"c{i}", T0 + i) for i in range(7)]
    assert s.append(changes) == 5 and s.pending == 5   # the bound: two refused
    with open(tmp_path / "sp" / "changes.jsonl", "ab") as f:
        f.write(encode_change(changes[5])[:-9])   # a crash while appending
    s = VcrSpool(tmp_path / "sp", max_changes=5)
    assert s.pending == 5
    got, end, n = s.peek(3)
    assert got == changes[:3] and n == 3
    s.commit(end, n)
    s = VcrSpool(tmp_path / "sp")   # progress survives a restart
    got, end, n = s.peek(100)
    assert got == changes[3:5] and s.pending == 2
    s.commit(end, n)
    assert s.pending == 0
    assert not (tmp_path / "sp" / "done").exists()


@pytest.mark.parametrize("line", [b"{}\n", b"not json\n",
                                  b'{"t":"open","v":{"direction":"up"}}\n'])
def test_spool_skips_unreadable_lines(tmp_path: Path, line: bytes) -> None:
    s = VcrSpool(tmp_path / "sp")
    s.append([answered("a", T0)])
    with open(tmp_path / "sp" / "changes.jsonl", "ab") as f:
        f.write(line)
    s.append([hung_up("a", T0)])
    s = VcrSpool(tmp_path / "sp")
    got, _, n = s.peek(10)
    assert n == 3 and [type(c).__name__ for c in got] == ["OpenVcr", "CompleteVcr"]


class _DownStore:
    """A store whose database is away (a fake, beside the real-cluster test above)."""

    async def apply_vcr_changes(self, changes: Sequence[VcrChange]) -> list[int | None]:
        raise StoreError("database away")


async def test_spool_file_work_leaves_the_event_loop_free(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the spool's append (an fsync) ran on the event loop, so a slow disk held up
    every SIP timer of the proxy (INVITE retransmitted after the answer, calls lost under
    200 calls/s). The append below waits for a callback of the loop: it only comes if the
    append runs off the loop."""
    loop_ran = threading.Event()
    seen: list[bool] = []
    real_append = VcrSpool.append

    def slow_append(self: VcrSpool, changes: list[VcrChange]) -> int:
        seen.append(loop_ran.wait(timeout=5))
        return real_append(self, changes)

    monkeypatch.setattr(VcrSpool, "append", slow_append)
    w = VcrWriter(_DownStore(), tmp_path / "pvp.sock", tmp_path / "spool")  # type: ignore[arg-type]
    w.start()
    try:
        fut = w.submit(answered("c1", T0))
        asyncio.get_running_loop().call_later(0.05, loop_ran.set)
        assert await asyncio.wait_for(fut, BOUND) is None
        assert seen == [True] and (w.spooled, w.spool_pending, w.failed) == (1, 1, 0)
    finally:
        await w.close()
