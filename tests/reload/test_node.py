"""ReloadNode: real TLS links on loopback, many nodes in one process (RFC 6940 §10)."""

from __future__ import annotations

import asyncio
import math
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
from node_harness import FAST, OVERLAY, Overlay, make_overlay, true_owner

from vipr.reload import ca
from vipr.reload.aio.node import ReloadJoinError, ReloadRequestError
from vipr.reload.wire import bodies as m
from vipr.reload.wire.context import Received
from vipr.reload.wire.forwarding import ForwardingHeader, ResourceDestination
from vipr.reload.wire.storage_bodies import FetchAns, FetchReq

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    return make_overlay(tmp_path_factory.mktemp("nodes"), 21)


@pytest.fixture
def overlay(pool: Overlay, tmp_path: Path) -> Overlay:
    return Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)


async def test_twenty_nodes_converge_and_route(overlay: Overlay) -> None:
    try:
        await overlay.start(20)
        took = await overlay.converge(30)
        print(f"\n20 nodes: true successor/predecessor everywhere {took:.2f}s after the last join")
        for n in overlay.nodes:
            assert len(n.successors()) == 3 and len(n.predecessors()) == 3
            assert n.fingers()
        # Every request reaches the node responsible for its Resource-ID (signer of the answer).
        rnd = random.Random(5)
        for n in overlay.nodes:
            n.hop_counts.clear()
        for _ in range(40):
            key = os.urandom(16)
            src = rnd.choice(overlay.nodes)
            ans = await src.request(key, m.PingReq(b"x"), timeout=10)
            owner = true_owner(overlay.nodes, key)
            assert ans.signer is not None and ans.signer.node_id == owner.node_id
            assert owner.is_responsible(key)
            assert sum(n.is_responsible(key) for n in overlay.nodes) == 1
        hops = [h for n in overlay.nodes for h, c in n.hop_counts.items() for _ in range(c)]
        mean = sum(hops) / len(hops)
        print(f"mean hops {mean:.2f} (ideal ½·log2 20 − 0.6 = {0.5 * math.log2(20) - 0.6:.2f}), "
              f"max {max(hops)}")
        assert len(hops) >= 40 and mean < 0.5 * math.log2(20) + 0.5
        # Node-ID destinations, Probe and RouteQuery
        a, b = overlay.nodes[3], overlay.nodes[11]
        ans = await a.request_direct(b.node_id, m.ProbeReq((m.PROBE_RESPONSIBLE_SET,
                                                            m.PROBE_UPTIME)), timeout=10)
        assert isinstance(ans.body, m.ProbeAns) and 0 < ans.body.probe_info[0].value < 10**9
        rq = await a.request_direct(b.node_id, m.RouteQueryReq(False, ResourceDestination(
            b.node_id)), timeout=10)
        assert rq.body == m.ChordRouteQueryAns(b.node_id)
    finally:
        await overlay.stop_all()


async def test_app_attach_returns_callback_address(overlay: Overlay) -> None:
    seen: list[int] = []

    def cb(app: int) -> tuple[str, int] | None:
        seen.append(app)
        return ("127.0.0.1", 7061) if app == m.PVP_APPLICATION_ID else None

    try:
        await overlay.start(1)
        overlay.nodes.append(overlay.make_node(overlay.creds[1], app_attach=cb))
        await overlay.nodes[-1].start()
        await overlay.start(3)
        await overlay.converge(20)
        target = overlay.nodes[1].node_id
        addr = await overlay.nodes[4].app_attach(target, m.PVP_APPLICATION_ID, timeout=10)
        assert addr == ("127.0.0.1", 7061) and seen == [m.PVP_APPLICATION_ID]
        with pytest.raises(ReloadRequestError) as ei:
            await overlay.nodes[4].app_attach(target, 5060, timeout=10)
        assert ei.value.error_code == m.ErrorCode.NOT_FOUND
        with pytest.raises(ReloadRequestError):  # a node without the callback refuses
            await overlay.nodes[4].app_attach(overlay.nodes[0].node_id, m.PVP_APPLICATION_ID,
                                              timeout=10)
    finally:
        await overlay.stop_all()


