"""DataStore (RFC 6940 §7) and the VIPR Kind: policies, generations, lifetimes, atomicity."""

from __future__ import annotations

import dataclasses

import pytest
from reload_pki import Pki

from vipr.reload.core.storage import DataStore, StorageError
from vipr.reload.overlay_config import KindDef, vipr_kind
from vipr.reload.wire.bodies import ErrorCode
from vipr.reload.wire.envelope import Signature
from vipr.reload.wire.forwarding import resource_id
from vipr.reload.wire.security import NodeCredentials, sign_stored_data, verify_stored_data
from vipr.reload.wire.storage_bodies import (
    ARRAY_APPEND,
    ArrayEntry,
    ArrayRange,
    ArraySpecifier,
    DataModel,
    DataValue,
    DictionaryEntry,
    DictionarySpecifier,
    FetchAns,
    FetchReq,
    SingleSpecifier,
    StatReq,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
    StoreReq,
)
from vipr.reload.wire.vipr_kind import (
    KIND_VIPR,
    claim_entry,
    claims_from,
    decode_value,
    dictionary_key,
    encode_value,
    parse_dictionary_key,
    resource_ids,
    resource_names,
)

NOW = 1_800_000_000.0
NUMBER = "+14085551234"
VS_A = "00000000000000a1"
VS_B = "00000000000000b2"


def ds(pki: Pki, *kinds: KindDef) -> DataStore:
    return DataStore(kinds or (vipr_kind(),), pki.trust())


def claim(creds: NodeCredentials, vs: str, res: bytes, t: int = 1000, lifetime: int = 3600,
          node_id: bytes | None = None) -> StoredData:
    nid = node_id or creds.node_id
    return sign_stored_data(creds, res, KIND_VIPR, t, lifetime, claim_entry(nid, vs, nid))


def store(d: DataStore, pki: Pki, res: bytes, *values: StoredData, kind: int = KIND_VIPR,
          gen: int = 0, replica: int = 0, now: float = NOW) -> int:
    req = StoreReq(res, replica, (StoreKindData(kind, gen, values),))
    ans = d.store(req, [pki.node_a.cert, pki.node_b.cert, pki.foreign.cert, pki.node_multi.cert],
                  now)
    return ans.kind_responses[0].generation_counter


def fetch_all(d: DataStore, res: bytes, kind: int = KIND_VIPR, now: float = NOW,
              gen: int = 0) -> FetchAns:
    return d.fetch(FetchReq(res, (StoredDataSpecifier(kind, gen, DictionarySpecifier()),)), now)[0]


def test_resource_names_and_ids() -> None:
    assert resource_names(NUMBER) == (NUMBER, "COPY1" + NUMBER, "COPY2" + NUMBER)
    ids = resource_ids(NUMBER)
    assert len(set(ids)) == 3 and ids[0] == resource_id(NUMBER) and len(ids[0]) == 16


def test_key_and_tlv_value() -> None:
    nid = bytes(range(16))
    key = dictionary_key(nid, "0123456789ABCDEF")
    assert key == (nid.hex() + "+0123456789abcdef").encode()
    assert parse_dictionary_key(key) == (nid, "0123456789abcdef")
    v = encode_value(nid, [(0x7777, b"abc")])
    assert len(v) % 4 == 0
    tlvs = decode_value(v)
    assert tlvs[0x2008] == nid and tlvs[0x7777] == b"abc"


