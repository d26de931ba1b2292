"""Storage and replication through the sans-I/O cores (issue 17): `StorageProtocol`s in memory,
then the simulator running `ChordProtocol` + `StorageProtocol` per node (store, kill the
responsible peer, fetch from the replica, re-replication to a new third holder)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from reload_pki import Pki

from vipr.reload.core.chord_protocol import (
    Purpose,
    SendRequest,
    SetTimer,
    TimerKind,
)
from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.storage import DataStore
from vipr.reload.core.storage_protocol import StorageProtocol
from vipr.reload.core.topology import to_int
from vipr.reload.core.vipr_usage import ClaimStores, UsageRequest, ViprLookup
from vipr.reload.overlay_config import vipr_kind
from vipr.reload.sim.network import Simulation
from vipr.reload.wire import bodies as m
from vipr.reload.wire.forwarding import NodeDestination
from vipr.reload.wire.security import NodeCredentials, cert_from_der_cached, sign_stored_data
from vipr.reload.wire.storage_bodies import (
    DictionarySpecifier,
    FetchAns,
    FetchReq,
    StatReq,
    StoreAns,
    StoredDataSpecifier,
    StoreKindData,
    StoreReq,
)
from vipr.reload.wire.vipr_kind import KIND_VIPR, claim_entry, resource_ids

NUMBER = "+14085550123"
TIMERS = ChordTimers(update_interval=30.0, ping_interval=120.0)
WALL = 0.0  # the wall time of the running test (set by `_wall`)


@pytest.fixture(autouse=True)
def _wall() -> None:
    """The session PKI's certificates are valid from their creation, which may come after
    this module is imported (a full run): take the wall time when each test starts."""
    global WALL
    WALL = time.time()


def signed_store(creds: NodeCredentials, res: bytes, t_ms: int) -> m.WithCertificates:
    entry = claim_entry(creds.node_id, "00000000000000a1", creds.node_id)
    sd = sign_stored_data(creds, res, KIND_VIPR, t_ms, 3600, entry)
    return m.WithCertificates(StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (sd,)),)),
                              (creds.der,))


def fetch(res: bytes) -> FetchReq:
    return FetchReq(res, (StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier()),))


def claims(body: object) -> int:
    if isinstance(body, m.WithCertificates):
        body = body.body
    assert isinstance(body, FetchAns), body
    return sum(len(kr.values) for kr in body.kind_responses if kr.kind == KIND_VIPR)


@dataclass
class StaticRing:
    """A `RingView` of a fixed sorted ring of Node-IDs."""

    node_id: bytes
    ring: list[bytes]
    joined: bool = True
    _i: int = field(init=False)

    def __post_init__(self) -> None:
        self._i = self.ring.index(self.node_id)

    def is_responsible(self, resource_id: bytes) -> bool:
        owner = next((n for n in self.ring if n >= resource_id[:16]), self.ring[0])
        return owner == self.node_id

    def successors(self) -> list[bytes]:
        n = len(self.ring)
        return [self.ring[(self._i + k) % n] for k in range(1, min(4, n))]

    def predecessors(self) -> list[bytes]:
        n = len(self.ring)
        return [self.ring[(self._i - k) % n] for k in range(1, min(4, n))]


def cores(pki: Pki, ids: list[bytes], hold_down: float = 5.0) -> dict[bytes, StorageProtocol]:
    ring = sorted(ids)
    return {n: StorageProtocol(DataStore([vipr_kind()], pki.trust()), StaticRing(n, ring),
                               hold_down) for n in ring}


def deliver(core: StorageProtocol, a: SendRequest) -> tuple[m.OutgoingBody, list[object]]:
    """Carry one Store from one core to another (the certificates travel as on the wire)."""
    body = a.body
    assert isinstance(body, m.WithCertificates)
    certs = [cert_from_der_cached(c) for c in body.certificates]
    ans, acts = core.on_request(body.body, signer=None, certs=certs, via=0, now=0.0, wall=WALL)
    return ans, list(acts)


def test_original_store_replicates_to_two_successors(pki: Pki) -> None:
    ids = [bytes([b]) * 16 for b in (0x10, 0x50, 0x90, 0xD0)]
    cs = cores(pki, ids)
    res = bytes([0x40]) * 16  # owned by 0x50..
    owner = cs[ids[1]]
    req = signed_store(pki.node_a, res, 1_700_000_000_000)
    ans, acts = owner.on_request(req.body, signer=None,
                                 certs=[pki.node_a.cert], via=1, now=0.0, wall=WALL)
    assert isinstance(ans, StoreAns)
    sends = [a for a in acts if isinstance(a, SendRequest)]
    assert [(a.dests, a.purpose) for a in sends] == [
        ((NodeDestination(ids[2]),), Purpose.REPLICA),
        ((NodeDestination(ids[3]),), Purpose.REPLICA)]
    for a, target in zip(sends, ids[2:], strict=True):
        body = a.body
        assert isinstance(body, m.WithCertificates) and isinstance(body.body, StoreReq)
        stored, _ = deliver(cs[target], a)
        assert isinstance(stored, StoreAns)
        assert owner.on_answer(a.token, target, stored, 0.1) == []
        fetched, _ = cs[target].on_request(fetch(res), signer=None, certs=[], via=0, now=0.2,
                                           wall=WALL)
        assert claims(fetched) == 1
    assert body.body.replica_number == 2
    assert owner.replicas_sent == 2


def test_failed_replica_store_is_retried_after_the_hold_down(pki: Pki) -> None:
    ids = [bytes([b]) * 16 for b in (0x10, 0x50, 0x90)]
    cs = cores(pki, ids, hold_down=5.0)
    res = bytes([0x40]) * 16
    owner = cs[ids[1]]
    _, acts = owner.on_request(signed_store(pki.node_a, res, 1_700_000_000_000).body,
                               signer=None, certs=[pki.node_a.cert], via=1, now=0.0, wall=WALL)
    first = next(a for a in acts if isinstance(a, SendRequest))
    [timer] = owner.on_request_failed(first.token, m.ErrorCode.REQUEST_TIMEOUT, "no answer", 1.0)
    assert isinstance(timer, SetTimer)
    assert (timer.kind, timer.at) == (TimerKind.REPLICATION, 6.0)  # 1.0 + the hold-down
    assert owner.replica_failures == 1
    assert owner.on_timer(timer.key - 1, 6.0, WALL) == []  # a stale timer does nothing
    again = owner.on_timer(timer.key, 6.0, WALL)
    # the planner forgets what it sent for the resource: both successors get it again
    assert [a.dests for a in again if isinstance(a, SendRequest)] == [
        (NodeDestination(ids[2]),), (NodeDestination(ids[0]),)]
    assert owner.on_timer(timer.key, 7.0, WALL) == []  # nothing pending any more


def test_topology_change_hands_off_to_a_joining_owner(pki: Pki) -> None:
    a_id, b_id, new = bytes([0x10]) * 16, bytes([0x90]) * 16, bytes([0x60]) * 16
    cs = cores(pki, [a_id, b_id])
    res = bytes([0x40]) * 16
    owner = cs[b_id]  # (0x10, 0x90] before the join
    owner.on_request(signed_store(pki.node_a, res, 1_700_000_000_000).body, signer=None,
                     certs=[pki.node_a.cert], via=1, now=0.0, wall=WALL)
    owner.view = StaticRing(b_id, sorted([a_id, b_id, new]))
    acts = owner.topology_changed(1.0, WALL)
    sends = [a for a in acts if isinstance(a, SendRequest)]
    assert [a.dests for a in sends] == [(NodeDestination(new),)]  # §10.7.3 hand-off at once
    assert any(isinstance(a, SetTimer) and a.at == 6.0 for a in acts)


def test_handoff_before_leave_goes_to_the_successor(pki: Pki) -> None:
    ids = [bytes([b]) * 16 for b in (0x10, 0x50, 0x90)]
    cs = cores(pki, ids)
    mine, other = bytes([0x40]) * 16, bytes([0x80]) * 16  # owned by 0x50 and by 0x90
    leaver = cs[ids[1]]
    for res in (mine, other):
        leaver.store.store(signed_store(pki.node_a, res, 1_700_000_000_000).body,
                           [pki.node_a.cert], WALL)
    [send] = leaver.handoff(WALL)  # §10.7.2: only what it is responsible for
    assert send.dests == (NodeDestination(ids[2]),)
    body = send.body
    assert isinstance(body, m.WithCertificates) and isinstance(body.body, StoreReq)
    assert body.body.resource == mine
    stored, _ = deliver(cs[ids[2]], send)
    assert isinstance(stored, StoreAns)


def test_sim_fetches_from_the_replica_after_the_owner_dies(pki: Pki) -> None:
    sim = Simulation(timers=TIMERS, seed=5, wall0=WALL, hold_down=5.0,
                     data_store=lambda _n: DataStore([vipr_kind()], pki.trust()))
    for _ in range(16):
        sim.add_node()
        sim.run(sim.now + 0.3)
    sim.run(sim.now + 10.0)
    assert sim.ring_correct() == 1.0
    res = resource_ids(NUMBER)[0]
    alive = sim.alive_ids()
    stored = sim.request(alive[0], res, signed_store(pki.node_a, res, 1_700_000_000_000))
    sim.run(sim.now + 2.0)
    assert isinstance(stored.body, StoreAns), stored.error
    ring = sorted(to_int(x) for x in alive)
    owner = sim.owner(to_int(res), ring).to_bytes(16, "big")
    holders = {n for n, node in sim.nodes.items()
               if node.storage is not None and res in node.storage.store.resources()}
    assert owner in holders and len(holders) == 3  # §10.4: the owner and two successors
    assert stored.signer == owner

    sim.kill(owner)
    sim.run(sim.now + 30.0)  # failure detected, ring repaired, hold-down over
    src = next(x for x in sim.alive_ids() if x not in holders)
    got = sim.request(src, res, fetch(res))
    sim.run(sim.now + 2.0)
    assert got.body is not None, got.error
    assert claims(got.body) == 1
    assert got.signer in holders  # answered by the former first replica, now the owner
    holders_after = {n for n, node in sim.nodes.items() if node.alive and node.storage
                     is not None and res in node.storage.store.resources()}
    assert len(holders_after) == 3  # re-replicated to the new second successor


# --- the VIPR usage through the core (core/vipr_usage.py) --------------------------------------

def answer_from(store: DataStore, r: UsageRequest) -> tuple[m.Body, list[x509.Certificate]]:
    """What the responsible peer of `r` answers, from a real `DataStore`."""
    body = r.body
    if isinstance(body, FetchReq):
        ans, der = store.fetch(body, WALL)
        return ans, [cert_from_der_cached(c) for c in der]
    assert isinstance(body, StatReq)
    return store.stat(body, WALL), []


def filled_store(pki: Pki, number: str, names: int = 3) -> DataStore:
    store = DataStore([vipr_kind()], pki.trust())
    pub = ClaimStores(pki.node_a, "00000000000000a1", 3600, pki.node_a.node_id)
    for r in pub.publish(number, WALL)[:names]:
        assert isinstance(r.body, StoreReq)
        store.store(r.body, [pki.node_a.cert], WALL)
    return store


def test_claim_stores_sign_three_names_with_increasing_times(pki: Pki) -> None:
    pub = ClaimStores(pki.node_a, "00000000000000a1", 3600, pki.node_a.node_id)
    reqs = pub.publish(NUMBER, WALL) + pub.withdraw(NUMBER, WALL)
    assert [r.resource for r in reqs] == list(resource_ids(NUMBER)) * 2
    times = [sd.storage_time for r in reqs if isinstance(r.body, StoreReq)
             for kd in r.body.kind_data for sd in kd.values]
    assert times == sorted(set(times)) and len(times) == 6  # §7.4.1.1 strictly increasing


def test_lookup_falls_back_to_copy1n_when_n_fails(pki: Pki) -> None:
    store = filled_store(pki, NUMBER)
    look = ViprLookup(NUMBER, pki.trust())
    [first] = look.start()
    assert first.resource == resource_ids(NUMBER)[0]
    [second] = look.on_failed(first.tag, m.ErrorCode.REQUEST_TIMEOUT, "no answer")
    assert second.resource == resource_ids(NUMBER)[1]
    assert look.on_answer(second.tag, *answer_from(store, second), WALL) == []
    assert look.result is not None and look.result.resource == "COPY1N"
    assert [c.node_id for c in look.result.claims] == [pki.node_a.node_id]


def test_lookup_too_large_stats_then_fetches_each_key(pki: Pki) -> None:
    store = filled_store(pki, NUMBER)
    look = ViprLookup(NUMBER, pki.trust())
    [first] = look.start()
    [stat] = look.on_failed(first.tag, m.ErrorCode.RESPONSE_TOO_LARGE, "too large")
    assert isinstance(stat.body, StatReq)
    by_key = look.on_answer(stat.tag, *answer_from(store, stat), WALL)
    assert len(by_key) == 1 and isinstance(by_key[0].body, FetchReq)
    assert look.on_answer(by_key[0].tag, *answer_from(store, by_key[0]), WALL) == []
    assert look.result is not None and look.result.resource == "N"
    assert len(look.result.claims) == 1


def test_lookup_drops_a_value_signed_for_another_resource(pki: Pki) -> None:
    store = filled_store(pki, "+14085550199", names=1)  # a claim on another number
    look = ViprLookup(NUMBER, pki.trust())
    pending = look.start()
    while pending:  # every copy answers with the other number's value: none verifies
        r = pending[0]
        other = resource_ids("+14085550199")[0]
        body, certs = answer_from(store, UsageRequest(r.tag, other, fetch(other)))
        pending = look.on_answer(r.tag, body, certs, WALL)
    assert look.result is not None and look.result.claims == []
    assert any("badly signed" in n for n in look.notes)


def sim_lookup(sim: Simulation, src: bytes, look: ViprLookup) -> None:
    """Carry a `ViprLookup` over the simulator (what aio/vipr_usage.py does over TLS)."""
    pending = look.start()
    while pending:
        replies = [(r, sim.request(src, r.resource, r.body)) for r in pending]
        sim.run(sim.now + 20.0)
        pending = []
        for r, rep in replies:
            if rep.body is None:
                code, info = rep.error or (m.ErrorCode.REQUEST_TIMEOUT, "")
                pending += look.on_failed(r.tag, code, info)
                continue
            body, certs = rep.body, []
            if isinstance(body, m.WithCertificates):
                certs = [cert_from_der_cached(c) for c in body.certificates]
                body = body.body
            pending += look.on_answer(r.tag, body, certs, sim.wall)


def test_sim_lookup_falls_back_when_every_holder_of_n_dies(pki: Pki) -> None:
    """Publish through `ClaimStores`, kill the owner of N and both its replicas at once: the
    lookup through `ViprLookup` finds the claim under COPY1N (DESIGN §4)."""
    sim = Simulation(timers=TIMERS, seed=9, wall0=WALL, hold_down=5.0,
                     data_store=lambda _n: DataStore([vipr_kind()], pki.trust()))
    for _ in range(16):
        sim.add_node()
        sim.run(sim.now + 0.3)
    sim.run(sim.now + 10.0)
    src = sim.alive_ids()[0]
    pub = ClaimStores(pki.node_a, "00000000000000a1", 3600, pki.node_a.node_id)
    stores = [sim.request(src, r.resource, m.WithCertificates(r.body, (pki.node_a.der,)))
              for r in pub.publish(NUMBER, sim.wall) if isinstance(r.body, StoreReq)]
    sim.run(sim.now + 5.0)
    assert all(isinstance(s.body, StoreAns) for s in stores)
    n_res = resource_ids(NUMBER)[0]
    holders = [n for n, node in sim.nodes.items()
               if node.storage is not None and n_res in node.storage.store.resources()]
    assert len(holders) == 3
    src = next(x for x in sim.alive_ids() if x not in holders)
    for h in holders:
        sim.kill(h)
    look = ViprLookup(NUMBER, pki.trust())
    sim_lookup(sim, src, look)
    assert look.result is not None
    assert look.result.resource == "COPY1N"
    assert [c.node_id for c in look.result.claims] == [pki.node_a.node_id]


def test_publisher_lifetime_reaches_the_next_stores(pki: Pki) -> None:
    """SIGHUP sets `ViprPublisher.lifetime` (record_lifetime): the core signs the next Stores
    with it (a plain attribute on the carrier would silently change nothing)."""
    from types import SimpleNamespace

    from vipr.reload.aio.vipr_usage import ViprPublisher

    node = SimpleNamespace(context=SimpleNamespace(creds=pki.node_a), node_id=pki.node_a.node_id)
    pub = ViprPublisher(node, "00000000000000a1", lifetime=3600, clock=lambda: WALL)  # type: ignore[arg-type]
    pub.lifetime = 120
    req = pub._request(resource_ids(NUMBER)[0], claim_entry(pki.node_a.node_id,
                                                             "00000000000000a1",
                                                             pki.node_a.node_id))
    assert [sd.lifetime for kd in req.kind_data for sd in kd.values] == [120]
