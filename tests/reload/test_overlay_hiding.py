"""Issue 13 defect 3: one enrolled member cannot make another provider's claim unfindable.

Real nodes on loopback with TLS links and the storage service (DESIGN §4: per-signer entry cap,
max-message-size large enough for a full resource, Error_Response_Too_Large instead of a
dropped answer, key-by-key fetch after it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from node_harness import Overlay, make_overlay, true_owner

from vipr.reload.aio.node import ReloadNode, ReloadRequestError
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher, lookup
from vipr.reload.core.storage import DataStore
from vipr.reload.overlay_config import (
    OverlayConfigError,
    check_answers_fit,
    full_answer_size,
    vipr_kind,
    vipr_overlay_configuration,
)
from vipr.reload.wire import bodies as m
from vipr.reload.wire.security import sign_stored_data
from vipr.reload.wire.storage_bodies import (
    DictionarySpecifier,
    FetchReq,
    StoredDataSpecifier,
    StoreKindData,
    StoreReq,
)
from vipr.reload.wire.vipr_kind import KIND_VIPR, MAX_ENTRIES_PER_SIGNER, claim_entry, resource_ids

pytestmark = pytest.mark.timeout(120)

NUMBER = "+14085550123"
VS_LEGIT = "00000000000000b2"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    return make_overlay(tmp_path_factory.mktemp("hiding"), 5)


async def _ring(overlay: Overlay, n: int, **kw: object) -> list[ReloadNode]:
    nodes = []
    overlay.changed = asyncio.Event()
    for i, cr in enumerate(overlay.creds[:n]):
        svc = StorageService(DataStore([vipr_kind()], overlay.trust()), hold_down=0.05)
        node = overlay.make_node(cr, create=i == 0, storage=svc, **kw)
        await node.start()
        svc.attach(node)
        overlay.nodes.append(node)
        nodes.append(node)
    await overlay.converge(20)
    return nodes


async def _stop(overlay: Overlay) -> None:
    for node in overlay.nodes:
        svc = node.storage
        await node.stop(leave=False)
        if isinstance(svc, StorageService):
            await svc.close()


async def _squat(node: ReloadNode, res: bytes, count: int) -> int:
    """Store `count` entries of `node`'s own (validly signed) claims, one Store each; returns
    how many the storing peer accepted."""
    creds = node.context.creds
    accepted = 0
    for i in range(count):
        entry = claim_entry(node.node_id, f"{i + 1:016x}", node.node_id)
        sd = sign_stored_data(creds, res, KIND_VIPR, 1_700_000_000_000 + i, 3600, entry)
        try:
            await node.request(res, StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (sd,)),)),
                               timeout=5.0)
            accepted += 1
        except ReloadRequestError as e:
            assert e.error_code == m.ErrorCode.DATA_TOO_LARGE, e
    return accepted


async def test_one_member_with_31_entries_cannot_hide_another_claim(pool: Overlay,
                                                                     tmp_path: Path) -> None:
    overlay = Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)
    try:
        nodes = await _ring(overlay, 5)
        # the reader owns none of the three resources: every answer crosses a TLS link
        owners = {true_owner(nodes, r).node_id for r in resource_ids(NUMBER)}
        reader = next(n for n in nodes if n.node_id not in owners)
        attacker, provider = [n for n in nodes if n is not reader][:2]
        assert await ViprPublisher(provider, VS_LEGIT).publish(NUMBER) == 3
        for res in resource_ids(NUMBER):  # N, COPY1N and COPY2N
            assert await _squat(attacker, res, 31) == MAX_ENTRIES_PER_SIGNER
        r = await asyncio.wait_for(lookup(reader, NUMBER, timeout=3.0), 30)
        assert (provider.node_id, VS_LEGIT) in {(c.node_id, c.vservice) for c in r.claims}
        assert r.resource == "N"
    finally:
        await _stop(overlay)


async def test_oversize_answer_is_an_error_and_lookup_fetches_by_key(pool: Overlay,
                                                                    tmp_path: Path) -> None:
    """With a max-message-size too small for the resource the storing peer answers
    Error_Response_Too_Large at once (no timeout) and `lookup` still finds every claim."""
    overlay = Overlay(tmp_path, pool.ca_cert, pool.ca_key, pool.creds)
    try:
        nodes = await _ring(overlay, 4, max_message_size=4000)
        for k, node in enumerate(nodes):
            assert await ViprPublisher(node, f"{k + 1:016x}").publish(NUMBER) == 3
        res = resource_ids(NUMBER)[0]
        spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier())
        with pytest.raises(ReloadRequestError) as ei:
            # 4 entries, 4 certificates: about 6 KB. The timeout is far above one round
            # trip, and the error must come long before it.
            await nodes[0].request(res, FetchReq(res, (spec,)), timeout=20.0)
        assert ei.value.error_code == m.ErrorCode.RESPONSE_TOO_LARGE
        r = await asyncio.wait_for(lookup(nodes[1], NUMBER, timeout=5.0), 30)
        assert {c.node_id for c in r.claims} == {n.node_id for n in nodes}
        assert r.resource == "N"
    finally:
        await _stop(overlay)


def test_generated_overlay_document_carries_a_full_vipr_resource() -> None:
    conf = vipr_overlay_configuration("o.example", [])
    check_answers_fit(conf)
    assert conf.max_message_size >= full_answer_size(vipr_kind())


def test_document_whose_answers_cannot_fit_is_refused() -> None:
    import dataclasses

    conf = dataclasses.replace(vipr_overlay_configuration("o.example", []),
                               max_message_size=5000)
    with pytest.raises(OverlayConfigError, match="max-message-size 5000"):
        check_answers_fit(conf)


def test_storing_peer_answers_the_cap_with_data_too_large(pool: Overlay) -> None:
    """Sans-I/O: the fifth entry of one signer is refused, deletions count, other signers
    are unaffected."""
    from vipr.reload.core.storage import StorageError
    from vipr.reload.wire.security import NodeCredentials
    from vipr.reload.wire.storage_bodies import DataValue, DictionaryEntry
    from vipr.reload.wire.vipr_kind import dictionary_key

    store = DataStore([vipr_kind()], pool.trust())
    res = resource_ids(NUMBER)[0]
    a: NodeCredentials = pool.creds[0]
    b: NodeCredentials = pool.creds[1]

    def put(cr: NodeCredentials, i: int, exists: bool = True, t: int = 0) -> None:
        vs = f"{i:016x}"
        entry = (claim_entry(cr.node_id, vs, cr.node_id) if exists else
                 DictionaryEntry(dictionary_key(cr.node_id, vs), DataValue(False)))
        sd = sign_stored_data(cr, res, KIND_VIPR, 1_700_000_000_000 + i + t, 3600, entry)
        store.store(StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (sd,)),)), [cr.cert],
                    time.time())

    for i in range(MAX_ENTRIES_PER_SIGNER - 1):
        put(a, i)
    put(a, 100, exists=False)  # a deletion takes room too
    with pytest.raises(StorageError) as ei:
        put(a, 101)
    assert ei.value.code == m.ErrorCode.DATA_TOO_LARGE
    put(a, 0, t=1000)  # replacing an entry it holds is fine
    put(b, 1)  # another signer is not affected
    rec = store.record(res, KIND_VIPR)
    assert rec is not None and len(rec.entries) == MAX_ENTRIES_PER_SIGNER + 1
