"""Codec: hypothesis round-trips for every structure, B.2 vectors, strictness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reload_strategies import BODIES, KINDS, contents, header, security_block

from vipr.reload.tools.jsonview import decode_to_json
from vipr.reload.wire import bodies as m
from vipr.reload.wire import storage_bodies as sc
from vipr.reload.wire.codec import Reader, ReloadDecodeError
from vipr.reload.wire.envelope import (
    Message,
    MessageContents,
    SecurityBlock,
    decode_message,
    encode_message,
)
from vipr.reload.wire.forwarding import (
    ForwardingHeader,
    NodeDestination,
    ResourceDestination,
    overlay_hash,
    resource_id,
)

VECTORS = Path(__file__).parent / "vectors" / "b2.txt"
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_vectors() -> dict[str, bytes]:
    out = {}
    for line in VECTORS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, hx = line.split(":", 1)
            out[name.strip()] = bytes.fromhex(hx.strip())
    return out


@pytest.mark.parametrize(("code", "strategy"), BODIES, ids=[m.MessageCode(c).name for c, _ in
                                                            BODIES])
def test_body_roundtrip(code: int, strategy: st.SearchStrategy[object]) -> None:
    @FAST
    @given(strategy)
    def check(body: object) -> None:
        data = body.encode()  # type: ignore[attr-defined]
        assert m.decode_body(code, data, KINDS) == body
        assert m.decode_body(code, data, KINDS).encode() == data

    check()


@FAST
@given(header, contents, security_block)
def test_message_roundtrip(h: ForwardingHeader, c: MessageContents, s: SecurityBlock) -> None:
    data = encode_message(h, c.encode(), s.encode())
    msg = decode_message(data)
    assert msg.header.length == len(data)
    assert msg.contents == c and msg.security == s
    assert msg.header.via_list == h.via_list and msg.header.options == h.options
    assert msg.header.destination_list == h.destination_list
    assert msg.encode() == data


def test_b2_vectors_decode_to_documented_fields() -> None:
    v = load_vectors()
    models = {0xF0000001: sc.DataModel.DICTIONARY}
    for data in v.values():
        msg = decode_message(data)
        assert msg.header.overlay == overlay_hash("overlay.example.org") == 0x9AA32B8D
        assert msg.header.configuration_sequence == 22
        assert msg.header.ttl == 100 and msg.header.version == 0x0A
        assert msg.header.fragment == 0xC0000000
        assert msg.header.transaction_id == 0x0123456789ABCDEF
        assert msg.encode() == data  # byte-identical re-encoding
    rid = resource_id("+15551234567")
    assert rid.hex() == "1861e395c5cdad6abd2fee461b24c97f"

    ping = decode_message(v["ping_req"])
    assert ping.code == m.MessageCode.PING_REQ
    assert ping.header.destination_list == (
        NodeDestination(bytes.fromhex("00112233445566778899aabbccddeeff")),)
    assert m.decode_body(ping.code, ping.contents.body) == m.PingReq(b"")

    store = decode_message(v["store_req"])
    body = m.decode_body(store.code, store.contents.body, models)
    assert isinstance(body, sc.StoreReq)
    assert store.header.destination_list == (ResourceDestination(rid),)
    assert body.resource == rid and body.replica_number == 0
    (kd,) = body.kind_data
    assert kd.kind == 0xF0000001 and kd.generation_counter == 0
    (sd,) = kd.values
    assert sd.storage_time == 1700000000000 and sd.lifetime == 86400
    assert sd.value == sc.DictionaryEntry(
        b"\0" * 16, sc.DataValue(True, b"https://vs.example.net/validate"))
    assert sd.signature is not None and sd.signature.value == b"\x11" * 32

    fetch = decode_message(v["fetch_req"])
    fb = m.decode_body(fetch.code, fetch.contents.body, models)
    assert fb == sc.FetchReq(rid, (sc.StoredDataSpecifier(0xF0000001, 0,
                                                          sc.DictionarySpecifier(())),))
    # dictionary wildcard = length 2, keys 00 00 (§7.4.2.1)
    assert bytes.fromhex("f0000001" + "00" * 8 + "0002" + "0000") in fetch.contents.body

    att = decode_message(v["attach_req"])
    ab = m.decode_body(att.code, att.contents.body)
    assert isinstance(ab, m.AttachReqAns)
    assert (ab.ufrag, ab.password, ab.role, ab.send_update) == (b"ufrag1", b"pass1",
                                                                b"passive", True)
    (cand,) = ab.candidates
    assert cand.addr_port == m.IpAddressPort("127.0.0.1", 6084)
    assert cand.overlay_link == m.LINK_TLS_TCP_FH_NO_ICE and cand.type == m.CAND_HOST

    upd = decode_message(v["update_req"])
    ub = m.decode_body(upd.code, upd.contents.body)
    assert isinstance(ub, m.ChordUpdate)
    assert ub.uptime == 42 and ub.type == m.CHORD_NEIGHBORS
    assert len(ub.predecessors) == 2 and len(ub.successors) == 2

    err = decode_message(v["error_unknown_kind"])
    eb = m.decode_body(err.code, err.contents.body)
    assert isinstance(eb, m.ErrorResponse) and eb.error_code == m.ErrorCode.UNKNOWN_KIND
    assert eb.decode_unknown_kinds() == (0xF0000001,)
    assert eb == m.ErrorResponse.unknown_kinds((0xF0000001,))


def test_json_view_of_vectors() -> None:
    for data in load_vectors().values():
        j = decode_to_json(data)
        json.dumps(j)
        assert j["header"]["transaction_id"] == 0x0123456789ABCDEF
    j = decode_to_json(load_vectors()["error_unknown_kind"])
    assert j["error"] == "unknown_kind" and j["error_info"] == {"unknown_kinds": [0xF0000001]}


def test_strictness() -> None:
    v = load_vectors()["ping_req"]
    with pytest.raises(ReloadDecodeError, match="version"):
        decode_message(v[:10] + b"\x01" + v[11:])  # draft-era version 0x01 (§6.3.2)
    with pytest.raises(ReloadDecodeError):
        decode_message(v + b"\0")  # length mismatch
    with pytest.raises(ReloadDecodeError):
        decode_message(b"\0" + v[1:])  # token
    with pytest.raises(ReloadDecodeError):
        m.decode_body(m.MessageCode.PING_ANS, b"\0" * 15)
    with pytest.raises(ReloadDecodeError):
        m.decode_body(m.MessageCode.PING_REQ, b"\0\0\0")  # trailing byte
    with pytest.raises(ReloadDecodeError):
        m.decode_body(m.MessageCode.UPDATE_REQ, bytes([0, 0, 0, 1, 2, 0, 3, 1, 2, 3, 0, 0]))
    with pytest.raises(ReloadDecodeError):
        m.decode_body(0x05, b"")  # unassigned code
    with pytest.raises(ReloadDecodeError):
        Reader(b"\x02").boolean()


def test_unknown_kind_values_stay_raw() -> None:
    sd = sc.StoredData(1, 2, sc.RawStoredValue(b"opaque-and-signature"), None)
    req = sc.StoreReq(b"r", 0, (sc.StoreKindData(0x7777, 1, (sd,)),))
    assert sc.StoreReq.decode(req.encode()) == req


def test_message_dataclass_contents_bytes() -> None:
    msg = decode_message(load_vectors()["ping_req"])
    assert isinstance(msg, Message)
    assert msg.contents_bytes() == msg.contents.encode()


@FAST
@given(st.sampled_from([m.LEAVE_FROM_SUCC, m.LEAVE_FROM_PRED]),
       st.lists(st.binary(min_size=16, max_size=16), max_size=4))
def test_chord_leave_data_roundtrip(t: int, ids: list[bytes]) -> None:
    ld = m.ChordLeaveData(t, tuple(ids))
    req = m.LeaveReq.chord(b"\1" * 16, ld)
    assert m.LeaveReq.decode(req.encode()).leave_data() == ld


@FAST
@given(st.lists(st.integers(0, 0xFFFFFFFF), max_size=60))
def test_unknown_kinds_error_info_roundtrip(kinds: list[int]) -> None:
    err = m.ErrorResponse.unknown_kinds(tuple(kinds))
    assert m.ErrorResponse.decode(err.encode()).decode_unknown_kinds() == tuple(kinds)


@FAST
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 50))
def test_framing_roundtrip_any_split(msgs: list[bytes], cut: int) -> None:
    from vipr.reload.core.framing import DataFrame, FramingState

    tx, rx = FramingState(), FramingState()
    stream = b"".join(tx.send_data(x, 0.0) for x in msgs)
    got: list[bytes] = []
    for i in range(0, len(stream), cut):
        events, _ = rx.receive(stream[i : i + cut], 0.0)
        got += [e.message for e in events if isinstance(e, DataFrame)]
    assert got == msgs
