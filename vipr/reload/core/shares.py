"""Which numbers this overlay daemon publishes when several of one provider run (DESIGN §12).

Sans-I/O. Every live publisher of the provider is a member key (a 31-bit integer from its
first Node-ID); a number belongs to the member with the highest rendezvous hash of
(member, number), so every member computes the same owner from the same member list and a
member joining or leaving moves only its own share. Inside one daemon a number stays on the
node that stored it (placement), so a new share never leaves a second claim of the provider
behind on another of its nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["member_key", "owner", "place", "share"]

KEY_MASK = 0x7FFFFFFF   # an int4 advisory-lock key, also a non-negative oid


def member_key(node_id: bytes) -> int:
    """The member key of a daemon whose first node has `node_id`."""
    return int.from_bytes(hashlib.sha256(b"vipr-member:" + node_id).digest()[:4], "big") & KEY_MASK


def _weight(member: int, number: str) -> bytes:
    return hashlib.sha256(f"{member}:{number}".encode()).digest()


def owner(number: str, members: Iterable[int]) -> int:
    """The member that publishes `number` (highest random weight); ValueError if none."""
    return max(members, key=lambda m: (_weight(m, number), m))


def share(numbers: Iterable[str], members: Iterable[int], me: int) -> list[str]:
    """The numbers `me` publishes, sorted; `me` counts as live whatever `members` says."""
    live = sorted(set(members) | {me})
    if len(live) == 1:
        return sorted(set(numbers))
    return sorted(n for n in set(numbers) if owner(n, live) == me)


def place(numbers: Sequence[str], placed: Mapping[str, int], nodes: int
          ) -> tuple[dict[str, int], dict[str, int]]:
    """Spread `numbers` over `nodes` publishers, each number kept on the publisher that
    stored it before (`placed`), new ones on the least loaded. Returns (the placement,
    number → publisher of every earlier claim to withdraw: a number no longer ours, or one
    whose publisher is gone)."""
    if nodes < 1:
        raise ValueError("no publisher")
    wanted = set(numbers)
    out: dict[str, int] = {}
    load = [0] * nodes
    for n in numbers:
        i = placed.get(n)
        if i is not None and i < nodes:
            out[n] = i
            load[i] += 1
    for n in numbers:
        if n not in out:
            i = min(range(nodes), key=lambda k: (load[k], k))
            out[n] = i
            load[i] += 1
    withdraw = {n: i for n, i in placed.items()
                if i < nodes and (n not in wanted or out[n] != i)}
    return out, withdraw
