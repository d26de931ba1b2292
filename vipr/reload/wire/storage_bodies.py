"""Stored data and the Store / Fetch / Stat / Find bodies (RFC 6940 §7).

The value layout depends on the Kind's data model, which is not on the wire: decoders take
`models` (Kind-ID → DataModel). A Kind without a known model decodes to `RawStoredValue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from vipr.reload.wire.codec import Reader, ReloadDecodeError, ReloadEncodeError, Writer
from vipr.reload.wire.codes import MessageCode
from vipr.reload.wire.envelope import Signature


class DataModel(IntEnum):
    SINGLE = 1
    ARRAY = 2
    DICTIONARY = 3

    @classmethod
    def parse(cls, name: str) -> DataModel:
        key = name.strip().upper()
        if key in ("SINGLE", "SINGLE_VALUE", "SINGLE-VALUE"):
            return cls.SINGLE
        return cls[key]


KIND_SIP_REGISTRATION = 0x1
KIND_TURN_SERVICE = 0x2
KIND_CERTIFICATE_BY_NODE = 0x3
KIND_CERTIFICATE_BY_USER = 0x10
KIND_VIPR = 0xF0000101  # DESIGN §4

DEFAULT_MODELS: dict[int, DataModel] = {
    KIND_SIP_REGISTRATION: DataModel.DICTIONARY,
    KIND_TURN_SERVICE: DataModel.SINGLE,
    KIND_CERTIFICATE_BY_NODE: DataModel.ARRAY,
    KIND_CERTIFICATE_BY_USER: DataModel.ARRAY,
    KIND_VIPR: DataModel.DICTIONARY,
}

ARRAY_APPEND = 0xFFFFFFFF  # §7.2.2: index 0xffffffff on Store = append

Models = Mapping[int, DataModel] | None


def _model(models: Models, kind: int) -> DataModel | None:
    return (DEFAULT_MODELS if models is None else models).get(kind)


@dataclass(frozen=True, slots=True)
class DataValue:
    """§7.2: exists Boolean, value opaque<0..2^32-1>."""

    exists: bool
    value: bytes = b""

    def encode_into(self, w: Writer) -> None:
        w.boolean(self.exists).opaque(4, self.value)

    @classmethod
    def decode(cls, r: Reader) -> DataValue:
        return cls(r.boolean(), r.opaque(4))


@dataclass(frozen=True, slots=True)
class ArrayEntry:
    index: int
    value: DataValue


@dataclass(frozen=True, slots=True)
class DictionaryEntry:
    key: bytes
    value: DataValue


@dataclass(frozen=True, slots=True)
class RawStoredValue:
    """Value ‖ signature of a Kind whose data model is unknown (kept as bytes)."""

    data: bytes


StoredDataValue = DataValue | ArrayEntry | DictionaryEntry | RawStoredValue


def encode_value(w: Writer, v: StoredDataValue) -> None:
    if isinstance(v, DataValue):
        v.encode_into(w)
    elif isinstance(v, ArrayEntry):
        w.u32(v.index)
        v.value.encode_into(w)
    elif isinstance(v, DictionaryEntry):
        w.opaque(2, v.key)
        v.value.encode_into(w)
    else:
        w.raw(v.data)


def value_bytes(v: StoredDataValue) -> bytes:
    w = Writer()
    encode_value(w, v)
    return w.getvalue()


def decode_value(r: Reader, model: DataModel) -> StoredDataValue:
    if model == DataModel.SINGLE:
        return DataValue.decode(r)
    if model == DataModel.ARRAY:
        return ArrayEntry(r.u32(), DataValue.decode(r))
    return DictionaryEntry(r.opaque(2), DataValue.decode(r))


@dataclass(frozen=True, slots=True)
class StoredData:
    """§7.2 StoredData: length u32, storage_time u64 (ms), lifetime u32 (s), value, signature.

    `signature` is None only with a `RawStoredValue` (unknown model).
    """

    storage_time: int
    lifetime: int
    value: StoredDataValue
    signature: Signature | None

    def encode_into(self, w: Writer) -> None:
        inner = Writer().u64(self.storage_time).u32(self.lifetime)
        encode_value(inner, self.value)
        if self.signature is not None:
            if isinstance(self.value, RawStoredValue):
                raise ReloadEncodeError("raw stored values already include the signature")
            self.signature.encode_into(inner)
        elif not isinstance(self.value, RawStoredValue):
            raise ReloadEncodeError("stored data needs a signature")
        w.opaque(4, inner.getvalue())

    @classmethod
    def decode(cls, r: Reader, model: DataModel | None) -> StoredData:
        sr = r.sub(4)
        st = sr.u64()
        lt = sr.u32()
        if model is None:
            return cls(st, lt, RawStoredValue(sr.fixed(sr.remaining())), None)
        v = decode_value(sr, model)
        sig = Signature.decode(sr)
        sr.done("StoredData")
        return cls(st, lt, v, sig)


def _stored_list(w: Writer, values: tuple[StoredData, ...]) -> None:
    vw = Writer()
    for v in values:
        v.encode_into(vw)
    w.opaque(4, vw.getvalue())


def _decode_stored_list(r: Reader, model: DataModel | None) -> tuple[StoredData, ...]:
    vr = r.sub(4)
    out = []
    while vr.remaining():
        out.append(StoredData.decode(vr, model))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class StoreKindData:
    """§7.4.1.1: kind u32, generation_counter u64, values StoredData<0..2^32-1>."""

    kind: int
    generation_counter: int
    values: tuple[StoredData, ...]


@dataclass(frozen=True, slots=True)
class StoreReq:
    """§7.4.1.1 StoreReq."""

    resource: bytes
    replica_number: int
    kind_data: tuple[StoreKindData, ...]

    def encode(self) -> bytes:
        w = Writer().opaque(1, self.resource).u8(self.replica_number)
        kw = Writer()
        for kd in self.kind_data:
            kw.u32(kd.kind).u64(kd.generation_counter)
            _stored_list(kw, kd.values)
        w.opaque(4, kw.getvalue())
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> StoreReq:
        r = Reader(data)
        res = r.opaque(1)
        rep = r.u8()
        kr = r.sub(4)
        r.done("StoreReq")
        kds = []
        while kr.remaining():
            kind = kr.u32()
            gen = kr.u64()
            kds.append(StoreKindData(kind, gen, _decode_stored_list(kr, _model(models, kind))))
        return cls(res, rep, tuple(kds))


@dataclass(frozen=True, slots=True)
class StoreKindResponse:
    """§7.4.1.2: kind u32, generation_counter u64, replicas NodeId<0..2^16-1>."""

    kind: int
    generation_counter: int
    replicas: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreAns:
    """§7.4.1.2 StoreAns (also the error_info of Error_Generation_Counter_Too_Low)."""

    kind_responses: tuple[StoreKindResponse, ...]

    def encode(self) -> bytes:
        kw = Writer()
        for k in self.kind_responses:
            kw.u32(k.kind).u64(k.generation_counter).node_id_list(2, k.replicas)
        return Writer().opaque(2, kw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> StoreAns:
        r = Reader(data)
        kr = r.sub(2)
        r.done("StoreAns")
        out = []
        while kr.remaining():
            out.append(StoreKindResponse(kr.u32(), kr.u64(), kr.node_id_list(2)))
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class ArrayRange:
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class SingleSpecifier:
    """Single-value model: empty model specifier (length 0)."""


@dataclass(frozen=True, slots=True)
class ArraySpecifier:
    indices: tuple[ArrayRange, ...]


@dataclass(frozen=True, slots=True)
class DictionarySpecifier:
    """Dictionary keys; empty = all keys (encoded as length 2, `00 00`, §7.4.2.1)."""

    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class RawSpecifier:
    data: bytes


ModelSpecifier = SingleSpecifier | ArraySpecifier | DictionarySpecifier | RawSpecifier


@dataclass(frozen=True, slots=True)
class StoredDataSpecifier:
    """§7.4.2.1: kind u32, generation u64, length u16, model specifier."""

    kind: int
    generation: int
    specifier: ModelSpecifier

    def encode_into(self, w: Writer) -> None:
        sw = Writer()
        s = self.specifier
        if isinstance(s, ArraySpecifier):
            iw = Writer()
            for rng in s.indices:
                iw.u32(rng.first).u32(rng.last)
            sw.opaque(2, iw.getvalue())
        elif isinstance(s, DictionarySpecifier):
            kw = Writer()
            for k in s.keys:
                kw.opaque(2, k)
            sw.opaque(2, kw.getvalue())
        elif isinstance(s, RawSpecifier):
            sw.raw(s.data)
        w.u32(self.kind).u64(self.generation).opaque(2, sw.getvalue())

    @classmethod
    def decode(cls, r: Reader, models: Models) -> StoredDataSpecifier:
        kind = r.u32()
        gen = r.u64()
        sr = r.sub(2)
        model = _model(models, kind)
        spec: ModelSpecifier
        if model is None:
            spec = RawSpecifier(sr.fixed(sr.remaining()))
        elif model == DataModel.SINGLE:
            spec = SingleSpecifier()
        elif model == DataModel.ARRAY:
            ir = sr.sub(2)
            if ir.remaining() % 8:
                raise ReloadDecodeError("ArrayRange list length is not a multiple of 8")
            rngs = []
            while ir.remaining():
                rngs.append(ArrayRange(ir.u32(), ir.u32()))
            spec = ArraySpecifier(tuple(rngs))
        else:
            kr = sr.sub(2)
            keys = []
            while kr.remaining():
                keys.append(kr.opaque(2))
            spec = DictionarySpecifier(tuple(keys))
        sr.done("StoredDataSpecifier")
        return cls(kind, gen, spec)


def _encode_specifiers(w: Writer, specs: tuple[StoredDataSpecifier, ...]) -> None:
    sw = Writer()
    for s in specs:
        s.encode_into(sw)
    w.opaque(2, sw.getvalue())


def _decode_specifiers(r: Reader, models: Models) -> tuple[StoredDataSpecifier, ...]:
    sr = r.sub(2)
    out = []
    while sr.remaining():
        out.append(StoredDataSpecifier.decode(sr, models))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _SpecifiersReq:
    """resource opaque<0..2^8-1>, specifiers StoredDataSpecifier<0..2^16-1> (Fetch and Stat)."""

    resource: bytes
    specifiers: tuple[StoredDataSpecifier, ...]

    def encode(self) -> bytes:
        w = Writer().opaque(1, self.resource)
        _encode_specifiers(w, self.specifiers)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> Self:
        r = Reader(data)
        v = cls(r.opaque(1), _decode_specifiers(r, models))
        r.done(cls.__name__)
        return v


@dataclass(frozen=True, slots=True)
class FetchReq(_SpecifiersReq):
    """§7.4.2.1 FetchReq: resource, specifiers StoredDataSpecifier<0..2^16-1>."""


@dataclass(frozen=True, slots=True)
class StatReq(_SpecifiersReq):
    """§7.4.3.1 StatReq: same layout as FetchReq."""


@dataclass(frozen=True, slots=True)
class FetchKindResponse:
    """§7.4.2.2: kind u32, generation u64, values StoredData<0..2^32-1>."""

    kind: int
    generation: int
    values: tuple[StoredData, ...]


@dataclass(frozen=True, slots=True)
class FetchAns:
    kind_responses: tuple[FetchKindResponse, ...]

    def encode(self) -> bytes:
        kw = Writer()
        for k in self.kind_responses:
            kw.u32(k.kind).u64(k.generation)
            _stored_list(kw, k.values)
        return Writer().opaque(4, kw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> FetchAns:
        r = Reader(data)
        kr = r.sub(4)
        r.done("FetchAns")
        out = []
        while kr.remaining():
            kind = kr.u32()
            gen = kr.u64()
            out.append(FetchKindResponse(kind, gen, _decode_stored_list(kr, _model(models, kind))))
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class MetaData:
    """§7.4.3.2 MetaData: exists, value_length u32, hash_algorithm u8, hash_value<0..255>."""

    exists: bool
    value_length: int
    hash_algorithm: int
    hash_value: bytes

    def encode_into(self, w: Writer) -> None:
        w.boolean(self.exists).u32(self.value_length).u8(self.hash_algorithm)
        w.opaque(1, self.hash_value)

    @classmethod
    def decode(cls, r: Reader) -> MetaData:
        return cls(r.boolean(), r.u32(), r.u8(), r.opaque(1))


def metadata_for(value: DataValue) -> MetaData:
    """§7.4.3.2 MetaData of a DataValue: SHA-256 over the value with its 4-byte length."""
    import hashlib

    digest = hashlib.sha256(len(value.value).to_bytes(4, "big") + value.value).digest()
    return MetaData(value.exists, len(value.value), 4, digest)


@dataclass(frozen=True, slots=True)
class ArrayEntryMeta:
    index: int
    value: MetaData


@dataclass(frozen=True, slots=True)
class DictionaryEntryMeta:
    key: bytes
    value: MetaData


MetaDataValue = MetaData | ArrayEntryMeta | DictionaryEntryMeta | RawStoredValue


@dataclass(frozen=True, slots=True)
class StoredMetaData:
    """§7.4.3.2 StoredMetaData: length u32 of the rest (as Wireshark reads it), storage_time,
    lifetime, MetaDataValue."""

    storage_time: int
    lifetime: int
    metadata: MetaDataValue

    def encode_into(self, w: Writer) -> None:
        inner = Writer().u64(self.storage_time).u32(self.lifetime)
        m = self.metadata
        if isinstance(m, MetaData):
            m.encode_into(inner)
        elif isinstance(m, ArrayEntryMeta):
            inner.u32(m.index)
            m.value.encode_into(inner)
        elif isinstance(m, DictionaryEntryMeta):
            inner.opaque(2, m.key)
            m.value.encode_into(inner)
        else:
            inner.raw(m.data)
        w.opaque(4, inner.getvalue())

    @classmethod
    def decode(cls, r: Reader, model: DataModel | None) -> StoredMetaData:
        sr = r.sub(4)
        st = sr.u64()
        lt = sr.u32()
        m: MetaDataValue
        if model is None:
            m = RawStoredValue(sr.fixed(sr.remaining()))
        elif model == DataModel.SINGLE:
            m = MetaData.decode(sr)
        elif model == DataModel.ARRAY:
            m = ArrayEntryMeta(sr.u32(), MetaData.decode(sr))
        else:
            m = DictionaryEntryMeta(sr.opaque(2), MetaData.decode(sr))
        sr.done("StoredMetaData")
        return cls(st, lt, m)


@dataclass(frozen=True, slots=True)
class StatKindResponse:
    kind: int
    generation: int
    values: tuple[StoredMetaData, ...]


@dataclass(frozen=True, slots=True)
class StatAns:
    """§7.4.3.2 StatAns: kind_responses StatKindResponse<0..2^32-1>."""

    kind_responses: tuple[StatKindResponse, ...]

    def encode(self) -> bytes:
        kw = Writer()
        for k in self.kind_responses:
            kw.u32(k.kind).u64(k.generation)
            vw = Writer()
            for v in k.values:
                v.encode_into(vw)
            kw.opaque(4, vw.getvalue())
        return Writer().opaque(4, kw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> StatAns:
        r = Reader(data)
        kr = r.sub(4)
        r.done("StatAns")
        out = []
        while kr.remaining():
            kind = kr.u32()
            gen = kr.u64()
            model = _model(models, kind)
            vr = kr.sub(4)
            vals = []
            while vr.remaining():
                vals.append(StoredMetaData.decode(vr, model))
            out.append(StatKindResponse(kind, gen, tuple(vals)))
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class FindReq:
    """§7.4.4.1 FindReq: resource, kinds KindId<0..2^8-1>."""

    resource: bytes
    kinds: tuple[int, ...]

    def encode(self) -> bytes:
        kw = Writer()
        for k in self.kinds:
            kw.u32(k)
        return Writer().opaque(1, self.resource).opaque(1, kw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> FindReq:
        r = Reader(data)
        res = r.opaque(1)
        kr = r.sub(1)
        r.done("FindReq")
        if kr.remaining() % 4:
            raise ReloadDecodeError("KindId list length is not a multiple of 4")
        kinds = []
        while kr.remaining():
            kinds.append(kr.u32())
        return cls(res, tuple(kinds))


@dataclass(frozen=True, slots=True)
class FindKindData:
    kind: int
    closest: bytes


@dataclass(frozen=True, slots=True)
class FindAns:
    """§7.4.4.2 FindAns: results FindKindData<0..2^16-1> (kind u32, closest ResourceId)."""

    results: tuple[FindKindData, ...]

    def encode(self) -> bytes:
        kw = Writer()
        for f in self.results:
            kw.u32(f.kind).opaque(1, f.closest)
        return Writer().opaque(2, kw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes, models: Models = None) -> FindAns:
        r = Reader(data)
        kr = r.sub(2)
        r.done("FindAns")
        out = []
        while kr.remaining():
            out.append(FindKindData(kr.u32(), kr.opaque(1)))
        return cls(tuple(out))


STORAGE_BODIES: dict[int, type[StoreReq | StoreAns | FetchReq | FetchAns | StatReq | StatAns |
                             FindReq | FindAns]] = {
    MessageCode.STORE_REQ: StoreReq,
    MessageCode.STORE_ANS: StoreAns,
    MessageCode.FETCH_REQ: FetchReq,
    MessageCode.FETCH_ANS: FetchAns,
    MessageCode.STAT_REQ: StatReq,
    MessageCode.STAT_ANS: StatAns,
    MessageCode.FIND_REQ: FindReq,
    MessageCode.FIND_ANS: FindAns,
}
