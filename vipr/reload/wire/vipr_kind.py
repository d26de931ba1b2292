"""The VIPR RELOAD usage (DESIGN §4), sans-I/O: resource names, dictionary keys, values, claims.

- Kind `VIPR` 0xF0000101 (private range), DICTIONARY model, policy VIPR-NODE-PREFIX.
- Resource names for number N: `N`, `COPY1N`, `COPY2N`; Resource-ID = most significant 128 bits
  of SHA-1(name) (RFC 6940 §10.2).
- Dictionary key: ASCII `<32 hex Node-ID>+<16 hex VServiceID>` (lower case).
- Value: TLV list (type u16, length u16, value padded to 4 bytes); type 0x2008 = peerID.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from vipr.reload.errors import ReloadError
from vipr.reload.wire.codec import NODE_ID_LENGTH
from vipr.reload.wire.forwarding import resource_id
from vipr.reload.wire.storage_bodies import KIND_VIPR, DataValue, DictionaryEntry, StoredData

__all__ = [
    "KIND_VIPR",
    "MAX_ENTRIES_PER_SIGNER",
    "RESOURCE_LABELS",
    "TLV_PEER_ID",
    "Claim",
    "ViprValueError",
    "claims_from",
    "decode_value",
    "dictionary_key",
    "encode_value",
    "node_prefix_allows",
    "parse_dictionary_key",
    "resource_ids",
    "resource_names",
]

TLV_PEER_ID = 0x2008
# DESIGN §4: entries one signer (certificate) may hold under one resource. A provider needs one
# per VServiceID per node; a few more cover a renumbered node whose old entry has not expired.
MAX_ENTRIES_PER_SIGNER = 4
RESOURCE_LABELS = ("N", "COPY1N", "COPY2N")
_KEY_RE = re.compile(rb"^([0-9a-f]{32})\+([0-9a-f]{16})$")


class ViprValueError(ReloadError, ValueError):
    """A VIPR dictionary key or value is malformed."""


def resource_names(number: str) -> tuple[str, str, str]:
    """DESIGN §4: `N`, `COPY1N`, `COPY2N` for an E.164 number with "+"."""
    return number, f"COPY1{number}", f"COPY2{number}"


def resource_ids(number: str) -> tuple[bytes, bytes, bytes]:
    a, b, c = (resource_id(n) for n in resource_names(number))
    return a, b, c


def dictionary_key(node_id: bytes, vservice: str) -> bytes:
    """`<32 hex Node-ID>+<16 hex VServiceID>`, lower case ASCII."""
    vs = vservice.lower()
    if len(node_id) != NODE_ID_LENGTH or not re.fullmatch(r"[0-9a-f]{16}", vs):
        raise ViprValueError("dictionary key needs a 16-byte Node-ID and a 16-hex VServiceID")
    return f"{node_id.hex()}+{vs}".encode("ascii")


def parse_dictionary_key(key: bytes) -> tuple[bytes, str]:
    m = _KEY_RE.match(key)
    if m is None:
        raise ViprValueError(f"bad VIPR dictionary key {key[:60]!r}")
    return bytes.fromhex(m.group(1).decode()), m.group(2).decode()


def encode_value(peer_id: bytes, extra: Iterable[tuple[int, bytes]] = ()) -> bytes:
    """TLV list: peerID first, then `extra` (type, value) pairs; values padded to 4 bytes."""
    out = bytearray()
    for t, v in ((TLV_PEER_ID, peer_id), *extra):
        out += struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)
    return bytes(out)


def decode_value(data: bytes) -> dict[int, bytes]:
    """TLV type → value (first occurrence wins; unknown types are kept, callers ignore them)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if len(data) - i < 4:
            raise ViprValueError("truncated TLV header")
        t, n = struct.unpack_from("!HH", data, i)
        i += 4
        if i + n > len(data):
            raise ViprValueError("TLV length beyond the value")
        out.setdefault(t, data[i:i + n])
        i += n + (-n % 4)
    return out


@dataclass(frozen=True, slots=True)
class Claim:
    """One provider's claim on a number: who stored it, its VService, the AppAttach peer."""

    node_id: bytes
    vservice: str
    peer_id: bytes

    def as_json(self) -> dict[str, str]:
        return {"node_id": self.node_id.hex(), "vservice": self.vservice,
                "peer_id": self.peer_id.hex()}


def claim_of(entry: DictionaryEntry) -> Claim | None:
    """The claim in one dictionary entry; None for deleted or malformed entries."""
    if not entry.value.exists:
        return None
    try:
        node_id, vs = parse_dictionary_key(entry.key)
        tlvs = decode_value(entry.value.value)
    except ViprValueError:
        return None
    peer = tlvs.get(TLV_PEER_ID)
    if peer is None or len(peer) != NODE_ID_LENGTH:
        return None
    return Claim(node_id, vs, peer)


def claims_from(values: Iterable[StoredData]) -> list[Claim]:
    """Claims of fetched (already verified) dictionary values, sorted, without duplicates."""
    out: set[Claim] = set()
    for sd in values:
        if isinstance(sd.value, DictionaryEntry):
            c = claim_of(sd.value)
            if c is not None:
                out.add(c)
    return sorted(out, key=lambda c: (c.node_id, c.vservice))


def claim_entry(node_id: bytes, vservice: str, peer_id: bytes) -> DictionaryEntry:
    return DictionaryEntry(dictionary_key(node_id, vservice),
                           DataValue(True, encode_value(peer_id)))


def node_prefix_allows(key: bytes, signer_node_ids: Iterable[bytes]) -> bool:
    """VIPR-NODE-PREFIX (DESIGN §4): the key has the VIPR form and its first 32 hex digits are
    one of the signer's Node-IDs."""
    try:
        node_id, _ = parse_dictionary_key(key)
    except ViprValueError:
        return False
    return node_id in set(signer_node_ids)
