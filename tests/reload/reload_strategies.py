"""Hypothesis strategies for every RFC 6940 structure the codec handles."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from vipr.reload.wire import bodies as m
from vipr.reload.wire import storage_bodies as sc
from vipr.reload.wire.envelope import (
    GenericCertificate,
    MessageContents,
    MessageExtension,
    SecurityBlock,
    Signature,
    SignerIdentity,
)
from vipr.reload.wire.forwarding import (
    CompactDestination,
    ForwardingHeader,
    ForwardingOption,
    NodeDestination,
    OpaqueDestination,
    ResourceDestination,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
node_id = st.binary(min_size=16, max_size=16)
small = st.binary(max_size=24)
node_ids = st.lists(node_id, max_size=4).map(tuple)

destination = st.one_of(
    node_id.map(NodeDestination),
    st.binary(max_size=20).map(ResourceDestination),
    st.binary(max_size=20).map(OpaqueDestination),
    st.integers(0x8000, 0xFFFF).map(CompactDestination),
)
option = st.builds(ForwardingOption, u8, u8, small)
header = st.builds(
    ForwardingHeader,
    overlay=u32,
    transaction_id=u64,
    destination_list=st.lists(destination, max_size=3).map(tuple),
    via_list=st.lists(destination, max_size=3).map(tuple),
    options=st.lists(option, max_size=2).map(tuple),
    configuration_sequence=u16,
    ttl=u8,
    max_response_length=u32,
)
identity = st.one_of(
    st.just(SignerIdentity.none()),
    st.builds(SignerIdentity, st.sampled_from([1, 2]), u8, st.binary(max_size=32)),
)
signature = st.builds(Signature, u8, u8, identity, st.binary(max_size=64))
security_block = st.builds(
    SecurityBlock,
    st.lists(st.builds(GenericCertificate, u8, st.binary(max_size=40)), max_size=2).map(tuple),
    signature,
)
extension = st.builds(MessageExtension, u16, st.booleans(), small)
contents = st.builds(MessageContents, u16, st.binary(max_size=64),
                     st.lists(extension, max_size=2).map(tuple))

ip_port = st.builds(
    m.IpAddressPort,
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))),
    ),
    u16,
)
ice_ext = st.builds(m.IceExtension, small, small)


@st.composite
def candidate(draw: st.DrawFn) -> m.IceCandidate:
    ctype = draw(st.sampled_from([1, 2, 3, 4]))
    rel = None if ctype == 1 else draw(ip_port)
    return m.IceCandidate(draw(ip_port), draw(u8), draw(small), draw(u32), ctype, rel,
                          tuple(draw(st.lists(ice_ext, max_size=2))))


candidates = st.lists(candidate(), max_size=3).map(tuple)


@st.composite
def chord_update(draw: st.DrawFn) -> m.ChordUpdate:
    t = draw(st.sampled_from([1, 2, 3]))
    up = draw(u32)
    if t == 1:
        return m.ChordUpdate(up, t)
    if t == 2:
        return m.ChordUpdate(up, t, draw(node_ids), draw(node_ids))
    return m.ChordUpdate(up, t, draw(node_ids), draw(node_ids), draw(node_ids))


@st.composite
def config_update(draw: st.DrawFn) -> m.ConfigUpdateReq:
    if draw(st.booleans()):
        return m.ConfigUpdateReq(1, draw(st.binary(max_size=100)))
    return m.ConfigUpdateReq(2, b"", tuple(draw(st.lists(small, max_size=3))))


data_value = st.builds(sc.DataValue, st.booleans(), st.binary(max_size=40))


def stored_value(model: sc.DataModel) -> st.SearchStrategy[sc.StoredDataValue]:
    if model == sc.DataModel.SINGLE:
        return data_value
    if model == sc.DataModel.ARRAY:
        return st.builds(sc.ArrayEntry, u32, data_value)
    return st.builds(sc.DictionaryEntry, small, data_value)


KINDS = {1: sc.DataModel.SINGLE, 2: sc.DataModel.ARRAY, 3: sc.DataModel.DICTIONARY}
kind_model = st.sampled_from(sorted(KINDS.items()))


@st.composite
def stored_data(draw: st.DrawFn, model: sc.DataModel | None) -> sc.StoredData:
    if model is None:
        return sc.StoredData(draw(u64), draw(u32), sc.RawStoredValue(draw(small)), None)
    return sc.StoredData(draw(u64), draw(u32), draw(stored_value(model)), draw(signature))


@st.composite
def store_req(draw: st.DrawFn) -> sc.StoreReq:
    kds = []
    for kind, model in draw(st.lists(kind_model, max_size=3, unique_by=lambda x: x[0])):
        vals = tuple(draw(st.lists(stored_data(model), max_size=2)))
        kds.append(sc.StoreKindData(kind, draw(u64), vals))
    raw_vals = tuple(draw(st.lists(stored_data(None), max_size=1)))
    kds.append(sc.StoreKindData(99, 0, raw_vals))  # unknown Kind → raw values
    return sc.StoreReq(draw(st.binary(max_size=20)), draw(u8), tuple(kds))


@st.composite
def fetch_ans(draw: st.DrawFn) -> sc.FetchAns:
    out = []
    for kind, model in draw(st.lists(kind_model, max_size=3)):
        out.append(sc.FetchKindResponse(kind, draw(u64),
                                        tuple(draw(st.lists(stored_data(model), max_size=2)))))
    return sc.FetchAns(tuple(out))


@st.composite
def specifier(draw: st.DrawFn) -> sc.StoredDataSpecifier:
    kind, model = draw(st.sampled_from([*KINDS.items(), (99, None)]))
    spec: sc.ModelSpecifier
    if model is None:
        spec = sc.RawSpecifier(draw(small))
    elif model == sc.DataModel.SINGLE:
        spec = sc.SingleSpecifier()
    elif model == sc.DataModel.ARRAY:
        spec = sc.ArraySpecifier(tuple(draw(st.lists(st.builds(sc.ArrayRange, u32, u32),
                                                     max_size=3))))
    else:
        spec = sc.DictionarySpecifier(tuple(draw(st.lists(small, max_size=3))))
    return sc.StoredDataSpecifier(kind, draw(u64), spec)


specifiers = st.lists(specifier(), max_size=3).map(tuple)
metadata = st.builds(sc.MetaData, st.booleans(), u32, u8, st.binary(max_size=32))


def meta_value(model: sc.DataModel | None) -> st.SearchStrategy[sc.MetaDataValue]:
    if model is None:
        return small.map(sc.RawStoredValue)
    if model == sc.DataModel.SINGLE:
        return metadata
    if model == sc.DataModel.ARRAY:
        return st.builds(sc.ArrayEntryMeta, u32, metadata)
    return st.builds(sc.DictionaryEntryMeta, small, metadata)


@st.composite
def stat_ans(draw: st.DrawFn) -> sc.StatAns:
    out = []
    for kind, model in draw(st.lists(st.sampled_from([*KINDS.items(), (99, None)]),
                                     max_size=3)):
        vals = draw(st.lists(st.builds(sc.StoredMetaData, u64, u32, meta_value(model)),
                             max_size=2))
        out.append(sc.StatKindResponse(kind, draw(u64), tuple(vals)))
    return sc.StatAns(tuple(out))


# (code, strategy) for every body type
BODIES: list[tuple[int, st.SearchStrategy[object]]] = [
    (m.MessageCode.PROBE_REQ, st.builds(m.ProbeReq, st.lists(u8, max_size=4).map(tuple))),
    (m.MessageCode.PROBE_ANS, st.builds(m.ProbeAns, st.lists(
        st.builds(m.ProbeInformation, st.sampled_from([1, 2, 3]), u32), max_size=3).map(tuple))),
    (m.MessageCode.ATTACH_REQ, st.builds(m.AttachReqAns, small, small, small, candidates,
                                         st.booleans())),
    (m.MessageCode.APP_ATTACH_ANS, st.builds(m.AppAttachReqAns, small, small, u16, small,
                                             candidates)),
    (m.MessageCode.JOIN_REQ, st.builds(m.JoinReq, node_id, small)),
    (m.MessageCode.JOIN_ANS, st.builds(m.JoinAns, small)),
    (m.MessageCode.LEAVE_REQ, st.builds(m.LeaveReq, node_id, small)),
    (m.MessageCode.LEAVE_ANS, st.just(m.EmptyBody())),
    (m.MessageCode.UPDATE_REQ, chord_update()),
    (m.MessageCode.ROUTE_QUERY_REQ, st.builds(m.RouteQueryReq, st.booleans(), destination,
                                              small)),
    (m.MessageCode.ROUTE_QUERY_ANS, st.builds(m.ChordRouteQueryAns, node_id)),
    (m.MessageCode.PING_REQ, st.builds(m.PingReq, small)),
    (m.MessageCode.PING_ANS, st.builds(m.PingAns, u64, u64)),
    (m.MessageCode.CONFIG_UPDATE_REQ, config_update()),
    (m.MessageCode.ERROR, st.builds(m.ErrorResponse, u16, small)),
    (m.MessageCode.STORE_REQ, store_req()),
    (m.MessageCode.STORE_ANS, st.builds(sc.StoreAns, st.lists(
        st.builds(sc.StoreKindResponse, u32, u64, node_ids), max_size=3).map(tuple))),
    (m.MessageCode.FETCH_REQ, st.builds(sc.FetchReq, st.binary(max_size=20), specifiers)),
    (m.MessageCode.FETCH_ANS, fetch_ans()),
    (m.MessageCode.STAT_REQ, st.builds(sc.StatReq, st.binary(max_size=20), specifiers)),
    (m.MessageCode.STAT_ANS, stat_ans()),
    (m.MessageCode.FIND_REQ, st.builds(sc.FindReq, st.binary(max_size=20),
                                       st.lists(u32, max_size=4).map(tuple))),
    (m.MessageCode.FIND_ANS, st.builds(sc.FindAns, st.lists(
        st.builds(sc.FindKindData, u32, st.binary(max_size=20)), max_size=3).map(tuple))),
]