def test_two_providers_claims_coexist(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    assert store(d, pki, res, claim(pki.node_a, VS_A, res)) == 1
    assert store(d, pki, res, claim(pki.node_b, VS_B, res)) == 2
    ans = fetch_all(d, res)
    claims = claims_from(ans.kind_responses[0].values)
    assert {(c.node_id, c.vservice) for c in claims} == {
        (pki.node_a.node_id, VS_A), (pki.node_b.node_id, VS_B)}
    # the fetcher verifies every value (§7.4.2.2)
    for sd in FetchAns.decode(ans.encode()).kind_responses[0].values:
        verify_stored_data(sd, res, KIND_VIPR, pki.trust(), [pki.node_a.cert, pki.node_b.cert],
                           NOW)


def test_reject_key_not_starting_with_signer_node_id(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    bad = claim(pki.node_b, VS_B, res, node_id=pki.node_a.node_id)  # B claims under A's id
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, bad)
    assert ei.value.code == ErrorCode.FORBIDDEN
    assert d.entry_count() == 0


def test_reject_unsigned_and_badly_signed(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    good = claim(pki.node_a, VS_A, res)
    unsigned = dataclasses.replace(good, signature=Signature.empty())
    assert isinstance(good.value, DictionaryEntry)
    tampered = dataclasses.replace(good, value=claim_entry(pki.node_a.node_id, VS_B,
                                                           pki.node_a.node_id))
    wrong_res = claim(pki.node_a, VS_A, resource_id("other"))
    for bad in (unsigned, tampered, wrong_res):
        with pytest.raises(StorageError) as ei:
            store(d, pki, res, bad)
        assert ei.value.code == ErrorCode.FORBIDDEN
    assert d.entry_count() == 0


def test_reject_cert_outside_overlay_ca(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.foreign, VS_B, res))
    assert ei.value.code == ErrorCode.FORBIDDEN


def test_atomic_store(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    good = claim(pki.node_a, VS_A, res)
    bad = claim(pki.node_b, VS_B, res, node_id=pki.node_a.node_id)
    with pytest.raises(StorageError):
        store(d, pki, res, good, bad)
    assert d.entry_count() == 0
    assert fetch_all(d, res).kind_responses[0].values == ()


def test_generation_and_storage_time(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    assert store(d, pki, res, claim(pki.node_a, VS_A, res, t=1000)) == 1
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.node_a, VS_A, res, t=1000))
    assert ei.value.code == ErrorCode.DATA_TOO_OLD
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.node_a, VS_A, res, t=2000), gen=7)
    assert ei.value.code == ErrorCode.GENERATION_COUNTER_TOO_LOW
    assert store(d, pki, res, claim(pki.node_a, VS_A, res, t=2000), gen=1) == 2
    # a fetch with the current generation returns no values
    assert fetch_all(d, res, gen=2).kind_responses[0].values == ()


def test_lifetime_expiry_and_delete(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    store(d, pki, res, claim(pki.node_a, VS_A, res, lifetime=60))
    store(d, pki, res, claim(pki.node_b, VS_B, res, lifetime=600))
    vals = fetch_all(d, res, now=NOW + 30).kind_responses[0].values
    assert {sd.lifetime for sd in vals} == {30, 570}
    assert len(claims_from(fetch_all(d, res, now=NOW + 61).kind_responses[0].values)) == 1
    # deletion = exists false (DESIGN §4)
    entry = DictionaryEntry(dictionary_key(pki.node_b.node_id, VS_B), DataValue(False))
    tomb = sign_stored_data(pki.node_b, res, KIND_VIPR, 5000, 600, entry)
    store(d, pki, res, tomb, now=NOW + 62)
    assert claims_from(fetch_all(d, res, now=NOW + 63).kind_responses[0].values) == []
    d.expire(NOW + 10_000)
    assert len(d) == 0


def test_kind_limits(pki: Pki) -> None:
    d = ds(pki, vipr_kind(max_count=1, max_size=16))
    res = resource_id(NUMBER)
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.node_a, VS_A, res))  # value is 20 bytes
    assert ei.value.code == ErrorCode.DATA_TOO_LARGE
    d = ds(pki, vipr_kind(max_count=1))
    store(d, pki, res, claim(pki.node_a, VS_A, res))
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.node_b, VS_B, res))
    assert ei.value.code == ErrorCode.DATA_TOO_LARGE


def test_unknown_kind_and_not_responsible(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    with pytest.raises(StorageError) as ei:
        store(d, pki, res, claim(pki.node_a, VS_A, res), kind=0xF0000999)
    assert ei.value.code == ErrorCode.UNKNOWN_KIND
    req = StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (claim(pki.node_a, VS_A, res),)),))
    with pytest.raises(StorageError) as ei:
        d.store(req, [pki.node_a.cert], NOW, responsible=False)
    assert ei.value.code == ErrorCode.NOT_FOUND
    # replicas need no responsibility and keep the generation verbatim, idempotently
    rep = StoreReq(res, 1, (StoreKindData(KIND_VIPR, 9, (claim(pki.node_a, VS_A, res),)),))
    assert d.store(rep, [pki.node_a.cert], NOW, responsible=False).kind_responses[0] \
        .generation_counter == 9
    d.store(rep, [pki.node_a.cert], NOW, responsible=False)
    assert d.entry_count() == 1


