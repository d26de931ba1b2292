"""Signatures and certificates: good messages verify, every tampering is rejected."""

from __future__ import annotations

import time

import pytest
from reload_pki import OVERLAY, Pki

from vipr.reload import ca
from vipr.reload.wire import bodies as m
from vipr.reload.wire import storage_bodies as sc
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.envelope import decode_message
from vipr.reload.wire.forwarding import NodeDestination, resource_id
from vipr.reload.wire.security import (
    ReloadSecurityError,
    TrustStore,
    cert_node_ids,
    cert_user,
    parse_reload_uri,
    reload_uri,
    sign_stored_data,
    stored_data_signature_input,
    verify_message,
    verify_stored_data,
)


def test_signed_ping_verifies(pki: Pki) -> None:
    a, b = pki.context(pki.node_a), pki.context(pki.node_b)
    txid, data = a.request(m.PingReq(b"xy"), (NodeDestination(pki.node_b.node_id),))
    rx = b.decode(data)
    assert rx.body == m.PingReq(b"xy") and rx.message.transaction_id == txid
    assert rx.signer is not None and rx.signer.node_id == pki.node_a.node_id
    assert rx.signer.user == "a@provider-a.example"
    ans = a.decode(b.answer(rx.message, m.PingAns(1, 2), previous_hop=pki.node_a.node_id),
                   expected_node_id=pki.node_b.node_id)
    assert ans.message.header.destination_list == (NodeDestination(pki.node_a.node_id),)
    assert ans.message.transaction_id == txid and ans.body == m.PingAns(1, 2)


def test_tampered_message_rejected(pki: Pki) -> None:
    a = pki.context(pki.node_a)
    _, data = a.request(m.PingReq(b"payload"), (NodeDestination(pki.node_b.node_id),))
    i = data.index(b"payload")
    bad = data[:i] + b"P" + data[i + 1:]
    with pytest.raises(ReloadSecurityError, match="bad signature"):
        a.decode(bad)
    # changing the transaction id (part of the signature input, §7.1) also breaks it
    bad_tx = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    with pytest.raises(ReloadSecurityError):
        a.decode(bad_tx)


def test_certificate_from_other_ca_rejected(pki: Pki) -> None:
    evil = ReloadContext(OVERLAY, pki.foreign, pki.trust())
    _, data = evil.request(m.PingReq(), (NodeDestination(pki.node_a.node_id),))
    with pytest.raises(ReloadSecurityError, match="chain"):
        pki.context(pki.node_a).decode(data)


def test_expired_certificate_rejected(pki: Pki) -> None:
    old = ReloadContext(OVERLAY, pki.expired, pki.trust())
    _, data = old.request(m.PingReq(), (NodeDestination(pki.node_a.node_id),))
    with pytest.raises(ReloadSecurityError, match="expired"):
        pki.context(pki.node_a).decode(data)
    # the same key with a current certificate verifies: the rejection is the expiry
    fresh = ReloadContext(OVERLAY, pki.node_a, pki.trust())
    _, ok = fresh.request(m.PingReq(), (NodeDestination(pki.node_a.node_id),))
    assert verify_message(decode_message(ok), pki.trust()).node_id == pki.node_a.node_id


def test_wrong_node_id_rejected(pki: Pki) -> None:
    a = pki.context(pki.node_a)
    _, data = a.request(m.PingReq(), (NodeDestination(pki.node_b.node_id),))
    with pytest.raises(ReloadSecurityError, match="expected Node-ID"):
        a.decode(data, expected_node_id=pki.node_b.node_id)


def test_multi_node_id_certificate_uses_cert_hash_node_id(pki: Pki) -> None:
    ids = cert_node_ids(pki.node_multi.cert)
    assert len(ids) == 3
    assert pki.node_multi.identity.identity_type == 2
    ctx = pki.context(pki.node_multi)
    _, data = ctx.request(m.PingReq(), (NodeDestination(pki.node_a.node_id),))
    rx = pki.context(pki.node_a).decode(data)
    assert rx.signer is not None and rx.signer.node_id == ids[0]


