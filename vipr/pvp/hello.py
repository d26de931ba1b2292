"""The TLS ClientHello as the PVP server sees it before any TLS state exists (sans I/O):
the first handshake message collected over its records, and the SRP login in it (RFC 5054
§2.8.1). Profile v2 uses the same walk to tell a v1 client's raw TLS-SRP hello from the
outer TLS 1.3 hello (DESIGN §5)."""

from __future__ import annotations

__all__ = ["MAX_HELLO", "SrpError", "client_hello", "srp_identity"]

MAX_HELLO = 32 * 1024  # bytes we buffer while looking for the ClientHello
_REC_HANDSHAKE = 22
_HS_CLIENT_HELLO = 1
_EXT_SRP = 12


class SrpError(Exception):
    """A failed TLS-SRP step. `kind`: wrong-password, unknown-identity, insufficient-security,
    timeout, closed, bad-hello, tls; for the outer TLS (profile v2): outer-tls (handshake or
    certificate refused), wrong-node (a valid certificate for another Node-ID), v1-client (a
    raw TLS-SRP ClientHello without the outer TLS)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def srp_identity(hello: bytes) -> bytes:
    """The SRP extension's identity (RFC 5054 §2.8.1: `opaque srp_I<1..2^8-1>`, extension type
    12) from a complete ClientHello handshake message (RFC 5246 §7.4.1.2). SrpError otherwise.

    A direct walk over the bytes: tlslite parses the message again during the handshake, and
    its full parse costs more than this whole lookup."""
    try:
        pos = 4 + 2 + 32  # handshake header, client_version, random
        pos += 1 + hello[pos]  # session_id
        pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + hello[pos]  # compression_methods
        if pos == len(hello):
            raise SrpError("bad-hello", "no SRP extension")
        end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
        if end != len(hello):
            raise SrpError("bad-hello", "extensions length mismatch")
        pos += 2
        while pos + 4 <= end:
            etype = int.from_bytes(hello[pos : pos + 2], "big")
            elen = int.from_bytes(hello[pos + 2 : pos + 4], "big")
            body = hello[pos + 4 : pos + 4 + elen]
            if len(body) != elen:
                raise SrpError("bad-hello", "truncated extension")
            if etype == _EXT_SRP:
                if elen < 2 or body[0] != elen - 1:
                    raise SrpError("bad-hello", "malformed SRP extension")
                return bytes(body[1:])
            pos += 4 + elen
    except IndexError:
        raise SrpError("bad-hello", "truncated ClientHello") from None
    raise SrpError("bad-hello", "no SRP extension")


def client_hello(buf: bytes) -> bytes | None:
    """The first handshake message (type byte + 3-byte length + body) once complete, collected
    over as many TLS records as it spans; None while incomplete. SrpError for garbage."""
    hs = bytearray()
    pos = 0
    while pos + 5 <= len(buf):
        ctype, major = buf[pos], buf[pos + 1]
        length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
        if ctype != _REC_HANDSHAKE or major != 3 or length > 16384:
            raise SrpError("bad-hello", "not a TLS handshake record")
        if pos + 5 + length > len(buf):
            break
        hs += buf[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(hs) >= 4:
            if hs[0] != _HS_CLIENT_HELLO:
                raise SrpError("bad-hello", "first handshake message is not a ClientHello")
            n = int.from_bytes(hs[1:4], "big")
            if n > MAX_HELLO:
                raise SrpError("bad-hello", "ClientHello too large")
            if len(hs) >= 4 + n:
                return bytes(hs[: 4 + n])
    if len(buf) > MAX_HELLO + 5 * 8:
        raise SrpError("bad-hello", "ClientHello too large")
    return None
