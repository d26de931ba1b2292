"""PVP application messages after the TLS-SRP handshake (DESIGN §5). Pure code, no I/O.

Each message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding
one object. Three types, checked strictly (exact key set, types, sizes):

    client → {"type": "validate", "domain": "<caller's SIP domain>", "vservice": "<16 hex>"}
    server → {"type": "valinfo", "number": "+…", "routes": ["sip:…;transport=tls"],
              "ticket": "…", "ticket_expires": <unix s>}
           | {"type": "error", "code": <int>, "reason": "…"}
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_MESSAGE",
    "ErrorMsg",
    "Framer",
    "Message",
    "MessageError",
    "Validate",
    "ValInfo",
    "decode_message",
    "encode_message",
]

MAX_MESSAGE = 16 * 1024
MAX_ROUTES = 8
MAX_ROUTE_LEN = 512
MAX_TICKET_LEN = 1024
MAX_REASON_LEN = 256
_LEN = struct.Struct("!I")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_VSERVICE = re.compile(r"[0-9a-f]{16}")
_NUMBER = re.compile(r"\+[1-9][0-9]{1,14}")
_TICKET = re.compile(r"[A-Za-z0-9_-]+")


class MessageError(ValueError):
    """Bytes that are not a valid PVP message; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Validate:
    domain: str
    vservice: str


@dataclass(frozen=True, slots=True)
class ValInfo:
    number: str
    routes: tuple[str, ...]
    ticket: str
    ticket_expires: int


@dataclass(frozen=True, slots=True)
class ErrorMsg:
    code: int
    reason: str


Message = Validate | ValInfo | ErrorMsg


def _to_obj(msg: Message) -> dict[str, Any]:
    if isinstance(msg, Validate):
        return {"type": "validate", "domain": msg.domain, "vservice": msg.vservice}
    if isinstance(msg, ValInfo):
        return {
            "type": "valinfo",
            "number": msg.number,
            "routes": list(msg.routes),
            "ticket": msg.ticket,
            "ticket_expires": msg.ticket_expires,
        }
    return {"type": "error", "code": msg.code, "reason": msg.reason}


def encode_message(msg: Message) -> bytes:
    """Length prefix + JSON. Checks the message the same way the decoder would."""
    body = json.dumps(_to_obj(msg), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    _check(_to_obj(msg))  # never emit what our own decoder refuses
    if len(body) > MAX_MESSAGE:
        raise MessageError("too-large", f"{len(body)} bytes")
    return _LEN.pack(len(body)) + body


def _keys(obj: dict[str, Any], want: set[str]) -> None:
    if set(obj) != want:
        extra, missing = sorted(set(obj) - want), sorted(want - set(obj))
        raise MessageError("bad-keys", f"unexpected {extra}, missing {missing}")


def _str(obj: dict[str, Any], key: str, pattern: re.Pattern[str] | None, limit: int) -> str:
    v = obj[key]
    if not isinstance(v, str) or not 0 < len(v) <= limit:
        raise MessageError("bad-field", f"{key} must be a string of 1..{limit} characters")
    if pattern is not None and not pattern.fullmatch(v):
        raise MessageError("bad-field", f"{key} {v[:40]!r} has the wrong form")
    return v


def _int(obj: dict[str, Any], key: str, low: int, high: int) -> int:
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise MessageError("bad-field", f"{key} must be an integer in {low}..{high}")
    return v


def _check(obj: dict[str, Any]) -> Message:
    t = obj.get("type")
    if t == "validate":
        _keys(obj, {"type", "domain", "vservice"})
        return Validate(_str(obj, "domain", _DOMAIN, 253), _str(obj, "vservice", _VSERVICE, 16))
    if t == "valinfo":
        _keys(obj, {"type", "number", "routes", "ticket", "ticket_expires"})
        routes = obj["routes"]
        if not isinstance(routes, list) or not 1 <= len(routes) <= MAX_ROUTES:
            raise MessageError("bad-field", f"routes must be a list of 1..{MAX_ROUTES} URIs")
        for r in routes:
            if (not isinstance(r, str) or not 0 < len(r) <= MAX_ROUTE_LEN
                    or not r.startswith(("sip:", "sips:")) or any(c.isspace() for c in r)):
                raise MessageError("bad-field", "each route must be a sip: or sips: URI")
        return ValInfo(
            _str(obj, "number", _NUMBER, 16),
            tuple(routes),
            _str(obj, "ticket", _TICKET, MAX_TICKET_LEN),
            _int(obj, "ticket_expires", 0, 2**63 - 1),
        )
    if t == "error":
        _keys(obj, {"type", "code", "reason"})
        reason = obj["reason"]
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LEN:
            raise MessageError("bad-field", f"reason must be a string of ≤{MAX_REASON_LEN}")
        return ErrorMsg(_int(obj, "code", 100, 699), reason)
    raise MessageError("bad-type", repr(t)[:40])


def decode_message(body: bytes) -> Message:
    """One message body (without the length prefix) → Validate | ValInfo | ErrorMsg."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MessageError("not-json", str(e)[:80]) from None
    if not isinstance(obj, dict):
        raise MessageError("not-object")
    return _check(obj)


class Framer:
    """Splits a byte stream into PVP messages. `feed` returns the complete ones; a length over
    `MAX_MESSAGE` or an undecodable body raises MessageError (the connection is then unusable)."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf, 0)
            if n > self.limit:
                raise MessageError("too-large", f"length {n} exceeds {self.limit}")
            if len(self._buf) < _LEN.size + n:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + n])
            del self._buf[: _LEN.size + n]
            out.append(decode_message(body))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)
