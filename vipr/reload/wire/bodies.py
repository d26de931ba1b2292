"""Message contents by message code (RFC 6940 §6.3.3, §14.8): the code ↔ body mapping.

Each body class has `encode() -> bytes` and `decode(data: bytes) -> Self`; `decode_body(code,
body)` picks the class by message code. The bodies live in topology_bodies (§6.4.2),
link_bodies (§6.5), error_response (§6.3.3.1) and storage_codec (§7); this module re-exports
all but the storage ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vipr.reload.wire.codec import ReloadDecodeError, ReloadEncodeError
from vipr.reload.wire.codes import MessageCode
from vipr.reload.wire.error_bodies import ErrorCode, ErrorResponse
from vipr.reload.wire.link_bodies import (
    CAND_HOST,
    CAND_PRFLX,
    CAND_RELAY,
    CAND_SRFLX,
    CONFIG_UPDATE_CONFIG,
    CONFIG_UPDATE_KIND,
    LINK_DTLS_UDP_SR,
    LINK_DTLS_UDP_SR_NO_ICE,
    LINK_TLS_TCP_FH_NO_ICE,
    PVP_APPLICATION_ID,
    AppAttachReqAns,
    AttachReqAns,
    ConfigUpdateReq,
    IceCandidate,
    IceExtension,
    IpAddressPort,
    PingAns,
    PingReq,
)
from vipr.reload.wire.storage_bodies import (
    STORAGE_BODIES,
    DataModel,
    FetchAns,
    FetchReq,
    FindAns,
    FindReq,
    StatAns,
    StatReq,
    StoreAns,
    StoreReq,
)
from vipr.reload.wire.topology_bodies import (
    CHORD_FULL,
    CHORD_NEIGHBORS,
    CHORD_PEER_READY,
    LEAVE_FROM_PRED,
    LEAVE_FROM_SUCC,
    PROBE_NUM_RESOURCES,
    PROBE_RESPONSIBLE_SET,
    PROBE_UPTIME,
    ChordLeaveData,
    ChordRouteQueryAns,
    ChordUpdate,
    JoinAns,
    JoinReq,
    LeaveReq,
    ProbeAns,
    ProbeInformation,
    ProbeReq,
    RouteQueryReq,
)

__all__ = [
    "CAND_HOST",
    "CAND_PRFLX",
    "CAND_RELAY",
    "CAND_SRFLX",
    "CHORD_FULL",
    "CHORD_NEIGHBORS",
    "CHORD_PEER_READY",
    "CONFIG_UPDATE_CONFIG",
    "CONFIG_UPDATE_KIND",
    "LEAVE_FROM_PRED",
    "LEAVE_FROM_SUCC",
    "LINK_DTLS_UDP_SR",
    "LINK_DTLS_UDP_SR_NO_ICE",
    "LINK_TLS_TCP_FH_NO_ICE",
    "PROBE_NUM_RESOURCES",
    "PROBE_RESPONSIBLE_SET",
    "PROBE_UPTIME",
    "PVP_APPLICATION_ID",
    "AppAttachReqAns",
    "AttachReqAns",
    "Body",
    "ChordLeaveData",
    "ChordRouteQueryAns",
    "ChordUpdate",
    "ConfigUpdateReq",
    "EmptyBody",
    "ErrorCode",
    "ErrorResponse",
    "IceCandidate",
    "IceExtension",
    "IpAddressPort",
    "JoinAns",
    "JoinReq",
    "LeaveReq",
    "MessageCode",
    "PingAns",
    "PingReq",
    "ProbeAns",
    "ProbeInformation",
    "ProbeReq",
    "RouteQueryReq",
    "WithCertificates",
    "body_code",
    "decode_body",
    "error_info_json",
]


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


Body = (ProbeReq | ProbeAns | AttachReqAns | JoinReq | JoinAns | LeaveReq | ChordUpdate
        | RouteQueryReq | ChordRouteQueryAns | PingReq | PingAns | AppAttachReqAns
        | ConfigUpdateReq | EmptyBody | ErrorResponse | StoreReq | StoreAns | FetchReq
        | FetchAns | StatReq | StatAns | FindReq | FindAns)
"""Every message body this implementation decodes (RFC 6940 §6.3.3, §6.4.2, §6.5, §7)."""


@dataclass(frozen=True)
class WithCertificates:
    """A body plus extra DER certificates for the security block (§6.3.4: the certificates
    needed to verify stored-data signatures travel with Store requests and Fetch answers).
    `ReloadContext.request/answer` unwrap it; `encode()` delegates so callers may pass it on."""

    body: Body
    certificates: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        return self.body.encode()


OutgoingBody = Body | WithCertificates


_SIMPLE_BODIES: dict[int, type[Body]] = {
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



def decode_body(code: int, body: bytes,
                models: Mapping[int, DataModel] | None = None) -> Body:
    """Decode a message body by its code. `models` maps Kind-ID → DataModel for storage bodies."""
    if code in STORAGE_BODIES:
        return STORAGE_BODIES[code].decode(body, models)
    cls = _SIMPLE_BODIES.get(code)
    if cls is None:
        raise ReloadDecodeError(f"unknown message code 0x{code:04x}")
    return cls.decode(body)  # type: ignore[attr-defined,no-any-return]


def body_code(body: OutgoingBody, *, answer: bool = False) -> int:
    """The message code for a body object (for ReqAns types pass `answer`)."""
    inner = body.body if isinstance(body, WithCertificates) else body
    bodies = [*_SIMPLE_BODIES.items(), *STORAGE_BODIES.items()]
    codes = sorted(code for code, cls in bodies if isinstance(inner, cls))
    if len(codes) == 2 and codes[1] == codes[0] + 1:  # one layout for request and answer
        return codes[1] if answer else codes[0]
    if len(codes) != 1:
        raise ReloadEncodeError(f"no message code for {type(inner).__name__} (EmptyBody needs one)")
    return codes[0]


def error_info_json(err: ErrorResponse) -> dict[str, list[int]] | StoreAns | str:
    """Best-effort decoded view of error_info (binary for the codes the RFC defines)."""
    if err.error_code == ErrorCode.UNKNOWN_KIND:
        try:
            return {"unknown_kinds": list(err.decode_unknown_kinds())}
        except ReloadDecodeError:
            return err.error_info.hex()
    if err.error_code == ErrorCode.GENERATION_COUNTER_TOO_LOW:
        try:
            return StoreAns.decode(err.error_info)
        except ReloadDecodeError:
            return err.error_info.hex()
    return err.info_text()
