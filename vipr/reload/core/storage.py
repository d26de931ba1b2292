"""RELOAD data storage (RFC 6940 §7), sans-I/O: what a storing peer keeps and how it answers.

`DataStore` applies StoreReq / FetchReq / StatReq / FindReq to an in-memory table keyed by
(Resource-ID, Kind-ID), with the three data models (§7.2), generation counters (§7.4.1),
increasing storage_time, lifetimes and expiry, atomic requests, Kind limits (max-count,
max-size) and the access-control policies of §7.3 plus VIPR-NODE-PREFIX (DESIGN §4). Every
value's signature is verified (§7.1) against the certificates that came with the request.
`now` is always a parameter (seconds, UNIX time).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from vipr.reload.errors import ReloadError
from vipr.reload.overlay_config import VIPR_POLICY, KindDef
from vipr.reload.wire.bodies import ErrorCode, ErrorResponse
from vipr.reload.wire.envelope import Signature
from vipr.reload.wire.forwarding import resource_id
from vipr.reload.wire.security import (
    ReloadSecurityError,
    TrustStore,
    VerifiedSigner,
    cert_der,
    verify_stored_data,
)
from vipr.reload.wire.storage_bodies import (
    ARRAY_APPEND,
    ArrayEntry,
    ArrayEntryMeta,
    ArraySpecifier,
    DataModel,
    DataValue,
    DictionaryEntry,
    DictionaryEntryMeta,
    DictionarySpecifier,
    FetchAns,
    FetchKindResponse,
    FetchReq,
    FindAns,
    FindKindData,
    FindReq,
    MetaDataValue,
    RawStoredValue,
    StatAns,
    StatKindResponse,
    StatReq,
    StoreAns,
    StoredData,
    StoredDataSpecifier,
    StoredMetaData,
    StoreKindData,
    StoreKindResponse,
    StoreReq,
    metadata_for,
)
from vipr.reload.wire.vipr_kind import MAX_ENTRIES_PER_SIGNER, node_prefix_allows

__all__ = ["DataStore", "Entry", "KindRecord", "StorageError", "policy_allows"]

EntryKey = bytes | int  # dictionary key, array index, b"" for single values


class StorageError(ReloadError):
    """A request the store refuses; `response()` is the Error to send back (§6.3.3.1)."""

    def __init__(self, code: ErrorCode, message: str, info: bytes | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.info = message.encode() if info is None else info

    def response(self) -> ErrorResponse:
        return ErrorResponse(int(self.code), self.info)


@dataclass
class Entry:
    """One stored value, the DER of its signer's certificate and when it expires (local time)."""

    data: StoredData
    cert: bytes
    expires: float


@dataclass
class KindRecord:
    """All values of one Kind at one Resource-ID (§7.2), with its generation counter."""

    generation: int = 0
    entries: dict[EntryKey, Entry] = field(default_factory=dict)


def _entry_key(sd: StoredData) -> EntryKey:
    v = sd.value
    if isinstance(v, DictionaryEntry):
        return v.key
    if isinstance(v, ArrayEntry):
        return v.index
    return b""


def _value_size(sd: StoredData) -> int:
    v = sd.value
    if isinstance(v, DictionaryEntry | ArrayEntry):
        return len(v.value.value)
    if isinstance(v, DataValue):
        return len(v.value)
    return len(v.data)


def _exists(sd: StoredData) -> bool:
    v = sd.value
    if isinstance(v, DictionaryEntry | ArrayEntry):
        return v.value.exists
    return isinstance(v, DataValue) and v.exists


def _model_ok(model: DataModel, sd: StoredData) -> bool:
    v = sd.value
    return {DataModel.SINGLE: DataValue, DataModel.ARRAY: ArrayEntry,
            DataModel.DICTIONARY: DictionaryEntry}[model] is type(v)


def policy_allows(kind: KindDef, resource: bytes, sd: StoredData, signer: VerifiedSigner) -> bool:
    """§7.3 access-control policies and VIPR-NODE-PREFIX for one value and its signer."""
    policy = kind.access_control.upper()
    if policy == "USER-MATCH":
        return signer.user is not None and resource_id(signer.user) == resource
    if policy == "NODE-MATCH":
        return resource_id(signer.node_id) == resource
    if policy == "USER-NODE-MATCH":
        v = sd.value
        return (signer.user is not None and resource_id(signer.user) == resource
                and isinstance(v, DictionaryEntry) and v.key == signer.node_id)
    if policy == "NODE-MULTIPLE":
        top = kind.max_node_multiple or 1
        return any(resource_id(signer.node_id + i.to_bytes(4, "big")) == resource
                   for i in range(1, top + 1))
    if policy == VIPR_POLICY:
        v = sd.value
        return isinstance(v, DictionaryEntry) and node_prefix_allows(v.key, (signer.node_id,))
    return False