def test_replica_request_round_trip(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    store(d, pki, res, claim(pki.node_a, VS_A, res), claim(pki.node_b, VS_B, res))
    out = d.replica_request(res, 1, NOW + 100)
    assert out is not None
    req, certs = out
    assert len(certs) == 2
    d2 = ds(pki)
    from vipr.reload.wire.security import cert_from_der

    wire = StoreReq.decode(req.encode())
    d2.store(wire, [cert_from_der(c) for c in certs], NOW + 100, responsible=False)
    assert d2.record(res, KIND_VIPR) is not None
    assert d2.record(res, KIND_VIPR).generation == 1  # type: ignore[union-attr]
    assert len(claims_from(fetch_all(d2, res, now=NOW + 100).kind_responses[0].values)) == 2


def test_standard_policies(pki: Pki) -> None:
    a = pki.node_a
    user_kind = KindDef(0x10, DataModel.ARRAY, "USER-MATCH", 8, 4096)
    node_kind = KindDef(0x3, DataModel.ARRAY, "NODE-MATCH", 8, 4096)
    sip_kind = KindDef(0x1, DataModel.DICTIONARY, "USER-NODE-MATCH", 8, 4096)
    turn_kind = KindDef(0x2, DataModel.SINGLE, "NODE-MULTIPLE", 1, 4096, max_node_multiple=3)
    d = ds(pki, user_kind, node_kind, sip_kind, turn_kind)
    assert a.user is not None
    ures, nres = resource_id(a.user), resource_id(a.node_id)
    turn_res = resource_id(a.node_id + (2).to_bytes(4, "big"))
    arr = ArrayEntry(ARRAY_APPEND, DataValue(True, b"cert"))
    store(d, pki, ures, sign_stored_data(a, ures, 0x10, 1, 60, arr), kind=0x10)
    store(d, pki, ures, sign_stored_data(a, ures, 0x10, 2, 60, arr), kind=0x10)
    rec = d.record(ures, 0x10)
    assert rec is not None and sorted(k for k in rec.entries) == [0, 1]
    store(d, pki, nres, sign_stored_data(a, nres, 0x3, 1, 60, arr), kind=0x3)
    sip = DictionaryEntry(a.node_id, DataValue(True, b"contact"))
    store(d, pki, ures, sign_stored_data(a, ures, 0x1, 1, 60, sip), kind=0x1)
    single = DataValue(True, b"turn")
    store(d, pki, turn_res, sign_stored_data(a, turn_res, 0x2, 1, 60, single), kind=0x2)
    # the same values at the wrong Resource-ID are refused
    for kid, val in ((0x10, arr), (0x3, arr), (0x1, sip), (0x2, single)):
        wrong = resource_id("somewhere else")
        with pytest.raises(StorageError):
            store(d, pki, wrong, sign_stored_data(a, wrong, kid, 9, 60, val), kind=kid)
    ans = d.fetch(FetchReq(ures, (StoredDataSpecifier(0x10, 0, ArraySpecifier(
        (ArrayRange(0, ARRAY_APPEND),))),)), NOW)[0]
    assert len(ans.kind_responses[0].values) == 2
    ans = d.fetch(FetchReq(turn_res, (StoredDataSpecifier(0x2, 0, SingleSpecifier()),)), NOW)[0]
    assert ans.kind_responses[0].values[0].value == single


def test_fetch_missing_key_and_stat(pki: Pki) -> None:
    d = ds(pki)
    res = resource_id(NUMBER)
    store(d, pki, res, claim(pki.node_a, VS_A, res))
    missing = dictionary_key(pki.node_b.node_id, VS_B)
    spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier((missing,)))
    ans, certs = d.fetch(FetchReq(res, (spec,)), NOW)
    v = ans.kind_responses[0].values[0]
    assert isinstance(v.value, DictionaryEntry) and not v.value.value.exists and certs == []
    st = d.stat(StatReq(res, (StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier()),)), NOW)
    assert len(st.kind_responses[0].values) == 1
    assert st.kind_responses[0].generation == 1


def test_find_closest_resource(pki: Pki) -> None:
    from vipr.reload.wire.storage_bodies import FindReq

    d = ds(pki)
    r1, r2 = sorted(resource_ids(NUMBER)[:2])
    for r in (r1, r2):
        store(d, pki, r, claim(pki.node_a, VS_A, r))
    before = bytes([r1[0] - 1]) + r1[1:] if r1[0] else r1
    ans = d.find(FindReq(before, (KIND_VIPR, 0x10)), NOW)
    assert ans.results[0].closest == r1
    assert ans.results[1].closest == bytes(16)  # nothing of that Kind here
