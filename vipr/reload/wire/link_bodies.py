"""Bodies of the link-management methods: Attach, AppAttach, Ping, ConfigUpdate (RFC 6940 §6.5)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vipr.reload.wire.codec import Reader, ReloadDecodeError, ReloadEncodeError, Writer

# OverlayLinkType (§6.5.1.1) and CandType (§6.5.1.1)
LINK_DTLS_UDP_SR = 1
LINK_DTLS_UDP_SR_NO_ICE = 3
LINK_TLS_TCP_FH_NO_ICE = 4
CAND_HOST = 1
CAND_SRFLX = 2
CAND_PRFLX = 3
CAND_RELAY = 4

# ConfigUpdateType (§6.5.4)
CONFIG_UPDATE_CONFIG = 1
CONFIG_UPDATE_KIND = 2

PVP_APPLICATION_ID = 61441  # DESIGN §4: private range (§14.5)


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
        r.done("AttachReqAns")
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
        r.done("AppAttachReqAns")
        return cls(uf, pw, app, role, cands)


@dataclass(frozen=True, slots=True)
class PingReq:
    """§6.5.3 PingReq: opaque padding<0..2^16-1>."""

    padding: bytes = b""

    def encode(self) -> bytes:
        return Writer().opaque(2, self.padding).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PingReq:
        r = Reader(data)
        v = cls(r.opaque(2))
        r.done("PingReq")
        return v


@dataclass(frozen=True, slots=True)
class PingAns:
    """§6.5.3 PingAns: response_id u64 (random), time u64 (ms since 1970)."""

    response_id: int
    time: int

    def encode(self) -> bytes:
        return Writer().u64(self.response_id).u64(self.time).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PingAns:
        r = Reader(data)
        v = cls(r.u64(), r.u64())
        r.done("PingAns")
        return v


@dataclass(frozen=True, slots=True)
class ConfigUpdateReq:
    """§6.5.4: type u8, length u32, config_data opaque<0..2^24-1> | KindDescription<0..2^24-1>."""

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
        r.done("ConfigUpdateReq")
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
