"""The VIPR usage over a RELOAD node (DESIGN §4): publish numbers, look them up, AppAttach.

Publishing stores this node's claim `<Node-ID>+<VServiceID>` → TLV(peerID) under `N`,
`COPY1N` and `COPY2N`. Lookup fetches `N` and falls back to `COPY1N`, then `COPY2N` when the
fetch fails or returns no claim; every fetched value's signature is verified (§7.4.2.2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vipr.metrics import FETCH_FAILURES
from vipr.reload.aio.storage_service import StorageNode
from vipr.reload.core.node_api import ReloadRequestError
from vipr.reload.wire.bodies import PVP_APPLICATION_ID, ErrorCode
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.security import (
    ReloadSecurityError,
    TrustStore,
    message_certificates,
    sign_stored_data,
    verify_stored_data,
)
from vipr.reload.wire.storage_bodies import (
    DataValue,
    DictionaryEntry,
    DictionaryEntryMeta,
    DictionarySpecifier,
    FetchAns,
    FetchReq,
    StatReq,
    StoreAns,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
    StoreReq,
)
from vipr.reload.wire.vipr_kind import (
    KIND_VIPR,
    RESOURCE_LABELS,
    Claim,
    claim_entry,
    claims_from,
    dictionary_key,
    resource_ids,
)

__all__ = ["LookupResult", "PVP_APPLICATION_ID", "ViprPublisher", "lookup", "verified_values"]

log = logging.getLogger("vipr.reload.aio.vipr_usage")


class UsageNode(StorageNode, Protocol):
    context: ReloadContext


@dataclass(frozen=True)
class LookupResult:
    number: str
    claims: list[Claim]
    resource: str  # "N" | "COPY1N" | "COPY2N"

    def as_json(self) -> dict[str, object]:
        return {"number": self.number, "claims": [c.as_json() for c in self.claims],
                "resource": self.resource}


def verified_values(ans: Received, resource: bytes, trust: TrustStore,
                    now: float | None = None) -> list[StoredData]:
    """The VIPR values of a FetchAns whose signatures check out; bad ones are dropped."""
    body = ans.body
    if not isinstance(body, FetchAns):
        return []
    ctx_certs = message_certificates(ans.message)
    out = []
    for kr in body.kind_responses:
        if kr.kind != KIND_VIPR:
            continue
        for sd in kr.values:
            if sd.signature is None or sd.signature.value == b"":
                continue
            try:
                signer = verify_stored_data(sd, resource, KIND_VIPR, trust, ctx_certs, now)
            except ReloadSecurityError as e:
                log.warning("dropping a badly signed value at %s: %s", resource.hex(), e)
                continue
            v = sd.value
            if isinstance(v, DictionaryEntry) and v.key[:32] == signer.node_id.hex().encode():
                out.append(sd)
    return out


async def _fetch_by_key(node: UsageNode, res: bytes, timeout: float) -> list[StoredData]:
    """DESIGN §4: the whole dictionary did not fit one answer (Error_Response_Too_Large):
    learn its keys with a Stat (metadata only, RFC 6940 §7.4.3) and fetch each key alone."""
    stat = await node.request(res, StatReq(res, (StoredDataSpecifier(
        KIND_VIPR, 0, DictionarySpecifier()),)), timeout=timeout)
    keys = [md.metadata.key for kr in getattr(stat.body, "kind_responses", ())
            if kr.kind == KIND_VIPR for md in kr.values
            if isinstance(md.metadata, DictionaryEntryMeta) and md.metadata.value.exists]

    async def one(key: bytes) -> list[StoredData]:
        spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier((key,)))
        try:
            ans = await node.request(res, FetchReq(res, (spec,)), timeout=timeout)
        except Exception as e:  # one entry lost is not the whole lookup
            log.info("fetch of key %r at %s failed: %r", key[:49], res.hex(), e)
            return []
        return verified_values(ans, res, node.context.trust)

    parts = await asyncio.gather(*(one(k) for k in keys))
    return [sd for part in parts for sd in part]


async def lookup(node: UsageNode, number: str, *, timeout: float = 15.0) -> LookupResult:
    """Fetch the claims on `number`: `N`, then `COPY1N`, then `COPY2N` (DESIGN §4)."""
    spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier())
    for label, res in zip(RESOURCE_LABELS, resource_ids(number), strict=True):
        try:
            try:
                ans = await node.request(res, FetchReq(res, (spec,)), timeout=timeout)
                values = verified_values(ans, res, node.context.trust)
            except ReloadRequestError as e:
                if e.error_code != ErrorCode.RESPONSE_TOO_LARGE:
                    raise
                log.info("lookup %s at %s: %s; fetching key by key", number, label, e)
                values = await _fetch_by_key(node, res, timeout)
        except Exception as e:  # ReloadRequestError, timeouts, link failures: try the next copy
            log.info("lookup %s at %s failed: %r", number, label, e)
            FETCH_FAILURES.labels(label).inc()
            continue
        claims = claims_from(values)
        if claims:
            return LookupResult(number, claims, label)
    return LookupResult(number, [], "N")


class ViprPublisher:
    """Publishes this provider's numbers from one node, signing with that node's identity."""

    def __init__(self, node: UsageNode, vservice: str, *, lifetime: float = 86400.0,
                 peer_id: bytes | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 15.0) -> None:
        self.node = node
        self.vservice = vservice.lower()
        self.lifetime = int(lifetime)
        self.peer_id = peer_id or node.node_id
        self.clock = clock
        self.timeout = timeout
        self._last_time = 0

    def _storage_time(self) -> int:
        """ms since 1970, strictly increasing across our stores (§7.4.1.1 Error_Data_Too_Old)."""
        t = max(int(self.clock() * 1000), self._last_time + 1)
        self._last_time = t
        return t

    def _request(self, res: bytes, entry: DictionaryEntry) -> StoreReq:
        creds = self.node.context.creds
        sd = sign_stored_data(creds, res, KIND_VIPR, self._storage_time(), self.lifetime, entry)
        return StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (sd,)),))

    async def publish(self, number: str) -> int:
        """Store the claim under the three names; returns how many stores succeeded."""
        entry = claim_entry(self.node.node_id, self.vservice, self.peer_id)
        return await self._store_all(number, entry)

    async def withdraw(self, number: str) -> int:
        """Delete our claim (exists=false, DESIGN §4)."""
        entry = DictionaryEntry(dictionary_key(self.node.node_id, self.vservice),
                                DataValue(False))
        return await self._store_all(number, entry)

    async def _store_all(self, number: str, entry: DictionaryEntry) -> int:
        async def one(res: bytes) -> bool:
            try:
                ans = await self.node.request(res, self._request(res, entry),
                                              timeout=self.timeout)
            except Exception as e:  # one copy failing is tolerated; the caller retries later
                log.info("store %s at %s failed: %r", number, res.hex(), e)
                return False
            return isinstance(ans.body, StoreAns)

        results = await asyncio.gather(*(one(r) for r in resource_ids(number)))
        return sum(results)
