"""Replication planner (sans-I/O): replica targets, hold-down, handoff on join and leave."""

from __future__ import annotations

from vipr.reload.replication import ReplicaAction, ReplicationPlanner

ME, S1, S2, S3 = (bytes([i]) * 16 for i in (5, 6, 7, 8))
R1, R2 = b"\x04" * 16, b"\x03" * 16


def test_hold_down_and_new_successor() -> None:
    p = ReplicationPlanner(hold_down=30.0)
    assert not p.due(0.0)
    p.stored(R1, [S1, S2])
    p.topology_changed(100.0)
    assert not p.due(129.9) and p.due(130.0)
    # S1 failed: S2 and S3 are the new replica set; only S3 needs a copy
    acts = p.plan([R1], lambda r: True, [S2, S3], ME)
    assert acts == [ReplicaAction(R1, S3, 2)]
    assert p.due_at() is None
    assert p.plan([R1], lambda r: True, [S2, S3], ME) == []


def test_handoff_when_no_longer_responsible() -> None:
    p = ReplicationPlanner()
    assert {a.target for a in p.plan([R1, R2], lambda r: True, [S1, S2, S3], ME)} == {S1, S2}
    # a peer joined before us and now owns R2: hand it off once (routed to the Resource-ID)
    acts = p.plan([R1, R2], lambda r: r == R1, [S1, S2, S3], ME)
    assert acts == [ReplicaAction(R2, None, 1)]
    assert p.plan([R1, R2], lambda r: r == R1, [S1, S2, S3], ME) == []
    # replicas we hold for others are never handed off
    assert p.plan([R1, R2, b"\x09" * 16], lambda r: r == R1, [S1, S2], ME) == []


def test_leave_sends_owned_to_successor() -> None:
    p = ReplicationPlanner()
    acts = p.handoff_all([R1, R2], lambda r: r == R1, [ME, S1, S2], ME)
    assert acts == [ReplicaAction(R1, S1, 1)]
    assert p.handoff_all([R1], lambda r: True, [], ME) == []


def test_immediate_handoffs_only_for_owned() -> None:
    p = ReplicationPlanner()
    p.stored(R1, [S1, S2])
    assert p.handoffs([R1, R2], lambda r: False) == [ReplicaAction(R1, None, 1)]
    assert p.handoffs([R1, R2], lambda r: False) == []
