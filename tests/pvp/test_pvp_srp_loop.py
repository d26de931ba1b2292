"""SrpConnection on the event loop: one deadline per connection, and time slicing of the TLS
work among connections (vipr.pvp.srp `_LoopSlice`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from vipr.pvp import srp
from vipr.pvp.srp import SrpConnection, SrpError


async def _order(slice_used: bool) -> list[object]:
    loop = asyncio.get_running_loop()
    sl = srp._LoopSlice(loop)
    if slice_used:
        sl.start = time.perf_counter() - 10 * srp.LOOP_SLICE
    order: list[object] = []

    async def step(i: int) -> None:
        await sl.turn()
        order.append(i)

    tasks = [asyncio.create_task(step(i)) for i in range(3)]
    loop.call_soon(order.append, "other")  # other work, ready in the same iteration
    await asyncio.gather(*tasks)
    return order


async def test_a_used_slice_lets_other_work_run_first() -> None:
    assert await _order(slice_used=True) == ["other", 0, 1, 2]


async def test_a_fresh_slice_does_not_yield(monkeypatch: pytest.MonkeyPatch) -> None:
    # "fresh" must not depend on how fast this machine runs the next lines: a slice so long
    # that it cannot be used up here (the used-slice test above needs no such help)
    monkeypatch.setattr(srp, "LOOP_SLICE", 3600.0)
    assert await _order(slice_used=False) == [0, 1, 2, "other"]


async def test_client_against_a_silent_server_times_out_at_its_lifetime() -> None:
    loop = asyncio.get_running_loop()
    accepted: list[asyncio.StreamWriter] = []

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # reads nothing, answers nothing

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        _, conn = await loop.create_connection(lambda: SrpConnection(lifetime=0.2),
                                               *srv.sockets[0].getsockname()[:2])
        with pytest.raises(SrpError) as ei:
            await asyncio.wait_for(conn.handshake_client("pvp1;+1;+2;0;0.000;0.000", "1;2"), 10)
        assert ei.value.kind == "timeout"
        assert conn.expired and conn.transport is not None and conn.transport.is_closing()
        with pytest.raises(SrpError) as ei:  # and every later operation too
            await conn.read()
        assert ei.value.kind == "timeout"
    finally:
        for w in accepted:
            w.close()
        srv.close()
