"""VIPR tickets: the terminating provider's proof that a caller validated a number (DESIGN §6).

Wire form (all integers big-endian), sent base64url without padding:

    version(1)=1 | epoch(1) | issued(u64 unix s) | expires(u64) | nonce(16)
    | number(u8 len + UTF-8) | domain(u8 len + UTF-8) | HMAC-SHA256(key[epoch], all previous bytes)

Pure code: keys and `now` come in as arguments; nothing here reads the store or the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

TICKET_HEADER = "VIPR-Ticket"
# DESIGN §6: the header name of Cisco's deployed VIPR (IME) is accepted on input.
LEGACY_TICKET_HEADER = "X-Cisco-ViPR-Ticket"

TICKET_VERSION = 1
NONCE_LEN = 16
MAC_LEN = 32
_FIXED = struct.Struct("!BBQQ16s")
MIN_TICKET_LEN = _FIXED.size + 1 + 1 + MAC_LEN
MAX_TICKET_LEN = _FIXED.size + 1 + 255 + 1 + 255 + MAC_LEN
# base64url of MAX_TICKET_LEN bytes, unpadded
MAX_TOKEN_CHARS = (MAX_TICKET_LEN * 4 + 2) // 3
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class TicketKeyLike(Protocol):
    """What the ticket code needs of a key (the store's `TicketKey` fits)."""

    @property
    def epoch(self) -> int: ...

    @property
    def secret(self) -> bytes: ...


class TicketError(Exception):
    """A ticket token that cannot be decoded; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Ticket:
    """A decoded ticket. `signed` is the byte string the MAC covers."""

    version: int
    epoch: int
    issued: int
    expires: int
    nonce: bytes
    number: str
    domain: str
    mac: bytes
    signed: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "epoch": self.epoch,
            "issued": self.issued,
            "expires": self.expires,
            "nonce": self.nonce.hex(),
            "number": self.number,
            "domain": self.domain,
            "mac": self.mac.hex(),
        }


@dataclass(frozen=True, slots=True)
class TicketVerdict:
    ok: bool
    reason: str
    ticket: Ticket | None = None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(token: str) -> bytes:
    if len(token) > MAX_TOKEN_CHARS:
        raise TicketError("garbage", f"token of {len(token)} characters is too long")
    if not _B64URL.fullmatch(token) or len(token) % 4 == 1:
        raise TicketError("bad-base64", "not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex screens these
        raise TicketError("bad-base64", str(exc)) from None


def _mac(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, signed, hashlib.sha256).digest()


def encode_ticket_body(
    *, epoch: int, issued: int, expires: int, nonce: bytes, number: str, domain: str
) -> bytes:
    """The bytes the MAC covers."""
    num = number.encode("utf-8")
    dom = domain.encode("utf-8")
    if not 0 <= epoch <= 255:
        raise ValueError("epoch must fit one byte")
    if len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 16 bytes")
    if not 0 < len(num) <= 255 or not 0 < len(dom) <= 255:
        raise ValueError("number and domain must be 1..255 bytes")
    return (
        _FIXED.pack(TICKET_VERSION, epoch, issued, expires, nonce)
        + bytes([len(num)])
        + num
        + bytes([len(dom)])
        + dom
    )


def mint_ticket(
    key: TicketKeyLike,
    number: str,
    domain: str,
    now: float,
    lifetime: float,
    *,
    nonce: bytes | None = None,
) -> str:
    """Mint a ticket for `number`, usable by calls from `domain` until now + lifetime."""
    issued = int(now)
    body = encode_ticket_body(
        epoch=key.epoch,
        issued=issued,
        expires=issued + int(lifetime),
        nonce=os.urandom(NONCE_LEN) if nonce is None else nonce,
        number=number,
        domain=domain.lower(),
    )
    return _b64encode(body + _mac(key.secret, body))


def decode_ticket(token: str) -> Ticket:
    """Decode without verifying. Raises `TicketError` with reason bad-base64, truncated,
    bad-version or garbage."""
    raw = _b64decode(token.strip())
    if len(raw) < _FIXED.size:
        raise TicketError("truncated", f"{len(raw)} bytes, header needs {_FIXED.size}")
    version, epoch, issued, expires, nonce = _FIXED.unpack_from(raw, 0)
    if version != TICKET_VERSION:
        raise TicketError("bad-version", f"version {version}")
    pos = _FIXED.size
    fields: list[str] = []
    for name in ("number", "domain"):
        if pos >= len(raw):
            raise TicketError("truncated", f"{name} length missing")
        n = raw[pos]
        pos += 1
        if n == 0:
            raise TicketError("garbage", f"empty {name}")
        if pos + n > len(raw):
            raise TicketError("truncated", f"{name} cut short")
        try:
            fields.append(raw[pos : pos + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise TicketError("garbage", f"{name} is not UTF-8") from None
        pos += n
    rest = len(raw) - pos
    if rest < MAC_LEN:
        raise TicketError("truncated", f"MAC has {rest} of {MAC_LEN} bytes")
    if rest > MAC_LEN:
        raise TicketError("garbage", f"{rest - MAC_LEN} trailing bytes")
    return Ticket(
        version=version,
        epoch=epoch,
        issued=issued,
        expires=expires,
        nonce=nonce,
        number=fields[0],
        domain=fields[1],
        mac=raw[pos:],
        signed=raw[:pos],
    )


class TicketVerifier:
    """Checks tickets in the order of DESIGN §6; the first failing check names the reason.

    Retired epochs stay in the key set so that their tickets verify until they expire.
    """

    def __init__(self, keys: Iterable[TicketKeyLike]) -> None:
        self._secrets: dict[int, bytes] = {k.epoch: bytes(k.secret) for k in keys}

    @property
    def epochs(self) -> frozenset[int]:
        return frozenset(self._secrets)

    def verify(
        self, token: str | None, *, number: str, peer_domain: str | None, now: float
    ) -> TicketVerdict:
        # DESIGN §6 order: present → decodes → epoch known → HMAC → not expired → number → domain
        if token is None or not token.strip():
            return TicketVerdict(False, "missing")
        try:
            ticket = decode_ticket(token)
        except TicketError as exc:
            return TicketVerdict(False, exc.reason)
        secret = self._secrets.get(ticket.epoch)
        if secret is None:
            return TicketVerdict(False, "unknown-epoch", ticket)
        if not hmac.compare_digest(_mac(secret, ticket.signed), ticket.mac):
            return TicketVerdict(False, "bad-mac", ticket)
        if now >= ticket.expires:
            return TicketVerdict(False, "expired", ticket)
        if ticket.number != number:
            return TicketVerdict(False, "number-mismatch", ticket)
        if peer_domain is None or ticket.domain != peer_domain.lower():
            return TicketVerdict(False, "domain-mismatch", ticket)
        return TicketVerdict(True, "ok", ticket)
