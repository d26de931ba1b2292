"""RELOAD error paths (issue 13): a failure while handling or answering one message is answered
with an Error at once and never closes the link or stops the node. Real TLS links."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from node_harness import Overlay, make_overlay

from vipr.reload.aio.node import ReloadRequestError
from vipr.reload.wire import bodies as m
from vipr.reload.wire.context import Received
from vipr.reload.wire.storage_bodies import FetchReq, FindReq, StatReq

pytestmark = pytest.mark.timeout(60)


class Unencodable:
    """An answer body whose encoding fails (a bug in an answer codec)."""

    def encode(self) -> bytes:
        raise ValueError("cannot encode")


class BuggyStorage:
    """Raises for a FetchReq, returns an unencodable answer for a StatReq, answers FindReq."""

    def handle(self, received: Received, now: float) -> Any:
        if isinstance(received.body, FetchReq):
            raise RuntimeError("handler bug")
        if isinstance(received.body, StatReq):
            return Unencodable()
        return m.ErrorResponse.text(m.ErrorCode.NOT_FOUND, "nothing here")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    return make_overlay(tmp_path_factory.mktemp("errors"), 2)


async def test_handler_and_encoding_failures_answer_an_error_and_keep_the_link(
        pool: Overlay, tmp_path: Path) -> None:
    overlay = Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)
    a = overlay.make_node(overlay.creds[0], create=True, storage=BuggyStorage())
    await a.start()
    overlay.nodes.append(a)
    b = overlay.make_node(overlay.creds[1])
    try:
        await b.start()
        link = b._link(a.node_id)
        assert link is not None
        for body in (FetchReq(a.node_id, ()), StatReq(a.node_id, ())):
            with pytest.raises(ReloadRequestError) as ei:
                # far above one round trip: the Error must come at once, not a timeout
                await b.request_direct(a.node_id, body, timeout=20.0)
            assert ei.value.error_code == m.ErrorCode.INVALID_MESSAGE, ei.value
        assert not link.closed.is_set()
        with pytest.raises(ReloadRequestError) as ei:
            await b.request_direct(a.node_id, FindReq(a.node_id, ()), timeout=20.0)
        assert ei.value.error_code == m.ErrorCode.NOT_FOUND
        ans = await b.request_direct(a.node_id, m.PingReq(), timeout=20.0)
        assert isinstance(ans.body, m.PingAns)
        assert b._link(a.node_id) is link and a.joined and b.joined
    finally:
        await asyncio.gather(b.stop(leave=False), a.stop(leave=False))
