"""Forwarding header, destinations and forwarding options (RFC 6940 §6.3.2)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from vipr.reload.wire.codec import (
    NODE_ID_LENGTH,
    Reader,
    ReloadDecodeError,
    ReloadEncodeError,
    Writer,
)

RELO_TOKEN = 0xD2454C4F  # §6.3.2: "RELO" with the high bit of the first byte set
VERSION = 0x0A  # §6.3.2: version 1.0; draft-era 0x01 MUST be rejected
DEFAULT_TTL = 100  # §6.3.2 / §11.1 initial-ttl
UNFRAGMENTED = 0xC0000000  # §6.3.2: bit 31 always set, bit 30 = last fragment, offset 0
FIXED_HEADER_LENGTH = 38
_FIXED = struct.Struct("!IIHBBIIQIHHH")

# DestinationType (§6.3.2.2)
DEST_NODE = 1
DEST_RESOURCE = 2
DEST_OPAQUE = 3

# Forwarding option flags (§6.3.2.3)
FORWARD_CRITICAL = 0x01
DESTINATION_CRITICAL = 0x02
RESPONSE_COPY = 0x04

WILDCARD_NODE_ID = b"\xff" * NODE_ID_LENGTH  # §6.3.1.1: all ones = wildcard


def overlay_hash(overlay_name: str) -> int:
    """§6.3.2: the low-order 32 bits of SHA-1(overlay name) (not to be mixed with Resource-IDs)."""
    return int.from_bytes(hashlib.sha1(overlay_name.encode("utf-8")).digest()[-4:], "big")


def resource_id(name: str | bytes) -> bytes:
    """CHORD-RELOAD Resource-ID: most significant 128 bits of SHA-1(name) (§10.2, DESIGN §4)."""
    data = name.encode("utf-8") if isinstance(name, str) else name
    return hashlib.sha1(data).digest()[:NODE_ID_LENGTH]


@dataclass(frozen=True, slots=True)
class NodeDestination:
    """Long-form destination naming a Node-ID."""

    node_id: bytes


@dataclass(frozen=True, slots=True)
class ResourceDestination:
    """Long-form destination naming a Resource-ID (only last in a destination list)."""

    resource_id: bytes


@dataclass(frozen=True, slots=True)
class OpaqueDestination:
    """Long-form opaque_id_type destination (`opaque<0..2^8-1>`)."""

    opaque_id: bytes


@dataclass(frozen=True, slots=True)
class CompactDestination:
    """Compact form: a 16-bit value with the high bit set (§6.3.2.2)."""

    value: int


Destination = NodeDestination | ResourceDestination | OpaqueDestination | CompactDestination


def encode_destination(w: Writer, d: Destination) -> None:
    if isinstance(d, NodeDestination):
        w.u8(DEST_NODE).u8(NODE_ID_LENGTH).node_id(d.node_id)
    elif isinstance(d, ResourceDestination):
        # ResourceId carries its own 1-byte length inside destination_data (§6.3.2.2).
        if len(d.resource_id) > 0xFF - 1:
            raise ReloadEncodeError("resource id too long")
        w.u8(DEST_RESOURCE).u8(len(d.resource_id) + 1).opaque(1, d.resource_id)
    elif isinstance(d, OpaqueDestination):
        if len(d.opaque_id) > 0xFF - 1:
            raise ReloadEncodeError("opaque id too long")
        w.u8(DEST_OPAQUE).u8(len(d.opaque_id) + 1).opaque(1, d.opaque_id)
    else:
        if not 0x8000 <= d.value <= 0xFFFF:
            raise ReloadEncodeError("compact destination needs the high bit set")
        w.u16(d.value)


def decode_destination(r: Reader) -> Destination:
    first = r.u8()
    if first & 0x80:
        # Compact form: the first bit is 1, the whole 16 bits are the opaque id (§6.3.2.2).
        return CompactDestination((first << 8) | r.u8())
    data = r.sub(1)
    if first == DEST_NODE:
        d: Destination = NodeDestination(data.node_id())
    elif first == DEST_RESOURCE:
        d = ResourceDestination(data.opaque(1))
    elif first == DEST_OPAQUE:
        d = OpaqueDestination(data.opaque(1))
    else:
        raise ReloadDecodeError(f"unknown destination type {first}")
    data.done("destination")
    return d


def encode_destination_list(dests: tuple[Destination, ...]) -> bytes:
    w = Writer()
    for d in dests:
        encode_destination(w, d)
    return w.getvalue()


def decode_destination_list(r: Reader) -> tuple[Destination, ...]:
    out: list[Destination] = []
    while r.remaining():
        out.append(decode_destination(r))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ForwardingOption:
    """§6.3.2.3: type u8, flags u8, opaque option<0..2^16-1>."""

    type: int
    flags: int = 0
    value: bytes = b""

    @property
    def critical(self) -> bool:
        return bool(self.flags & (FORWARD_CRITICAL | DESTINATION_CRITICAL))


@dataclass(frozen=True, slots=True)
class ForwardingHeader:
    """§6.3.2 ForwardingHeader (`length` is recomputed on encode)."""

    overlay: int
    transaction_id: int
    destination_list: tuple[Destination, ...] = ()
    via_list: tuple[Destination, ...] = ()
    options: tuple[ForwardingOption, ...] = ()
    configuration_sequence: int = 0
    version: int = VERSION
    ttl: int = DEFAULT_TTL
    fragment: int = UNFRAGMENTED
    length: int = 0
    max_response_length: int = 0

    def encode(self, total_length: int) -> bytes:
        via = encode_destination_list(self.via_list)
        dest = encode_destination_list(self.destination_list)
        ow = Writer()
        for o in self.options:
            ow.u8(o.type).u8(o.flags).opaque(2, o.value)
        opts = ow.getvalue()
        w = Writer()
        w.u32(RELO_TOKEN).u32(self.overlay).u16(self.configuration_sequence)
        w.u8(self.version).u8(self.ttl).u32(self.fragment).u32(total_length)
        w.u64(self.transaction_id).u32(self.max_response_length)
        w.u16(len(via)).u16(len(dest)).u16(len(opts))
        w.raw(via).raw(dest).raw(opts)
        return w.getvalue()

    def encoded_length(self) -> int:
        return len(self.encode(0))

    @classmethod
    def decode(cls, r: Reader) -> ForwardingHeader:
        if r.remaining() < FIXED_HEADER_LENGTH:
            raise ReloadDecodeError("truncated forwarding header")
        (token, overlay, seq, version, ttl, fragment, length, txid, mrl, via_len, dest_len,
         opt_len) = _FIXED.unpack_from(r.buf, r.pos)
        r.pos += FIXED_HEADER_LENGTH
        if token != RELO_TOKEN:
            raise ReloadDecodeError("bad relo_token")
        if version != VERSION:
            # §6.3.2: a node MUST reject other versions (draft-era peers send 0x01).
            raise ReloadDecodeError(f"unsupported RELOAD version 0x{version:02x}")
        if not fragment & 0x80000000:
            raise ReloadDecodeError("fragment field must have its high bit set")
        via = decode_destination_list(r.sub_fixed(via_len))
        dests = decode_destination_list(r.sub_fixed(dest_len))
        optr = r.sub_fixed(opt_len)
        options: list[ForwardingOption] = []
        while optr.remaining():
            t = optr.u8()
            flags = optr.u8()
            options.append(ForwardingOption(t, flags, optr.opaque(2)))
        return cls(
            overlay=overlay,
            transaction_id=txid,
            destination_list=dests,
            via_list=via,
            options=tuple(options),
            configuration_sequence=seq,
            version=version,
            ttl=ttl,
            fragment=fragment,
            length=length,
            max_response_length=mrl,
        )


def response_destinations(request: ForwardingHeader,
                          previous_hop: bytes | None = None) -> tuple[Destination, ...]:
    """§6.3.2.1/§6.2.2: a response's destination list is the request's via list reversed,
    preceded by the node the request arrived from (which pops itself on receipt)."""
    dests = list(reversed(request.via_list))
    if previous_hop is not None:
        dests.insert(0, NodeDestination(previous_hop))
    return tuple(dests)
