"""The overlay daemon's socket API over in-memory nodes (configs made by `vipr ca`)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from memring import MemNode, MemRing, RingRequestError
from overlay_net import make_overlay

from tests.conftest import stop_all
from vipr.config import load_config
from vipr.ipc import IpcError, ipc_call
from vipr.reload.aio.daemon import OverlayDaemon
from vipr.store import Store


class FakeReloadNode(MemNode):
    """ReloadNode's API over a MemRing (no sockets)."""

    rings: dict[str, MemRing] = {}

    def __init__(self, **kw: Any) -> None:
        ring = self.rings.setdefault("r", MemRing())
        super().__init__(ring, kw["context"], kw["storage"])
        self.app_attach_cb = kw["app_attach"]
        self.listen = kw["listen"]
        self.kw = kw

    async def start(self) -> None:
        self.ring.add(self)

    async def stop(self, *, leave: bool = True, leave_timeout: float | None = None) -> None:
        self.ring.kill(self.node_id)
        self.ring.changed()

    async def app_attach(self, peer_id: bytes, application: int, *,
                         timeout: float | None = None) -> tuple[str, int]:
        peer = self.ring.nodes.get(peer_id)
        if peer is None or peer_id not in self.ring.alive:
            raise RingRequestError(4, "unreachable")
        addr = peer.app_attach_cb(application)  # type: ignore[attr-defined]
        if addr is None:
            raise RingRequestError(3, "no such application")
        return tuple(addr)  # type: ignore[return-value]

    def status(self) -> dict[str, Any]:
        return {"node_id": self.node_id.hex(), "listen": f"{self.listen[0]}:{self.listen[1]}",
                "predecessors": [], "successors": [s.hex() for s in self.successors()],
                "fingers": [], "links": []}


async def test_daemon_socket_api(tmp_path: Path) -> None:
    FakeReloadNode.rings.clear()
    a_nums = ["+14085550001", "+14085550002", "+14085550003"]
    b_nums = ["+442071230001", "+14085550001"]
    # one multi-Node-ID certificate per provider (in memory, links do not matter)
    paths = make_overlay(tmp_path, [("pa", a_nums, 2), ("pb", b_nums, 3)], per_node=False)
    daemons = [OverlayDaemon(load_config(p), node_factory=FakeReloadNode, hold_down=0.05)
               for p in paths]
    stops = [asyncio.Event() for _ in daemons]
    tasks = []
    try:
        for d, s in zip(daemons, stops, strict=True):
            tasks.append(asyncio.create_task(d.run(s)))
            async with asyncio.timeout(30):
                while d.state != "running":
                    await asyncio.sleep(0.02)
        sa, sb = (d.cfg.socket_path("overlay") for d in daemons)
        assert (await ipc_call(sa, "publish", {}))["published"] == 3
        assert (await ipc_call(sb, "publish", {}))["published"] == 2
        ans = await ipc_call(sb, "lookup", {"number": "+1 408 555 0001"})
        assert ans["number"] == "+14085550001" and ans["resource"] == "N"
        assert {c["vservice"] for c in ans["claims"]} == {"0000000000000001", "0000000000000002"}
        empty = await ipc_call(sa, "lookup", {"number": "+15550000000"})
        assert empty["claims"] == []
        claim_a = next(c for c in ans["claims"] if c["vservice"] == "0000000000000001")
        att = await ipc_call(sb, "attach", {"peer_id": claim_a["peer_id"], "application": 61441})
        pvp = daemons[0].cfg.pvp.listen
        assert att == {"host": pvp.host, "port": pvp.port}
        try:
            await ipc_call(sb, "attach", {"peer_id": "00" * 16, "application": 61441})
            raise AssertionError("attach to an unknown peer must fail")
        except IpcError as e:
            assert e.code == "unreachable"
        st = await ipc_call(sa, "status", {})
        assert len(st["nodes"]) == 2 and st["published"] == 3 and st["state"] == "running"
        # the nodes use the document's max-message-size (a full VIPR resource fits, DESIGN §4)
        # and the configured listener limits
        for d in daemons:
            for node in d.nodes:
                assert node.kw["max_message_size"] == d.conf.max_message_size >= 100_000
                assert node.kw["limits"] == d.cfg.overlay.limits
        assert sum(n["stored"] for n in st["nodes"]) >= 1
        async with Store.open(daemons[0].cfg.database) as store:
            assert [p.number for p in await store.list_published()] == sorted(a_nums)
    finally:
        for s in stops:
            s.set()
        await stop_all(tasks, timeout=30, what="overlay daemons")   # run() must return cleanly


def test_hold_down_comes_from_the_config(tmp_path: Path) -> None:
    paths = make_overlay(tmp_path, [("pa", ["+14085550001"], 1)], per_node=False)
    cfg = load_config(paths[0])
    assert OverlayDaemon(cfg).hold_down == 30.0  # overlay.replication_hold_down default
    quick = dataclasses.replace(
        cfg, overlay=dataclasses.replace(cfg.overlay, replication_hold_down=2.0))
    assert OverlayDaemon(quick).hold_down == 2.0
    assert OverlayDaemon(quick, hold_down=0.05).hold_down == 0.05


async def test_publish_before_any_node_joined_says_joining(tmp_path: Path) -> None:
    """`publish` while the nodes join: the socket's "joining" error, not a crash (there is no
    node to publish from yet)."""
    (cfg,) = make_overlay(tmp_path, [("pa", ["+14085550001"], 1)], per_node=False)
    d = OverlayDaemon(load_config(cfg))
    try:
        await d.ipc_publish({})
    except IpcError as e:
        assert e.code == "joining", e
    else:
        raise AssertionError("publish without a node succeeded")
