"""The VIPR usage (DESIGN §4) as sans-I/O decisions: which requests to send, what they mean.

`ViprLookup` finds the claims on a number: a Fetch of `N`, falling back to `COPY1N`, then
`COPY2N` when the fetch fails or returns no valid claim; an answer too large for one message
(Error_Response_Too_Large) is followed by a Stat (RFC 6940 §7.4.3, metadata only) and one
Fetch per key. Every fetched value's signature is verified (§7.4.2.2); bad ones are dropped.
`ClaimStores` builds the signed Stores that publish or withdraw this node's claim under the
three names, with strictly increasing storage times (§7.4.1.1 Error_Data_Too_Old).

Both return `UsageRequest`s (routed to `resource`, outcome reported with `tag`); a carrier
(aio/vipr_usage.py, the simulator) sends them. Time is a parameter; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from cryptography import x509

from vipr.reload.wire import bodies as m
from vipr.reload.wire.security import (
    NodeCredentials,
    ReloadSecurityError,
    TrustStore,
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
    StatAns,
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

__all__ = ["ClaimStores", "LookupResult", "UsageRequest", "ViprLookup", "verify_values"]


@dataclass(frozen=True, slots=True)
class UsageRequest:
    """Send `body` to the peer responsible for `resource`; report the outcome with `tag`."""

    tag: int
    resource: bytes
    body: FetchReq | StatReq | StoreReq | m.WithCertificates


@dataclass(frozen=True)
class LookupResult:
    number: str
    claims: list[Claim]
    resource: str  # "N" | "COPY1N" | "COPY2N"

    def as_json(self) -> dict[str, object]:
        return {"number": self.number, "claims": [c.as_json() for c in self.claims],
                "resource": self.resource}


def verify_values(body: m.Body, certs: Sequence[x509.Certificate], resource: bytes,
                  trust: TrustStore, now: float | None,
                  rejected: list[str] | None = None) -> list[StoredData]:
    """The VIPR values of a FetchAns whose signatures check out and whose key names their
    signer (VIPR-NODE-PREFIX); the reasons for dropped ones go to `rejected`. `now` (UNIX
    time) checks certificate validity (None: the wire layer reads the clock)."""
    if not isinstance(body, FetchAns):
        return []
    out = []
    for kr in body.kind_responses:
        if kr.kind != KIND_VIPR:
            continue
        for sd in kr.values:
            if sd.signature is None or sd.signature.value == b"":
                continue  # §7.4.2.2: an absent entry (exists=false, no signature)
            try:
                signer = verify_stored_data(sd, resource, KIND_VIPR, trust, certs, now)
            except ReloadSecurityError as e:
                if rejected is not None:
                    rejected.append(f"badly signed value at {resource.hex()}: {e}")
                continue
            v = sd.value
            if isinstance(v, DictionaryEntry) and v.key[:32] == signer.node_id.hex().encode():
                out.append(sd)
    return out


class LookupPhase(Enum):
    FETCH = auto()  # the whole dictionary at one of the three names
    STAT = auto()  # it did not fit one answer: its keys (§7.4.3)
    BY_KEY = auto()  # one Fetch per key
    DONE = auto()


_WHOLE = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier())


@dataclass
class ViprLookup:
    """One lookup of `number` (DESIGN §4); `result` is set once it is over."""

    number: str
    trust: TrustStore
    phase: LookupPhase = LookupPhase.FETCH
    result: LookupResult | None = None
    notes: list[str] = field(default_factory=list)  # why a copy was skipped (for the log)
    _names: tuple[bytes, ...] = ()
    _index: int = 0
    _tag: int = 0
    _waiting: set[int] = field(default_factory=set)
    _values: list[StoredData] = field(default_factory=list)

    def start(self) -> list[UsageRequest]:
        self._names = tuple(resource_ids(self.number))
        return self._fetch_whole()

    @property
    def _res(self) -> bytes:
        return self._names[self._index]

    @property
    def _label(self) -> str:
        return RESOURCE_LABELS[self._index]

    @property
    def copy_label(self) -> str:
        """The copy being fetched: N, COPY1N or COPY2N (DESIGN §4)."""
        return self._label

    def _req(self, body: FetchReq | StatReq) -> UsageRequest:
        self._tag += 1
        self._waiting.add(self._tag)
        return UsageRequest(self._tag, self._res, body)

    def _fetch_whole(self) -> list[UsageRequest]:
        self.phase = LookupPhase.FETCH
        self._values = []
        self._waiting.clear()
        return [self._req(FetchReq(self._res, (_WHOLE,)))]

    def _next_copy(self, why: str) -> list[UsageRequest]:
        self.notes.append(f"lookup {self.number} at {self._label}: {why}")
        self._index += 1
        if self._index >= len(self._names):
            return self._finish([], "N")
        return self._fetch_whole()

    def _finish(self, claims: list[Claim], label: str) -> list[UsageRequest]:
        self.phase = LookupPhase.DONE
        self._waiting.clear()
        self.result = LookupResult(self.number, claims, label)
        return []

    def _copy_done(self) -> list[UsageRequest]:
        claims = claims_from(self._values)
        if claims:
            return self._finish(claims, self._label)
        return self._next_copy("no valid claim")

    def on_answer(self, tag: int, body: m.Body, certs: Sequence[x509.Certificate],
                  wall: float) -> list[UsageRequest]:
        """The answer to `tag`, with the certificates of its security block; `wall` (UNIX
        time) checks the signers' certificate validity."""
        if tag not in self._waiting:
            return []
        self._waiting.discard(tag)
        if self.phase is LookupPhase.FETCH:
            self._values = verify_values(body, certs, self._res, self.trust, wall, self.notes)
            return self._copy_done()
        if self.phase is LookupPhase.STAT:
            keys = [md.metadata.key for kr in getattr(body, "kind_responses", ())
                    if isinstance(body, StatAns) and kr.kind == KIND_VIPR for md in kr.values
                    if isinstance(md.metadata, DictionaryEntryMeta) and md.metadata.value.exists]
            if not keys:
                return self._next_copy("no keys in the Stat answer")
            self.phase = LookupPhase.BY_KEY
            return [self._req(FetchReq(self._res, (StoredDataSpecifier(
                KIND_VIPR, 0, DictionarySpecifier((k,))),))) for k in keys]
        if self.phase is LookupPhase.BY_KEY:
            self._values += verify_values(body, certs, self._res, self.trust, wall, self.notes)
            return [] if self._waiting else self._copy_done()
        return []

    def on_failed(self, tag: int, error_code: int, info: str) -> list[UsageRequest]:
        """Request `tag` got an Error answer or none (REQUEST_TIMEOUT, a link failure)."""
        if tag not in self._waiting:
            return []
        self._waiting.discard(tag)
        if self.phase is LookupPhase.FETCH and error_code == m.ErrorCode.RESPONSE_TOO_LARGE:
            # DESIGN §4: learn the keys with a Stat, then fetch each key alone
            self.notes.append(f"lookup {self.number} at {self._label}: {info}; "
                              f"fetching key by key")
            self.phase = LookupPhase.STAT
            return [self._req(StatReq(self._res, (_WHOLE,)))]
        if self.phase is LookupPhase.BY_KEY:  # one entry lost is not the whole lookup
            self.notes.append(f"fetch of one key at {self._label} failed: {error_code} {info}")
            return [] if self._waiting else self._copy_done()
        return self._next_copy(f"RELOAD error {error_code}: {info}")