def _empty(model: DataModel, key: EntryKey) -> StoredData:
    """§7.4.2.2: a missing entry is reported with exists=False, identity none, {0,0}."""
    dv = DataValue(False, b"")
    value: DataValue | ArrayEntry | DictionaryEntry
    if model == DataModel.DICTIONARY and isinstance(key, bytes):
        value = DictionaryEntry(key, dv)
    elif model == DataModel.ARRAY and isinstance(key, int):
        value = ArrayEntry(key, dv)
    else:
        value = dv
    return StoredData(0, 0, value, Signature.empty())


class DataStore:
    """The storing peer's table. Not thread-safe; one per node."""

    def __init__(self, kinds: Iterable[KindDef], trust: TrustStore) -> None:
        self.kinds = {k.id: k for k in kinds}
        self.trust = trust
        self._data: dict[bytes, dict[int, KindRecord]] = {}

    # ------------------------------------------------------------------ inspection

    def resources(self) -> list[bytes]:
        return list(self._data)

    def record(self, resource: bytes, kind: int) -> KindRecord | None:
        return self._data.get(resource, {}).get(kind)

    def entry_count(self) -> int:
        return sum(len(r.entries) for kinds in self._data.values() for r in kinds.values())

    def __len__(self) -> int:
        return len(self._data)

    def drop(self, resource: bytes) -> None:
        self._data.pop(resource, None)

    # ------------------------------------------------------------------ store (§7.4.1)

    def store(self, req: StoreReq, certs: Sequence[x509.Certificate], now: float, *,
              request_signer: VerifiedSigner | None = None, responsible: bool = True,
              replicas: tuple[bytes, ...] = ()) -> StoreAns:
        """Apply a StoreReq atomically or raise StorageError (nothing changed then).

        `request_signer`: who signed the StoreReq (checked against the policy for originals).
        `responsible`: whether this peer is responsible for `req.resource` (needed when
        replica_number is 0). Replica stores copy generation counters verbatim.
        """
        kinds_seen = [kd.kind for kd in req.kind_data]
        if len(set(kinds_seen)) != len(kinds_seen):
            raise StorageError(ErrorCode.INVALID_MESSAGE, "a Kind appears twice in the StoreReq")
        unknown = tuple(k for k in kinds_seen if k not in self.kinds)
        if unknown:
            e = ErrorResponse.unknown_kinds(unknown)
            raise StorageError(ErrorCode.UNKNOWN_KIND, "unknown Kind", e.error_info)
        original = req.replica_number == 0
        if original and not responsible:
            raise StorageError(ErrorCode.NOT_FOUND, "not responsible for this Resource-ID")
        current = self._data.get(req.resource, {})
        staged: dict[int, KindRecord] = {}
        for kd in req.kind_data:
            kind = self.kinds[kd.kind]
            rec = copy.deepcopy(current.get(kd.kind)) or KindRecord()
            self._expire_record(rec, now)
            if original and kd.generation_counter not in (0, rec.generation):
                ans = StoreAns(tuple(StoreKindResponse(k, (current.get(k) or KindRecord())
                                                       .generation) for k in kinds_seen))
                raise StorageError(ErrorCode.GENERATION_COUNTER_TOO_LOW,
                                   "generation counter mismatch", ans.encode())
            changed = False
            signers: set[bytes] = set()
            for sd in kd.values:
                changed |= self._apply(kind, req.resource, rec, sd, certs, now, original,
                                       request_signer, signers)
            live = sum(1 for e in rec.entries.values() if _exists(e.data))
            if live > kind.max_count:
                raise StorageError(ErrorCode.DATA_TOO_LARGE,
                                   f"more than max-count {kind.max_count} values")
            if original and kind.access_control.upper() == VIPR_POLICY:
                self._check_signer_cap(rec, signers)
            if original:
                if changed:
                    rec.generation += 1
            elif kd.generation_counter:
                rec.generation = kd.generation_counter
            staged[kd.kind] = rec
        self._data.setdefault(req.resource, {}).update(staged)
        return StoreAns(tuple(StoreKindResponse(k, staged[k].generation, replicas)
                              for k in kinds_seen))

    @staticmethod
    def _check_signer_cap(rec: KindRecord, signers: set[bytes]) -> None:
        """DESIGN §4: one signer (certificate) holds at most MAX_ENTRIES_PER_SIGNER entries
        of a VIPR resource, deletions (exists=false) included: they take room in every
        FetchAns too. So no member can fill max-count or push the answer past
        max-message-size and hide the other providers' claims."""
        for cert in signers:
            held = sum(1 for e in rec.entries.values() if e.cert == cert)
            if held > MAX_ENTRIES_PER_SIGNER:
                raise StorageError(ErrorCode.DATA_TOO_LARGE,
                                   f"a signer may hold at most {MAX_ENTRIES_PER_SIGNER} entries "
                                   f"per resource")

    def _apply(self, kind: KindDef, resource: bytes, rec: KindRecord, sd: StoredData,
               certs: Sequence[x509.Certificate], now: float, original: bool,
               request_signer: VerifiedSigner | None, signers: set[bytes]) -> bool:
        if isinstance(sd.value, RawStoredValue) or not _model_ok(kind.data_model, sd):
            raise StorageError(ErrorCode.INVALID_MESSAGE, "value does not match the Kind's model")
        if _value_size(sd) > kind.max_size:
            raise StorageError(ErrorCode.DATA_TOO_LARGE, f"value exceeds max-size {kind.max_size}")
        try:
            signer = verify_stored_data(sd, resource, kind.id, self.trust, certs, now)
        except ReloadSecurityError as e:
            raise StorageError(ErrorCode.FORBIDDEN, f"value signature: {e}") from None
        if not policy_allows(kind, resource, sd, signer):
            raise StorageError(ErrorCode.FORBIDDEN, f"{kind.access_control} policy refuses")
        if original and request_signer is not None and not policy_allows(
                kind, resource, sd, request_signer):
            raise StorageError(ErrorCode.FORBIDDEN, "request signer not authorized")
        key = _entry_key(sd)
        if isinstance(sd.value, ArrayEntry) and key == ARRAY_APPEND:
            key = max((k for k in rec.entries if isinstance(k, int)), default=-1) + 1
            sd = StoredData(sd.storage_time, sd.lifetime, ArrayEntry(key, sd.value.value),
                            sd.signature)
        old = rec.entries.get(key)
        if old is not None and sd.storage_time <= old.data.storage_time:
            if original:
                raise StorageError(ErrorCode.DATA_TOO_OLD,
                                   "storage_time not newer than the stored value")
            return False  # a replica we already hold (or older): idempotent
        der = cert_der(signer.cert)
        rec.entries[key] = Entry(sd, der, now + sd.lifetime)
        signers.add(der)
        return True

    # ------------------------------------------------------------------ fetch / stat

    def _specified(self, resource: bytes, spec: StoredDataSpecifier, now: float
                   ) -> tuple[KindRecord, list[tuple[EntryKey, Entry | None]]]:
        kind = self.kinds.get(spec.kind)
        if kind is None:
            e = ErrorResponse.unknown_kinds((spec.kind,))
            raise StorageError(ErrorCode.UNKNOWN_KIND, "unknown Kind", e.error_info)
        rec = self._data.get(resource, {}).get(spec.kind) or KindRecord()
        self._expire_record(rec, now)
        s = spec.specifier
        out: list[tuple[EntryKey, Entry | None]] = []
        if isinstance(s, DictionarySpecifier) and s.keys:
            out = [(k, rec.entries.get(k)) for k in s.keys]
        elif isinstance(s, ArraySpecifier) and s.indices:
            ints = sorted(k for k in rec.entries if isinstance(k, int))
            top = ints[-1] if ints else -1
            for rng in s.indices:
                last = top if rng.last == ARRAY_APPEND else rng.last
                first = top if rng.first == ARRAY_APPEND else rng.first
                out.extend((i, rec.entries.get(i)) for i in range(first, min(last, top) + 1))
        else:
            out = sorted(rec.entries.items(), key=lambda kv: str(kv[0]))
            if kind.data_model == DataModel.SINGLE and not out:
                out = [(b"", None)]
        return rec, out

    def fetch(self, req: FetchReq, now: float) -> tuple[FetchAns, list[bytes]]:
        """§7.4.2: the FetchAns and the DER certificates that sign its values (for the
        answer's security block)."""
        responses = []
        certs: dict[bytes, None] = {}
        for spec in req.specifiers:
            model = self.kinds[spec.kind].data_model if spec.kind in self.kinds else None
            rec, items = self._specified(req.resource, spec, now)
            if spec.generation and spec.generation == rec.generation:
                responses.append(FetchKindResponse(spec.kind, rec.generation, ()))
                continue
            values = []
            for key, e in items:
                if e is None:
                    assert model is not None
                    values.append(_empty(model, key))
                else:
                    values.append(self._aged(e, now))
                    certs[e.cert] = None
            responses.append(FetchKindResponse(spec.kind, rec.generation, tuple(values)))
        return FetchAns(tuple(responses)), list(certs)

    def stat(self, req: StatReq, now: float) -> StatAns:
        """§7.4.3: metadata (length, storage_time, lifetime, hash) instead of values."""
        responses = []
        for spec in req.specifiers:
            rec, items = self._specified(req.resource, spec, now)
            metas = []
            for _key, e in items:
                if e is None:
                    continue
                sd = self._aged(e, now)
                v = sd.value
                m: MetaDataValue
                if isinstance(v, DictionaryEntry):
                    m = DictionaryEntryMeta(v.key, metadata_for(v.value))
                elif isinstance(v, ArrayEntry):
                    m = ArrayEntryMeta(v.index, metadata_for(v.value))
                elif isinstance(v, DataValue):
                    m = metadata_for(v)
                else:
                    continue
                metas.append(StoredMetaData(sd.storage_time, sd.lifetime, m))
            responses.append(StatKindResponse(spec.kind, rec.generation, tuple(metas)))
        return StatAns(tuple(responses))

    def find(self, req: FindReq, now: float) -> FindAns:
        """§7.4.4: the closest Resource-ID at or after `req.resource` held for each Kind
        (0 when none)."""
        self.expire(now)
        out = []
        target = int.from_bytes(req.resource, "big")
        for kind in req.kinds:
            held = [r for r, ks in self._data.items() if kind in ks]
            best = min(held, key=lambda r: (int.from_bytes(r, "big") - target) % (1 << 128),
                       default=bytes(len(req.resource)))
            out.append(FindKindData(kind, best))
        return FindAns(tuple(out))

    # ------------------------------------------------------------------ lifetimes

    @staticmethod
    def _aged(e: Entry, now: float) -> StoredData:
        """The stored value with its lifetime reduced to what remains (§7.4.1.3 / A.4)."""
        remaining = max(0, int(e.expires - now))
        d = e.data
        return StoredData(d.storage_time, remaining, d.value, d.signature)

    @staticmethod
    def _expire_record(rec: KindRecord, now: float) -> int:
        dead = [k for k, e in rec.entries.items() if e.expires <= now]
        for k in dead:
            del rec.entries[k]
        return len(dead)

    def expire(self, now: float) -> int:
        """Drop every expired value (and empty resources); returns how many values went."""
        n = 0
        for res in list(self._data):
            kinds = self._data[res]
            for kid in list(kinds):
                n += self._expire_record(kinds[kid], now)
                if not kinds[kid].entries:
                    del kinds[kid]
            if not kinds:
                del self._data[res]
        return n

    def replica_request(self, resource: bytes, replica_number: int, now: float
                        ) -> tuple[StoreReq, list[bytes]] | None:
        """A StoreReq copying everything held at `resource` (values with their remaining
        lifetime, generation counters verbatim) and the signer certificates it needs."""
        kinds = self._data.get(resource)
        if not kinds:
            return None
        kds = []
        certs: dict[bytes, None] = {}
        for kid, rec in sorted(kinds.items()):
            self._expire_record(rec, now)
            if not rec.entries:
                continue
            vals = tuple(self._aged(e, now) for e in rec.entries.values())
            certs.update((e.cert, None) for e in rec.entries.values())
            kds.append(StoreKindData(kid, rec.generation, vals))
        if not kds:
            return None
        return StoreReq(resource, replica_number, tuple(kds)), list(certs)
