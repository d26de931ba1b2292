"""Bodies of the topology methods: Probe, Join, Leave, Update, RouteQuery (RFC 6940 §6.4.2),
in their CHORD-RELOAD forms (§10.7-10.9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vipr.reload.wire.codec import Reader, ReloadDecodeError, ReloadEncodeError, Writer
from vipr.reload.wire.codes import MessageCode
from vipr.reload.wire.forwarding import Destination, decode_destination, encode_destination

# ProbeInformationType (§6.4.2.5.1)
PROBE_RESPONSIBLE_SET = 1
PROBE_NUM_RESOURCES = 2
PROBE_UPTIME = 3

# ChordUpdateType (§10.7.1) and ChordLeaveType (§10.9)
CHORD_PEER_READY = 1
CHORD_NEIGHBORS = 2
CHORD_FULL = 3
LEAVE_FROM_SUCC = 1
LEAVE_FROM_PRED = 2


@dataclass(frozen=True, slots=True)
class ProbeReq:
    requested_info: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return Writer().opaque(1, bytes(self.requested_info)).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ProbeReq:
        r = Reader(data)
        info = tuple(r.opaque(1))
        r.done("ProbeReq")
        return cls(info)


@dataclass(frozen=True, slots=True)
class ProbeInformation:
    """§6.4.2.5.1: type u8, length u8, u32 value (responsible_ppb / num_resources / uptime)."""

    type: int
    value: int


@dataclass(frozen=True, slots=True)
class ProbeAns:
    probe_info: tuple[ProbeInformation, ...] = ()
    code: ClassVar[int] = MessageCode.PROBE_ANS

    def encode(self) -> bytes:
        iw = Writer()
        for p in self.probe_info:
            if p.type not in (PROBE_RESPONSIBLE_SET, PROBE_NUM_RESOURCES, PROBE_UPTIME):
                raise ReloadEncodeError(f"unknown ProbeInformationType {p.type}")
            iw.u8(p.type).u8(4).u32(p.value)
        return Writer().opaque(2, iw.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ProbeAns:
        r = Reader(data)
        lr = r.sub(2)
        r.done("ProbeAns")
        out = []
        while lr.remaining():
            t = lr.u8()
            vr = lr.sub(1)
            if t not in (PROBE_RESPONSIBLE_SET, PROBE_NUM_RESOURCES, PROBE_UPTIME):
                raise ReloadDecodeError(f"unknown ProbeInformationType {t}")
            v = vr.u32()
            vr.done("ProbeInformation")
            out.append(ProbeInformation(t, v))
        return cls(tuple(out))


def _encode_peer_and_data(peer: bytes, data: bytes) -> bytes:
    """JoinReq and LeaveReq share one layout (§6.4.2.1/§6.4.2.2): NodeId, opaque<0..2^16-1>."""
    return Writer().node_id(peer).opaque(2, data).getvalue()


def _decode_peer_and_data(data: bytes, what: str) -> tuple[bytes, bytes]:
    r = Reader(data)
    out = (r.node_id(), r.opaque(2))
    r.done(what)
    return out


@dataclass(frozen=True, slots=True)
class JoinReq:
    """§6.4.2.1 JoinReq (overlay data empty for CHORD-RELOAD)."""

    joining_peer_id: bytes
    overlay_specific_data: bytes = b""

    def encode(self) -> bytes:
        return _encode_peer_and_data(self.joining_peer_id, self.overlay_specific_data)

    @classmethod
    def decode(cls, data: bytes) -> JoinReq:
        return cls(*_decode_peer_and_data(data, "JoinReq"))


@dataclass(frozen=True, slots=True)
class JoinAns:
    overlay_specific_data: bytes = b""

    def encode(self) -> bytes:
        return Writer().opaque(2, self.overlay_specific_data).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> JoinAns:
        r = Reader(data)
        v = cls(r.opaque(2))
        r.done("JoinAns")
        return v


@dataclass(frozen=True, slots=True)
class ChordLeaveData:
    """§10.9 ChordLeaveData: from_succ carries successors, from_pred predecessors."""

    type: int
    node_ids: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        if self.type not in (LEAVE_FROM_SUCC, LEAVE_FROM_PRED):
            raise ReloadEncodeError(f"unknown ChordLeaveType {self.type}")
        return Writer().u8(self.type).node_id_list(2, self.node_ids).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ChordLeaveData:
        r = Reader(data)
        t = r.u8()
        if t not in (LEAVE_FROM_SUCC, LEAVE_FROM_PRED):
            raise ReloadDecodeError(f"unknown ChordLeaveType {t}")
        v = cls(t, r.node_id_list(2))
        r.done("ChordLeaveData")
        return v


@dataclass(frozen=True, slots=True)
class LeaveReq:
    """§6.4.2.2 LeaveReq; for CHORD-RELOAD the overlay data is a ChordLeaveData (§10.9)."""

    leaving_peer_id: bytes
    overlay_specific_data: bytes = b""

    @classmethod
    def chord(cls, peer: bytes, leave: ChordLeaveData) -> LeaveReq:
        return cls(peer, leave.encode())

    def leave_data(self) -> ChordLeaveData:
        return ChordLeaveData.decode(self.overlay_specific_data)

    def encode(self) -> bytes:
        return _encode_peer_and_data(self.leaving_peer_id, self.overlay_specific_data)

    @classmethod
    def decode(cls, data: bytes) -> LeaveReq:
        return cls(*_decode_peer_and_data(data, "LeaveReq"))


@dataclass(frozen=True, slots=True)
class ChordUpdate:
    """§10.7.1 ChordUpdate = UpdateReq body for CHORD-RELOAD (peer_ready / neighbors / full)."""

    uptime: int
    type: int
    predecessors: tuple[bytes, ...] = ()
    successors: tuple[bytes, ...] = ()
    fingers: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        w = Writer().u32(self.uptime).u8(self.type)
        if self.type == CHORD_PEER_READY:
            if self.predecessors or self.successors or self.fingers:
                raise ReloadEncodeError("peer_ready carries no lists")
        elif self.type == CHORD_NEIGHBORS:
            if self.fingers:
                raise ReloadEncodeError("neighbors update carries no fingers")
            w.node_id_list(2, self.predecessors).node_id_list(2, self.successors)
        elif self.type == CHORD_FULL:
            w.node_id_list(2, self.predecessors).node_id_list(2, self.successors)
            w.node_id_list(2, self.fingers)
        else:
            raise ReloadEncodeError(f"unknown ChordUpdateType {self.type}")
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ChordUpdate:
        r = Reader(data)
        uptime = r.u32()
        t = r.u8()
        if t == CHORD_PEER_READY:
            v = cls(uptime, t)
        elif t == CHORD_NEIGHBORS:
            v = cls(uptime, t, r.node_id_list(2), r.node_id_list(2))
        elif t == CHORD_FULL:
            v = cls(uptime, t, r.node_id_list(2), r.node_id_list(2), r.node_id_list(2))
        else:
            raise ReloadDecodeError(f"unknown ChordUpdateType {t}")
        r.done("ChordUpdate")
        return v


@dataclass(frozen=True, slots=True)
class RouteQueryReq:
    """§6.4.2.4 RouteQueryReq."""

    send_update: bool
    destination: Destination
    overlay_specific_data: bytes = b""

    def encode(self) -> bytes:
        w = Writer().boolean(self.send_update)
        encode_destination(w, self.destination)
        return w.opaque(2, self.overlay_specific_data).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> RouteQueryReq:
        r = Reader(data)
        v = cls(r.boolean(), decode_destination(r), r.opaque(2))
        r.done("RouteQueryReq")
        return v


@dataclass(frozen=True, slots=True)
class ChordRouteQueryAns:
    """§10.8 ChordRouteQueryAns: the next hop's Node-ID."""

    next_peer: bytes

    def encode(self) -> bytes:
        return Writer().node_id(self.next_peer).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ChordRouteQueryAns:
        r = Reader(data)
        v = cls(r.node_id())
        r.done("ChordRouteQueryAns")
        return v