@dataclass
class ClaimStores:
    """The signed Stores of this node's claim `<Node-ID>+<vservice>` → peer id (DESIGN §4)."""

    creds: NodeCredentials
    vservice: str
    lifetime: int
    peer_id: bytes
    _last_time: int = 0
    _tag: int = 0

    def _storage_time(self, wall: float) -> int:
        """ms since 1970, strictly increasing across our stores (§7.4.1.1)."""
        t = max(int(wall * 1000), self._last_time + 1)
        self._last_time = t
        return t

    def _stores(self, number: str, entry: DictionaryEntry, wall: float) -> list[UsageRequest]:
        out = []
        for res in resource_ids(number):
            self._tag += 1
            out.append(UsageRequest(self._tag, res, self.store_request(res, entry, wall)))
        return out

    def store_request(self, res: bytes, entry: DictionaryEntry, wall: float) -> StoreReq:
        """One signed original Store of `entry` at `res`."""
        sd = sign_stored_data(self.creds, res, KIND_VIPR, self._storage_time(wall),
                              self.lifetime, entry)
        return StoreReq(res, 0, (StoreKindData(KIND_VIPR, 0, (sd,)),))

    def publish(self, number: str, wall: float) -> list[UsageRequest]:
        """Store the claim under `N`, `COPY1N`, `COPY2N`."""
        entry = claim_entry(self.creds.node_id, self.vservice, self.peer_id)
        return self._stores(number, entry, wall)

    def withdraw(self, number: str, wall: float) -> list[UsageRequest]:
        """Delete our claim (exists=false, DESIGN §4)."""
        entry = DictionaryEntry(dictionary_key(self.creds.node_id, self.vservice),
                                DataValue(False))
        return self._stores(number, entry, wall)

    @staticmethod
    def stored(body: m.Body) -> bool:
        """Whether an answer to one of the Stores means it was stored."""
        return isinstance(body, StoreAns)
