"""Message codes, error codes and the bodies of every RFC 6940 method (§6.4, §6.5, §10, §14.8-9).

Each body class has `encode() -> bytes` and `decode(data: bytes) -> Self`; `decode_body(code,
body)` picks the class by message code (storage bodies live in `storage_codec`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Protocol

from vipr.reload.codec import Reader, ReloadDecodeError, ReloadEncodeError, Writer
from vipr.reload.forwarding import Destination, decode_destination, encode_destination


class MessageCode(IntEnum):
    """§14.8 message codes: requests are odd, answers request+1, 0xFFFF error."""

    PROBE_REQ = 0x01
    PROBE_ANS = 0x02
    ATTACH_REQ = 0x03
    ATTACH_ANS = 0x04
    STORE_REQ = 0x07
    STORE_ANS = 0x08
    FETCH_REQ = 0x09
    FETCH_ANS = 0x0A
    FIND_REQ = 0x0D
    FIND_ANS = 0x0E
    JOIN_REQ = 0x0F
    JOIN_ANS = 0x10
    LEAVE_REQ = 0x11
    LEAVE_ANS = 0x12
    UPDATE_REQ = 0x13
    UPDATE_ANS = 0x14
    ROUTE_QUERY_REQ = 0x15
    ROUTE_QUERY_ANS = 0x16
    PING_REQ = 0x17
    PING_ANS = 0x18
    STAT_REQ = 0x19
    STAT_ANS = 0x1A
    APP_ATTACH_REQ = 0x1D
    APP_ATTACH_ANS = 0x1E
    CONFIG_UPDATE_REQ = 0x21
    CONFIG_UPDATE_ANS = 0x22
    ERROR = 0xFFFF


class ErrorCode(IntEnum):
    """§14.9 error codes."""

    FORBIDDEN = 0x02
    NOT_FOUND = 0x03
    REQUEST_TIMEOUT = 0x04
    GENERATION_COUNTER_TOO_LOW = 0x05
    INCOMPATIBLE_WITH_OVERLAY = 0x06
    UNSUPPORTED_FORWARDING_OPTION = 0x07
    DATA_TOO_LARGE = 0x08
    DATA_TOO_OLD = 0x09
    TTL_EXCEEDED = 0x0A
    MESSAGE_TOO_LARGE = 0x0B
    UNKNOWN_KIND = 0x0C
    UNKNOWN_EXTENSION = 0x0D
    RESPONSE_TOO_LARGE = 0x0E
    CONFIG_TOO_OLD = 0x0F
    CONFIG_TOO_NEW = 0x10
    IN_PROGRESS = 0x11
    EXP_A = 0x12
    EXP_B = 0x13
    INVALID_MESSAGE = 0x14


# OverlayLinkType (§6.5.1.1) and CandType (§6.5.1.1)
LINK_DTLS_UDP_SR = 1
LINK_DTLS_UDP_SR_NO_ICE = 3
LINK_TLS_TCP_FH_NO_ICE = 4
CAND_HOST = 1
CAND_SRFLX = 2
CAND_PRFLX = 3
CAND_RELAY = 4

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

# ConfigUpdateType (§6.5.3)
CONFIG_UPDATE_CONFIG = 1
CONFIG_UPDATE_KIND = 2

PVP_APPLICATION_ID = 61441  # DESIGN §4: private range (§14.5)


class Body(Protocol):
    def encode(self) -> bytes: ...


def _finish(r: Reader, what: str) -> None:
    r.done(what)


@dataclass(frozen=True, slots=True)
class ProbeReq:
    requested_info: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return Writer().opaque(1, bytes(self.requested_info)).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ProbeReq:
        r = Reader(data)
        info = tuple(r.opaque(1))
        _finish(r, "ProbeReq")
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
        _finish(r, "ProbeAns")
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


@dataclass(frozen=True, slots=True)
class IpAddressPort:
    """§6.3.1.1: type u8 (1 IPv4, 2 IPv6), length u8, address, port u16."""

    host: str
    port: int

    def encode_into(self, w: Writer) -> None:
        try:
            addr = ipaddress.ip_address(self.host)
        except ValueError as e:
            raise ReloadEncodeError(f"not an IP address: {self.host!r}") from e
        if addr.version == 4:
            w.u8(1).u8(6).raw(addr.packed).u16(self.port)
        else:
            w.u8(2).u8(18).raw(addr.packed).u16(self.port)

    @classmethod
    def decode(cls, r: Reader) -> IpAddressPort:
        t = r.u8()
        sr = r.sub(1)
        if t == 1:
            host = str(ipaddress.IPv4Address(sr.fixed(4)))
        elif t == 2:
            host = str(ipaddress.IPv6Address(sr.fixed(16)))
        else:
            raise ReloadDecodeError(f"unknown AddressType {t}")
        port = sr.u16()
        sr.done("IpAddressPort")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class IceExtension:
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """§6.5.1.1 IceCandidate; No-ICE host candidates use overlay_link 4, type host."""

    addr_port: IpAddressPort
    overlay_link: int = LINK_TLS_TCP_FH_NO_ICE
    foundation: bytes = b"1"
    priority: int = 0x7EFFFFFF
    type: int = CAND_HOST
    rel_addr_port: IpAddressPort | None = None
    extensions: tuple[IceExtension, ...] = ()

    def encode_into(self, w: Writer) -> None:
        self.addr_port.encode_into(w)
        w.u8(self.overlay_link).opaque(1, self.foundation).u32(self.priority).u8(self.type)
        if self.type == CAND_HOST:
            if self.rel_addr_port is not None:
                raise ReloadEncodeError("host candidates carry no related address")
        elif self.type in (CAND_SRFLX, CAND_PRFLX, CAND_RELAY):
            if self.rel_addr_port is None:
                raise ReloadEncodeError("srflx/prflx/relay candidates need rel_addr_port")
            self.rel_addr_port.encode_into(w)
        else:
            raise ReloadEncodeError(f"unknown CandType {self.type}")
        ew = Writer()
        for e in self.extensions:
            ew.opaque(2, e.name).opaque(2, e.value)
        w.opaque(2, ew.getvalue())

    @classmethod
    def decode(cls, r: Reader) -> IceCandidate:
        ap = IpAddressPort.decode(r)
        link = r.u8()
        foundation = r.opaque(1)
        prio = r.u32()
        ctype = r.u8()
        rel = None
        if ctype in (CAND_SRFLX, CAND_PRFLX, CAND_RELAY):
            rel = IpAddressPort.decode(r)
        elif ctype != CAND_HOST:
            raise ReloadDecodeError(f"unknown CandType {ctype}")
        er = r.sub(2)
        exts = []
        while er.remaining():
            exts.append(IceExtension(er.opaque(2), er.opaque(2)))
        return cls(ap, link, foundation, prio, ctype, rel, tuple(exts))


def _encode_candidates(w: Writer, cands: tuple[IceCandidate, ...]) -> None:
    cw = Writer()
    for c in cands:
        c.encode_into(cw)
    w.opaque(2, cw.getvalue())


def _decode_candidates(r: Reader) -> tuple[IceCandidate, ...]:
    cr = r.sub(2)
    out = []
    while cr.remaining():
        out.append(IceCandidate.decode(cr))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class AttachReqAns:
    """§6.5.1.1 AttachReqAns (used for both AttachReq and AttachAns)."""

    ufrag: bytes
    password: bytes
    role: bytes
    candidates: tuple[IceCandidate, ...]
    send_update: bool = False

    def encode(self) -> bytes:
        w = Writer().opaque(1, self.ufrag).opaque(1, self.password).opaque(1, self.role)
        _encode_candidates(w, self.candidates)
        return w.boolean(self.send_update).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> AttachReqAns:
        r = Reader(data)
        uf, pw, role = r.opaque(1), r.opaque(1), r.opaque(1)
        cands = _decode_candidates(r)
        su = r.boolean()
        _finish(r, "AttachReqAns")
        return cls(uf, pw, role, cands, su)


@dataclass(frozen=True, slots=True)
class AppAttachReqAns:
    """§6.5.2 AppAttachReq / AppAttachAns (same layout, no send_update)."""

    ufrag: bytes
    password: bytes
    application: int
    role: bytes
    candidates: tuple[IceCandidate, ...]

    def encode(self) -> bytes:
        w = Writer().opaque(1, self.ufrag).opaque(1, self.password).u16(self.application)
        w.opaque(1, self.role)
        _encode_candidates(w, self.candidates)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> AppAttachReqAns:
        r = Reader(data)
        uf, pw, app, role = r.opaque(1), r.opaque(1), r.u16(), r.opaque(1)
        cands = _decode_candidates(r)
        _finish(r, "AppAttachReqAns")
        return cls(uf, pw, app, role, cands)


@dataclass(frozen=True, slots=True)
class JoinReq:
    """§6.4.2.1 JoinReq (overlay data empty for CHORD-RELOAD)."""

    joining_peer_id: bytes
    overlay_specific_data: bytes = b""

    def encode(self) -> bytes:
        w = Writer().node_id(self.joining_peer_id)
        return w.opaque(2, self.overlay_specific_data).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> JoinReq:
        r = Reader(data)
        v = cls(r.node_id(), r.opaque(2))
        _finish(r, "JoinReq")
        return v


@dataclass(frozen=True, slots=True)
class JoinAns:
    overlay_specific_data: bytes = b""

    def encode(self) -> bytes:
        return Writer().opaque(2, self.overlay_specific_data).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> JoinAns:
        r = Reader(data)
        v = cls(r.opaque(2))
        _finish(r, "JoinAns")
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
        _finish(r, "ChordLeaveData")
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
        w = Writer().node_id(self.leaving_peer_id)
        return w.opaque(2, self.overlay_specific_data).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> LeaveReq:
        r = Reader(data)
        v = cls(r.node_id(), r.opaque(2))
        _finish(r, "LeaveReq")
        return v


@dataclass(frozen=True, slots=True)
class EmptyBody:
    """Answers without a body: LeaveAns, UpdateAns, ConfigUpdateAns."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> EmptyBody:
        if data:
            raise ReloadDecodeError("expected an empty body")
        return cls()


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
        _finish(r, "ChordUpdate")
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
        _finish(r, "RouteQueryReq")
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
        _finish(r, "ChordRouteQueryAns")
        return v


