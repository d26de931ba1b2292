"""Whole RELOAD messages: forwarding header ‖ message contents ‖ security block (RFC 6940 §6.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vipr.reload.wire.codec import Reader, ReloadDecodeError, ReloadEncodeError, Writer
from vipr.reload.wire.forwarding import ForwardingHeader

# SignerIdentityType (§6.3.4)
IDENTITY_CERT_HASH = 1
IDENTITY_CERT_HASH_NODE_ID = 2
IDENTITY_NONE = 3

# TLS HashAlgorithm / SignatureAlgorithm code points (RFC 5246 §7.4.1.4.1)
HASH_NONE = 0
HASH_SHA1 = 2
HASH_SHA256 = 4
SIG_ANONYMOUS = 0
SIG_RSA = 1

CERT_X509 = 0  # RFC 6091 CertificateType


@dataclass(frozen=True, slots=True)
class MessageExtension:
    """§6.3.3 MessageExtension: type u16, critical Boolean, opaque<0..2^32-1>."""

    type: int
    critical: bool = False
    contents: bytes = b""


@dataclass(frozen=True, slots=True)
class MessageContents:
    """§6.3.3: message_code u16, message_body opaque<0..2^32-1>, extensions<0..2^32-1>."""

    code: int
    body: bytes = b""
    extensions: tuple[MessageExtension, ...] = ()

    def encode(self) -> bytes:
        w = Writer()
        w.u16(self.code).opaque(4, self.body)
        ew = Writer()
        for e in self.extensions:
            ew.u16(e.type).boolean(e.critical).opaque(4, e.contents)
        w.opaque(4, ew.getvalue())
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> MessageContents:
        code = r.u16()
        body = r.opaque(4)
        er = r.sub(4)
        exts: list[MessageExtension] = []
        while er.remaining():
            t = er.u16()
            crit = er.boolean()
            exts.append(MessageExtension(t, crit, er.opaque(4)))
        return cls(code, body, tuple(exts))

    @property
    def is_request(self) -> bool:
        return self.code != 0xFFFF and self.code % 2 == 1

    @property
    def is_error(self) -> bool:
        return self.code == 0xFFFF


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    """§6.3.4 SignerIdentity. `none` has hash_alg 0 and an empty hash."""

    identity_type: int
    hash_alg: int = HASH_SHA256
    hash_value: bytes = b""

    def encode(self) -> bytes:
        w = Writer()
        if self.identity_type == IDENTITY_NONE:
            w.u8(IDENTITY_NONE).u16(0)
        elif self.identity_type in (IDENTITY_CERT_HASH, IDENTITY_CERT_HASH_NODE_ID):
            inner = Writer().u8(self.hash_alg).opaque(1, self.hash_value).getvalue()
            w.u8(self.identity_type).opaque(2, inner)
        else:
            raise ReloadEncodeError(f"unknown SignerIdentityType {self.identity_type}")
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> SignerIdentity:
        t = r.u8()
        inner = r.sub(2)
        if t == IDENTITY_NONE:
            inner.done("SignerIdentity none")
            return cls(IDENTITY_NONE, HASH_NONE, b"")
        if t in (IDENTITY_CERT_HASH, IDENTITY_CERT_HASH_NODE_ID):
            alg = inner.u8()
            h = inner.opaque(1)
            inner.done("SignerIdentity")
            return cls(t, alg, h)
        raise ReloadDecodeError(f"unknown SignerIdentityType {t}")

    @classmethod
    def none(cls) -> SignerIdentity:
        return cls(IDENTITY_NONE, HASH_NONE, b"")


@dataclass(frozen=True, slots=True)
class Signature:
    """§6.3.4 Signature: algorithm {hash, sig}, SignerIdentity, signature_value<0..2^16-1>."""

    hash_alg: int
    sig_alg: int
    identity: SignerIdentity
    value: bytes = b""

    def encode_into(self, w: Writer) -> None:
        w.u8(self.hash_alg).u8(self.sig_alg).raw(self.identity.encode()).opaque(2, self.value)

    def encode(self) -> bytes:
        w = Writer()
        self.encode_into(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Signature:
        h = r.u8()
        s = r.u8()
        ident = SignerIdentity.decode(r)
        return cls(h, s, ident, r.opaque(2))

    @classmethod
    def empty(cls) -> Signature:
        """The synthesized `{0,0}` / identity none signature (§7.4.2.1 unknown entries)."""
        return cls(HASH_NONE, SIG_ANONYMOUS, SignerIdentity.none(), b"")


@dataclass(frozen=True, slots=True)
class GenericCertificate:
    """§6.3.4: CertificateType u8 (X.509 = 0), DER certificate opaque<0..2^16-1>."""

    type: int
    certificate: bytes


@dataclass(frozen=True, slots=True)
class SecurityBlock:
    """§6.3.4: certificates GenericCertificate<0..2^16-1>, Signature."""

    certificates: tuple[GenericCertificate, ...]
    signature: Signature

    def encode(self) -> bytes:
        cw = Writer()
        for c in self.certificates:
            cw.u8(c.type).opaque(2, c.certificate)
        w = Writer()
        w.opaque(2, cw.getvalue())
        self.signature.encode_into(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> SecurityBlock:
        cr = r.sub(2)
        certs: list[GenericCertificate] = []
        while cr.remaining():
            t = cr.u8()
            certs.append(GenericCertificate(t, cr.opaque(2)))
        return cls(tuple(certs), Signature.decode(r))


@dataclass(frozen=True, slots=True)
class Message:
    """A complete (unfragmented) RELOAD message."""

    header: ForwardingHeader
    contents: MessageContents
    security: SecurityBlock
    # Exact wire bytes of the MessageContents as received (signature input, §7.1).
    raw_contents: bytes = field(default=b"", compare=False, repr=False)

    def encode(self) -> bytes:
        return encode_message(self.header, self.contents_bytes(), self.security.encode())

    def contents_bytes(self) -> bytes:
        return self.raw_contents or self.contents.encode()

    @property
    def code(self) -> int:
        return self.contents.code

    @property
    def transaction_id(self) -> int:
        return self.header.transaction_id


def encode_message(header: ForwardingHeader, contents: bytes, security: bytes) -> bytes:
    """Assemble header ‖ contents ‖ security, filling in the header's length field."""
    hdr = bytearray(header.encode(0))
    total = len(hdr) + len(contents) + len(security)
    if total > 0xFFFFFFFF:
        raise ReloadEncodeError("message too long")
    hdr[16:20] = total.to_bytes(4, "big")
    return bytes(hdr) + contents + security


def decode_header(data: bytes) -> ForwardingHeader:
    """Decode only the forwarding header (what an intermediate peer needs, §6.1)."""
    r = Reader(bytes(data))
    return ForwardingHeader.decode(r)


def decode_message(data: bytes) -> Message:
    """Decode one complete message; raises `ReloadDecodeError` on any violation."""
    buf = bytes(data)
    r = Reader(buf)
    header = ForwardingHeader.decode(r)
    if header.length != len(buf):
        raise ReloadDecodeError(f"length field {header.length} != message size {len(buf)}")
    if header.fragment != 0xC0000000:
        # §6.7: over TLS/TCP we never fragment; reassembly is not implemented.
        raise ReloadDecodeError("fragmented messages are not supported")
    start = r.pos
    contents = MessageContents.decode(r)
    raw_contents = buf[start : r.pos]
    security = SecurityBlock.decode(r)
    r.done("message")
    return Message(header, contents, security, raw_contents)