@pytest.mark.parametrize("kind", ["foreign-ca", "self-signed"])
async def test_node_without_overlay_certificate_cannot_join(overlay: Overlay, kind: str) -> None:
    try:
        await overlay.start(3)
        await overlay.converge(20)
        if kind == "foreign-ca":
            other_cert, other_key = ca.create_ca(OVERLAY)
            creds = ca.issue_node_cert(other_cert, other_key, OVERLAY, "x@evil.example")
        else:
            creds = ca.self_signed_node_cert(OVERLAY, "x@evil.example")
        timers = replace(FAST, join_timeout=5.0)
        # It trusts the overlay CA (so only its own certificate is the problem).
        intruder = overlay.make_node(creds, timers=timers)
        with pytest.raises(ReloadJoinError):
            await intruder.start()
        for n in overlay.nodes:
            assert creds.node_id not in n.successors() + n.predecessors()
            assert creds.node_id.hex() not in [lk["peer"] for lk in n.status()["links"]]
    finally:
        await overlay.stop_all()


class RecordingStorage:
    """A StorageHandler that records what reached it (async, like a replicating store)."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.seen: list[bytes] = []

    async def handle(self, received: Received, now: float) -> object:
        body = received.body
        assert isinstance(body, FetchReq)
        self.seen.append(body.resource)
        if body.resource == b"missing":
            return m.ErrorResponse.text(m.ErrorCode.NOT_FOUND, "nothing here")
        return FetchAns(())


async def test_storage_requests_reach_the_responsible_nodes_handler(overlay: Overlay) -> None:
    stores = [RecordingStorage(c.node_id) for c in overlay.creds[:8]]
    try:
        await overlay.start(1, storage=stores[0])
        for st in stores[1:]:
            await overlay.start(1, storage=st)
        await overlay.converge(20)
        for i in range(12):
            key = os.urandom(16)
            src = overlay.nodes[i % 8]
            ans = await src.request(key, FetchReq(key, ()), timeout=10)
            assert ans.body == FetchAns(())
            owner = true_owner(overlay.nodes, key)
            assert key in stores[overlay.nodes.index(owner)].seen
            assert sum(key in st.seen for st in stores) == 1
        # a replica-style request addressed to a Node-ID reaches that node's handler
        target = overlay.nodes[6]
        with pytest.raises(ReloadRequestError) as ei:
            await overlay.nodes[2].request_direct(target.node_id, FetchReq(b"missing", ()),
                                                  timeout=10)
        assert ei.value.error_code == m.ErrorCode.NOT_FOUND and b"missing" in stores[6].seen
    finally:
        await overlay.stop_all()


async def test_nodes_joining_concurrently_converge(overlay: Overlay) -> None:
    """The overlay daemon starts its nodes together: concurrent joins through one bootstrap."""
    try:
        await overlay.start(1)
        joiners = [overlay.make_node(c) for c in overlay.creds[1:12]]
        await asyncio.gather(*(n.start() for n in joiners))
        overlay.nodes += joiners
        took = await overlay.converge(30)
        print(f"\n11 concurrent joins: ring correct {took:.2f}s after the last join returned")
    finally:
        await overlay.stop_all()


async def test_lost_request_is_retransmitted_end_to_end(overlay: Overlay) -> None:
    """§6.2.1: the originator retransmits; the responsible node's first copy is 'lost'."""
    try:
        await overlay.start(6)
        await overlay.converge(20)
        key = os.urandom(16)
        owner = true_owner(overlay.nodes, key)
        src = next(n for n in overlay.nodes if n is not owner)
        dropped: list[int] = []
        deliver = owner.transport._deliver

        async def lossy(link: object, header: ForwardingHeader, data: bytes,
                        is_request: bool) -> None:
            if is_request and isinstance(header.destination_list[-1], ResourceDestination) \
                    and not dropped:
                dropped.append(header.transaction_id)
                return
            await deliver(link, header, data, is_request)  # type: ignore[arg-type]

        owner.transport._deliver = lossy  # type: ignore[method-assign]
        ans = await src.request(key, m.PingReq(), timeout=10)
        assert ans.message.transaction_id == dropped[0]
        assert ans.signer is not None and ans.signer.node_id == owner.node_id
    finally:
        await overlay.stop_all()


async def test_wildcard_listen_advertises_the_given_host(overlay: Overlay) -> None:
    try:
        await overlay.start(2)
        await overlay.start(1, listen=("0.0.0.0", 0), advertise_host="127.0.0.1")
        await overlay.start(2)
        await overlay.converge(20)
        assert overlay.nodes[2].address[0] == "0.0.0.0"
        candidate = overlay.nodes[2].protocol.candidate  # what its Attaches advertise
        assert candidate is not None and candidate.addr_port.host == "127.0.0.1"
    finally:
        await overlay.stop_all()