def test_missing_certificate_needs_extra_certs(pki: Pki) -> None:
    ctx = ReloadContext(OVERLAY, pki.node_a, pki.trust(), include_certs=False)
    _, data = ctx.request(m.PingReq(), (NodeDestination(pki.node_b.node_id),))
    with pytest.raises(ReloadSecurityError, match="no certificate"):
        ctx.decode(data)
    assert ctx.decode(data, extra_certs=[pki.node_a.cert]).signer is not None


def test_stored_data_signature(pki: Pki) -> None:
    rid = resource_id("+14085551234")
    key = (pki.node_a.node_id.hex() + "+0011223344556677").encode()
    v = sc.DictionaryEntry(key, sc.DataValue(True, b"\x20\x08\x00\x10" + bytes(16)))
    sd = sign_stored_data(pki.node_a, rid, sc.KIND_VIPR, 1_700_000_000_000, 86400, v)
    signer = verify_stored_data(sd, rid, sc.KIND_VIPR, pki.trust(), [pki.node_a.cert])
    assert signer.node_id == pki.node_a.node_id
    for bad_rid, bad_kind in ((resource_id("+1999"), sc.KIND_VIPR), (rid, 0xF0000102)):
        with pytest.raises(ReloadSecurityError):
            verify_stored_data(sd, bad_rid, bad_kind, pki.trust(), [pki.node_a.cert])
    # array entries are signed with index 0 (§7.1), so an appended entry keeps its signature
    arr = sign_stored_data(pki.node_a, rid, 3, 5, 60,
                           sc.ArrayEntry(sc.ARRAY_APPEND, sc.DataValue(True, b"x")))
    placed = sc.StoredData(arr.storage_time, arr.lifetime,
                           sc.ArrayEntry(7, sc.DataValue(True, b"x")), arr.signature)
    verify_stored_data(placed, rid, 3, pki.trust(), [pki.node_a.cert])


def test_reload_uri_forms(pki: Pki) -> None:
    nid = bytes(range(16))
    assert reload_uri(nid, "o.example") == f"reload://0110{nid.hex()}@o.example/"
    assert parse_reload_uri(reload_uri(nid, "o.example")) == (nid, "o.example")
    assert parse_reload_uri(f"reload://{nid.hex()}@o.example") == (nid, "o.example")
    assert parse_reload_uri("reload://zz@o") is None
    assert cert_user(pki.node_a.cert) == "a@provider-a.example"
    assert pki.node_a.cert.subject.rfc4514_string() == ""  # §11.3 empty subject


def test_self_signed_mode() -> None:
    node = ca.self_signed_node_cert(OVERLAY, "self@x.example")
    strict = TrustStore([], overlay=OVERLAY)
    with pytest.raises(ReloadSecurityError):
        strict.validate(node.cert, time.time())
    permissive = TrustStore([], overlay=OVERLAY, self_signed_permitted=True)
    assert permissive.validate(node.cert, time.time()) == (node.node_id,)
    ctx = ReloadContext(OVERLAY, node, permissive)
    _, data = ctx.request(m.PingReq(), (NodeDestination(node.node_id),))
    assert ctx.decode(data).signer is not None


def test_bad_node_rejected(pki: Pki) -> None:
    t = TrustStore([pki.ca_cert], overlay=OVERLAY, bad_nodes=[pki.node_b.node_id])
    with pytest.raises(ReloadSecurityError, match="revoked"):
        t.validate(pki.node_b.cert)


def test_stored_data_signature_input_layout() -> None:
    rid = bytes(range(16))
    v = sc.DataValue(True, b"abc")
    data = stored_data_signature_input(rid, 0xF0000101, 7, v)
    assert data == rid + bytes.fromhex("f0000101") + (7).to_bytes(8, "big") + b"\x01\0\0\0\3abc"
    wide = stored_data_signature_input(rid, 0xF0000101, 7, v, kind_bytes=8)
    assert wide[16:24] == bytes.fromhex("00000000f0000101")
    md = sc.metadata_for(v)
    assert md.value_length == 3 and md.hash_algorithm == 4 and len(md.hash_value) == 32