@dataclass(frozen=True, slots=True)
class PingReq:
    """§6.4.2.5 PingReq: opaque padding<0..2^16-1>."""

    padding: bytes = b""

    def encode(self) -> bytes:
        return Writer().opaque(2, self.padding).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PingReq:
        r = Reader(data)
        v = cls(r.opaque(2))
        _finish(r, "PingReq")
        return v


@dataclass(frozen=True, slots=True)
class PingAns:
    """§6.4.2.5 PingAns: response_id u64 (random), time u64 (ms since 1970)."""

    response_id: int
    time: int

    def encode(self) -> bytes:
        return Writer().u64(self.response_id).u64(self.time).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PingAns:
        r = Reader(data)
        v = cls(r.u64(), r.u64())
        _finish(r, "PingAns")
        return v


@dataclass(frozen=True, slots=True)
class ConfigUpdateReq:
    """§6.5.3: type u8, length u32, config_data opaque<0..2^24-1> | KindDescription<0..2^24-1>."""

    type: int
    config_data: bytes = b""
    kinds: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        inner = Writer()
        if self.type == CONFIG_UPDATE_CONFIG:
            if self.kinds:
                raise ReloadEncodeError("config update carries no kinds")
            inner.opaque(3, self.config_data)
        elif self.type == CONFIG_UPDATE_KIND:
            if self.config_data:
                raise ReloadEncodeError("kind update carries no config_data")
            kw = Writer()
            for k in self.kinds:
                kw.opaque(2, k)
            inner.opaque(3, kw.getvalue())
        else:
            raise ReloadEncodeError(f"unknown ConfigUpdateType {self.type}")
        return Writer().u8(self.type).opaque(4, inner.getvalue()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ConfigUpdateReq:
        r = Reader(data)
        t = r.u8()
        inner = r.sub(4)
        _finish(r, "ConfigUpdateReq")
        if t == CONFIG_UPDATE_CONFIG:
            v = cls(t, inner.opaque(3))
        elif t == CONFIG_UPDATE_KIND:
            kr = inner.sub(3)
            kinds = []
            while kr.remaining():
                kinds.append(kr.opaque(2))
            v = cls(t, b"", tuple(kinds))
        else:
            raise ReloadDecodeError(f"unknown ConfigUpdateType {t}")
        inner.done("ConfigUpdateReq")
        return v


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """§6.3.3.1 ErrorResponse: error_code u16, error_info opaque<0..2^16-1>."""

    error_code: int
    error_info: bytes = b""

    def encode(self) -> bytes:
        return Writer().u16(self.error_code).opaque(2, self.error_info).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ErrorResponse:
        r = Reader(data)
        v = cls(r.u16(), r.opaque(2))
        _finish(r, "ErrorResponse")
        return v

    @classmethod
    def text(cls, code: int, reason: str) -> ErrorResponse:
        """Error with a UTF-8 reason phrase (the default error_info form)."""
        return cls(code, reason.encode("utf-8")[:0xFFFF])

    @classmethod
    def unknown_kinds(cls, kinds: tuple[int, ...]) -> ErrorResponse:
        """§6.3.3.1: Error_Unknown_Kind carries `KindId unknown_kinds<0..2^8-1>` (binary)."""
        kw = Writer()
        for k in kinds:
            kw.u32(k)
        return cls(ErrorCode.UNKNOWN_KIND, Writer().opaque(1, kw.getvalue()).getvalue())

    def decode_unknown_kinds(self) -> tuple[int, ...]:
        r = Reader(self.error_info)
        kr = r.sub(1)
        r.done("unknown_kinds")
        out = []
        while kr.remaining():
            out.append(kr.u32())
        return tuple(out)

    def info_text(self) -> str:
        return self.error_info.decode("utf-8", "replace")


def error_info_json(err: ErrorResponse) -> Any:
    """Best-effort decoded view of error_info (binary for the codes the RFC defines)."""
    if err.error_code == ErrorCode.UNKNOWN_KIND:
        try:
            return {"unknown_kinds": list(err.decode_unknown_kinds())}
        except ReloadDecodeError:
            return err.error_info.hex()
    if err.error_code == ErrorCode.GENERATION_COUNTER_TOO_LOW:
        from vipr.reload.storage_codec import StoreAns

        try:
            return StoreAns.decode(err.error_info)
        except ReloadDecodeError:
            return err.error_info.hex()
    return err.info_text()


_SIMPLE_BODIES: dict[int, Any] = {
    MessageCode.PROBE_REQ: ProbeReq,
    MessageCode.PROBE_ANS: ProbeAns,
    MessageCode.ATTACH_REQ: AttachReqAns,
    MessageCode.ATTACH_ANS: AttachReqAns,
    MessageCode.JOIN_REQ: JoinReq,
    MessageCode.JOIN_ANS: JoinAns,
    MessageCode.LEAVE_REQ: LeaveReq,
    MessageCode.LEAVE_ANS: EmptyBody,
    MessageCode.UPDATE_REQ: ChordUpdate,
    MessageCode.UPDATE_ANS: EmptyBody,
    MessageCode.ROUTE_QUERY_REQ: RouteQueryReq,
    MessageCode.ROUTE_QUERY_ANS: ChordRouteQueryAns,
    MessageCode.PING_REQ: PingReq,
    MessageCode.PING_ANS: PingAns,
    MessageCode.APP_ATTACH_REQ: AppAttachReqAns,
    MessageCode.APP_ATTACH_ANS: AppAttachReqAns,
    MessageCode.CONFIG_UPDATE_REQ: ConfigUpdateReq,
    MessageCode.CONFIG_UPDATE_ANS: EmptyBody,
    MessageCode.ERROR: ErrorResponse,
}


def decode_body(code: int, body: bytes, models: Any = None) -> Any:
    """Decode a message body by its code. `models` maps Kind-ID → DataModel for storage bodies."""
    from vipr.reload import storage_codec as sc

    if code in sc.STORAGE_BODIES:
        return sc.STORAGE_BODIES[code].decode(body, models)
    cls = _SIMPLE_BODIES.get(code)
    if cls is None:
        raise ReloadDecodeError(f"unknown message code 0x{code:04x}")
    return cls.decode(body)


def body_code(body: Any, *, answer: bool = False) -> int:
    """The message code for a body object (for ReqAns types pass `answer`)."""
    from vipr.reload import storage_codec as sc

    body = getattr(body, "body", body) if type(body).__name__ == "WithCertificates" else body

    if isinstance(body, ProbeReq):
        return MessageCode.PROBE_REQ
    if isinstance(body, ProbeAns):
        return MessageCode.PROBE_ANS
    if isinstance(body, AttachReqAns):
        return MessageCode.ATTACH_ANS if answer else MessageCode.ATTACH_REQ
    if isinstance(body, AppAttachReqAns):
        return MessageCode.APP_ATTACH_ANS if answer else MessageCode.APP_ATTACH_REQ
    table: list[tuple[type, int]] = [
        (JoinReq, MessageCode.JOIN_REQ),
        (JoinAns, MessageCode.JOIN_ANS),
        (LeaveReq, MessageCode.LEAVE_REQ),
        (ChordUpdate, MessageCode.UPDATE_REQ),
        (RouteQueryReq, MessageCode.ROUTE_QUERY_REQ),
        (ChordRouteQueryAns, MessageCode.ROUTE_QUERY_ANS),
        (PingReq, MessageCode.PING_REQ),
        (PingAns, MessageCode.PING_ANS),
        (ConfigUpdateReq, MessageCode.CONFIG_UPDATE_REQ),
        (ErrorResponse, MessageCode.ERROR),
        (sc.StoreReq, MessageCode.STORE_REQ),
        (sc.StoreAns, MessageCode.STORE_ANS),
        (sc.FetchReq, MessageCode.FETCH_REQ),
        (sc.FetchAns, MessageCode.FETCH_ANS),
        (sc.StatReq, MessageCode.STAT_REQ),
        (sc.StatAns, MessageCode.STAT_ANS),
        (sc.FindReq, MessageCode.FIND_REQ),
        (sc.FindAns, MessageCode.FIND_ANS),
    ]
    for cls, code in table:
        if isinstance(body, cls):
            return code
    raise ReloadEncodeError(f"no message code for {type(body).__name__} (EmptyBody needs one)")
