"""vipr.reload.core.shares: every member computes the same owner, a member leaving moves only
its own share, and numbers stay on the node that stored them."""

from __future__ import annotations

from vipr.reload.core.shares import member_key, owner, place, share

NUMBERS = [f"+1408555{i:04d}" for i in range(200)]


def test_shares_partition_the_numbers_and_agree() -> None:
    members = [member_key(bytes([i]) * 16) for i in range(3)]
    parts = [share(NUMBERS, members, m) for m in members]
    assert sorted(n for p in parts for n in p) == sorted(NUMBERS)   # each number exactly once
    assert all(len(p) > 30 for p in parts)                          # spread over all three
    # the same answer whatever order the list comes in
    assert share(NUMBERS, list(reversed(members)), members[0]) == parts[0]


def test_a_member_leaving_moves_only_its_share() -> None:
    a, b, c = (member_key(bytes([i]) * 16) for i in range(3))
    before = {n: owner(n, [a, b, c]) for n in NUMBERS}
    after = {n: owner(n, [a, b]) for n in NUMBERS}
    assert all(after[n] == before[n] for n in NUMBERS if before[n] != c)
    assert {after[n] for n in NUMBERS if before[n] == c} == {a, b}


def test_alone_or_unknown_means_everything() -> None:
    me = member_key(b"\x07" * 16)
    assert share(NUMBERS, [], me) == sorted(NUMBERS)
    assert share(NUMBERS, [me], me) == sorted(NUMBERS)
    assert 0 <= me <= 0x7FFFFFFF


def test_placement_is_sticky_and_withdraws_what_moved() -> None:
    first, gone = place(["+1", "+2", "+3", "+4"], {}, 2)
    assert first == {"+1": 0, "+2": 1, "+3": 0, "+4": 1} and gone == {}
    # +2 is no longer ours; +5 is new: the others stay where they are
    second, gone = place(["+1", "+3", "+4", "+5"], first, 2)
    assert {n: second[n] for n in ("+1", "+3", "+4")} == {"+1": 0, "+3": 0, "+4": 1}
    assert second["+5"] == 1 and gone == {"+2": 1}
    # a publisher that is gone: its numbers move, nothing to withdraw through it
    third, gone = place(["+1", "+4"], second, 1)
    assert third == {"+1": 0, "+4": 0} and gone == {"+3": 0}
