"""Issue 13 defect 2 (overlay): the RELOAD listener admits connections through a gate before
TLS, and closes peers that stay silent past the handshake timeout. Real sockets, real TLS."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from node_harness import Overlay, make_overlay

from vipr.limits import ListenerLimits
from vipr.reload.aio.link import connect
from vipr.reload.aio.node import ReloadNode
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher, lookup
from vipr.reload.core.framing import FRAME_DATA
from vipr.reload.core.storage import DataStore
from vipr.reload.overlay_config import vipr_kind

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    return make_overlay(tmp_path_factory.mktemp("limits"), 3)


def _with_storage(overlay: Overlay, i: int, **kw: object) -> tuple[ReloadNode, StorageService]:
    svc = StorageService(DataStore([vipr_kind()], overlay.trust()), hold_down=0.05)
    node = overlay.make_node(overlay.creds[i], create=not overlay.nodes, storage=svc, **kw)
    return node, svc


async def _eof(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closed the connection within `timeout` (EOF or reset)."""
    try:
        return await asyncio.wait_for(reader.read(1024), timeout) == b""
    except TimeoutError:  # (an OSError too: first)
        return False
    except (ConnectionError, OSError):
        return True


async def test_per_address_cap_holds_and_a_legitimate_node_still_links(pool: Overlay,
                                                                        tmp_path: Path) -> None:
    overlay = Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)
    overlay.changed = asyncio.Event()
    limits = ListenerLimits(max_connections=64, max_connections_per_address=4,
                            handshake_timeout=60.0)
    a, svc_a = _with_storage(overlay, 0, limits=limits)
    await a.start()
    svc_a.attach(a)
    overlay.nodes.append(a)
    host, port = a.address
    squat: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    b: ReloadNode | None = None
    svc_b: StorageService | None = None
    try:
        for _ in range(12):  # the attacker: plain TCP from 127.0.0.2, never a handshake
            squat.append(await asyncio.open_connection(host, port,
                                                      local_addr=("127.0.0.2", 0)))
        closed = [await _eof(r, 2.0) for r, _ in squat[4:]]
        assert all(closed), closed  # refused at accept
        assert not await _eof(squat[0][0], 0.2)  # the first four are held (until the timeout)
        st = a.status()["listener"]
        assert st["refused"] == {"address_full": 8}
        assert st["open"] == 4
        # a legitimate provider from 127.0.0.1 joins, stores and fetches through the node
        b, svc_b = _with_storage(overlay, 1, limits=limits)
        b.bootstrap = (a.address,)
        await b.start()
        svc_b.attach(b)
        overlay.nodes.append(b)
        await overlay.converge(20)
        number = "+14085550777"
        assert await ViprPublisher(b, "00000000000000b2").publish(number) == 3
        r = await lookup(a, number, timeout=5.0)
        assert [c.node_id for c in r.claims] == [b.node_id]
        r = await lookup(b, number, timeout=5.0)
        assert [c.node_id for c in r.claims] == [b.node_id]
    finally:
        for _, w in squat:
            w.close()
        for node, svc in ((b, svc_b), (a, svc_a)):
            if node is not None:
                await node.stop(leave=False)
            if svc is not None:
                await svc.close()


async def test_silent_peers_are_closed_after_the_handshake_timeout(pool: Overlay,
                                                                   tmp_path: Path) -> None:
    overlay = Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)
    limits = ListenerLimits(handshake_timeout=0.5)
    a = overlay.make_node(overlay.creds[0], create=True, limits=limits)
    await a.start()
    try:
        host, port = a.address
        # 1. plain TCP that never starts TLS
        reader, writer = await asyncio.open_connection(host, port)
        assert await _eof(reader, 10.0)
        writer.close()
        # 2. a half-sent TLS ClientHello (slowloris)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x16\x03\x01\x02\x00\x01")
        assert await _eof(reader, 10.0)
        writer.close()
        # 3. an enrolled member that completes TLS but never sends a RELOAD message
        link = await connect(host, port, overlay.creds[1].write(tmp_path, "silent"),
                             overlay.trust())
        try:
            await asyncio.wait_for(link.closed.wait(), 10.0)
        finally:
            await link.close()
        # 4. a frame header announcing more than max-message-size is refused, not buffered
        link = await connect(host, port, overlay.creds[1].write(tmp_path, "big"),
                             overlay.trust())
        try:
            await link.send_raw(bytes([FRAME_DATA]) + b"\0\0\0\1" + (1 << 23).to_bytes(3, "big")
                                + b"\0" * 64)
            await asyncio.wait_for(link.closed.wait(), 10.0)
        finally:
            await link.close()
        def held() -> tuple[object, object]:
            st = a.status()["listener"]
            return st["open"], st["members"]

        for _ in range(100):  # every connection is counted out again (bounded wait)
            if held() == (0, 0):
                break
            await asyncio.sleep(0.05)
        assert held() == (0, 0)
        # 1 and 2 ran out of time in the TLS handshake: counted, not logged one by one
        closed = a.status()["listener"]["closed"]
        assert closed == {"handshake_timeout": 2}, closed
    finally:
        with contextlib.suppress(Exception):
            await a.stop(leave=False)
