"""ChordProtocol decisions the asyncio node used to make itself (issue 17): AppAttach
(§6.5.2) and a restarted creator's choice between re-joining and creating the ring (§11.4)."""

from __future__ import annotations

import random

from vipr.reload.core.chord_protocol import ChordProtocol, Connect, JoinDone, JoinPhase, Purpose
from vipr.reload.core.node_api import ChordTimers
from vipr.reload.wire import bodies as m

TIMERS = ChordTimers(update_interval=30.0, ping_interval=120.0)


def test_app_attach_answer_is_decided_by_the_core() -> None:
    """§6.5.2: the core answers AppAttach with the application's address as an active
    candidate, or NOT_FOUND; ICE credentials come from the injected randomness."""
    proto = ChordProtocol(bytes(16), TIMERS, random.Random(1))
    proto.candidate = m.IceCandidate(m.IpAddressPort("127.0.0.1", 6084))
    req = proto.app_attach_request(61441)
    assert (req.role, req.candidates) == (b"passive", (proto.candidate,))
    ans = proto.app_attach_answer(req, ("127.0.0.2", 5061))
    assert isinstance(ans, m.AppAttachReqAns) and ans.role == b"active"
    assert ans.candidates[0].addr_port == m.IpAddressPort("127.0.0.2", 5061)
    refused = proto.app_attach_answer(req, None)
    assert isinstance(refused, m.ErrorResponse)
    assert refused.error_code == m.ErrorCode.NOT_FOUND
    again = ChordProtocol(bytes(16), TIMERS, random.Random(1))
    again.candidate = proto.candidate
    assert again.app_attach_request(61441) == req  # same seed, same credentials


def _begin_without_anyone(create: bool) -> tuple[ChordProtocol, list[object]]:
    proto = ChordProtocol(bytes(16), TIMERS, random.Random(1), bootstrap=(("10.0.0.9", 6084),),
                          create=create)
    proto.start(0.0)
    acts = proto.begin(0.0)
    [connect] = [a for a in acts if isinstance(a, Connect)]
    assert connect.purpose is Purpose.BOOTSTRAP
    return proto, proto.on_connect_failed(connect.token, "refused", 0.5)


def test_restarted_creator_creates_the_ring_when_nobody_answers() -> None:
    """§11.4: a creator with bootstrap nodes tries to re-join first; nobody there: it creates
    the ring (decided in the core; the node only waits for `JoinDone`)."""
    proto, acts = _begin_without_anyone(create=True)
    done = [a for a in acts if isinstance(a, JoinDone)]
    assert len(done) == 1 and done[0].ok and "created" in done[0].reason
    assert proto.joined and proto.phase is JoinPhase.JOINED
    joiner, acts = _begin_without_anyone(create=False)
    assert [a for a in acts if isinstance(a, JoinDone)] == [
        JoinDone(False, "no bootstrap node reachable: ['refused']")]
    assert not joiner.joined
    alone = ChordProtocol(bytes(16), TIMERS, random.Random(1), create=True)
    assert JoinDone(True) in alone.begin(0.0) and alone.joined  # no bootstrap: owns the ring
