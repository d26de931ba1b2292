"""Replication planner (sans-I/O): replica targets, hold-down, hand-off on join and leave."""

from __future__ import annotations

from vipr.reload.core.replication import ReplicaAction, ReplicationPlanner


def nid(x: int) -> bytes:
    return bytes([x]) * 16


# ring order: P2 < P1 < P0 < ME < S1 < S2 < S3
P2, P1, P0, ME, S1, S2, S3 = (nid(i) for i in (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70))
MINE = nid(0x38)  # in (P0, ME]
IN_P0 = nid(0x28)  # in (P1, P0]
IN_P1 = nid(0x18)  # in (P2, P1]
FAR = nid(0x90)  # nobody near us


def ours(r: bytes) -> bool:
    return r == MINE


def test_hold_down_and_new_successor() -> None:
    p = ReplicationPlanner(hold_down=30.0)
    assert not p.due(0.0)
    p.stored(MINE, [S1, S2])
    p.topology_changed(100.0)
    assert not p.due(129.9) and p.due(130.0)
    # S1 failed: S2 and S3 are the new replica set; only S3 needs a copy
    acts = p.plan([MINE], ours, [S2, S3], [P0, P1, P2], ME)
    assert acts == [ReplicaAction(MINE, S3, 2)]
    assert p.due_at() is None
    assert p.plan([MINE], ours, [S2, S3], [P0, P1, P2], ME) == []


def test_hand_off_to_joined_predecessor_and_misplaced() -> None:
    p = ReplicationPlanner()
    # a replica P0 sent us is not pushed back; one of the second-replica range stays
    p.received_from(IN_P0, P0)
    assert p.plan([IN_P0, IN_P1], ours, [S1, S2], [P0, P1, P2], ME) == []
    # J joined between P0 and us and now owns MINE: it gets it at once (no hold-down)
    j = nid(0x39)
    acts = p.plan([MINE], lambda r: False, [S1, S2], [j, P0, P1], ME, replicate=False)
    assert acts == [ReplicaAction(MINE, j, 1)]
    assert p.plan([MINE], lambda r: False, [S1, S2], [j, P0, P1], ME) == []
    # data far from us is routed to its owner once
    assert p.plan([FAR], ours, [S1, S2], [P0, P1, P2], ME) == [ReplicaAction(FAR, None, 1)]
    assert p.plan([FAR], ours, [S1, S2], [P0, P1, P2], ME) == []
    p.retry(FAR, 5.0)
    assert p.due(5.0 + p.hold_down)
    assert p.plan([FAR], ours, [S1, S2], [P0, P1, P2], ME) == [ReplicaAction(FAR, None, 1)]


def test_leave_sends_owned_to_successor() -> None:
    p = ReplicationPlanner()
    acts = p.handoff_all([MINE, IN_P0], ours, [ME, S1, S2], ME)
    assert acts == [ReplicaAction(MINE, S1, 1)]
    assert p.handoff_all([MINE], ours, [], ME) == []
