"""SIP message parser (RFC 3261 §7, §25). Raises SipParseError and nothing else."""

from __future__ import annotations

import re

from vipr.limits import SIP_LIMITS
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import parse_cseq, split_list
from vipr.proxy.sip.message import COMPACT_FORMS, Headers, SipRequest, SipResponse
from vipr.proxy.sip.uri import TOKEN_RE

MAX_MESSAGE_SIZE = SIP_LIMITS.max_message_size
MAX_HEADERS = SIP_LIMITS.max_headers
MAX_VIAS = SIP_LIMITS.max_vias
_SCHEME_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")


# header name as written -> lookup key; filled as names are seen (bounded)
_NAME_KEYS: dict[str, str] = {}


def _name_key(name: str) -> str:
    """Validate a header name (token, RFC 3261 §7.3.1) and return its lookup key."""
    if TOKEN_RE.fullmatch(name) is None:
        raise SipParseError(f"bad header name {name[:40]!r}")
    k = name.lower()
    k = COMPACT_FORMS.get(k, k)
    if len(_NAME_KEYS) < 2048:
        _NAME_KEYS[name] = k
    return k


def parse_message(data: bytes, *, strict: bool = False, max_size: int = MAX_MESSAGE_SIZE,
                  max_headers: int = MAX_HEADERS,
                  max_vias: int = MAX_VIAS) -> SipRequest | SipResponse:
    """Parse one whole message (a UDP datagram or a framed stream message).

    Always checked: start line, header syntax (folding unfolded), Content-Length framing
    (RFC 3261 §18.3: a longer Content-Length than the data is an error, extra bytes
    are ignored; absent means the body runs to the end), CSeq number and method.
    `strict=True` adds `msg.validate()`: mandatory headers and the full grammar of the
    headers the proxy uses. Other header values are parsed only when accessed.
    Caps (DESIGN §10): over `max_size` bytes → SipParseError status 513 (RFC 3261
    §21.5.11); over `max_headers` header fields or `max_vias` Via entries → 400.
    """
    try:
        return _parse(data, strict, max_size, max_headers=max_headers, max_vias=max_vias)
    except SipParseError:
        raise
    except (ValueError, IndexError, UnicodeError, OverflowError) as exc:  # defensive
        raise SipParseError(f"malformed message ({type(exc).__name__})") from exc


def salvage_request(data: bytes) -> SipRequest | None:
    """After `parse_message` failed: the request as far as it can be read, so that a
    server can still answer it (400, 505, 513; RFC 3261 §8.2, RFC 4475 §3.1.2). Skips
    the version, CSeq and Content-Length checks; None if even that fails or it is not
    a request (responses and ACKs get no answer)."""
    try:
        msg = _parse(data, False, 1 << 20, salvage=True)
    except (SipParseError, ValueError, IndexError, UnicodeError, OverflowError):
        return None
    return msg if isinstance(msg, SipRequest) and msg.method != "ACK" else None


def _parse(data: bytes, strict: bool, max_size: int, salvage: bool = False, *,
           max_headers: int = 1 << 30, max_vias: int = 1 << 30) -> SipRequest | SipResponse:
    if len(data) > max_size:
        raise SipParseError("message too large", 513)
    if data[:1] in (b"\r", b"\n"):
        # RFC 3261 §7.5: ignore CRLFs before the start line
        data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    end = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, end if end >= 0 else len(data))
    if lf >= 0:
        head, body_start = data[:lf], lf + 2   # bare-LF message (lenient, RFC 5118 archive)
    elif end >= 0:
        head, body_start = data[:end], end + 4
    else:
        head, body_start = data.rstrip(b"\r\n"), len(data)   # no empty line: no body
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SipParseError("bare CR in header section")
    lines = text.split("\n")
    # DESIGN §10: more lines than fields allowed (folded lines count too): refuse before
    # building anything per line
    if len(lines) - 1 > max_headers:
        nfields = sum(1 for ln in lines[1:] if ln[:1] not in (" ", "\t"))
        if nfields > max_headers:
            raise SipParseError(f"too many header fields (over {max_headers})")

    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    known = _NAME_KEYS
    folded: dict[int, list[str]] = {}   # joined once at the end: linear in the input
    for line in lines[1:]:
        c = line[:1]
        if c == " " or c == "\t":
            # RFC 3261 §7.3.1: folded continuation, replaced by a single SP
            if not values:
                raise SipParseError("continuation line before the first header")
            cont = line.strip(" \t")
            if cont:
                folded.setdefault(len(values) - 1, []).append(cont)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without colon: {line[:40]!r}")
        k = known.get(name)
        if k is None:
            name = name.rstrip(" \t")
            k = _name_key(name)
        names.append(name)
        keys.append(k)
        values.append(value.strip(" \t"))
    for i, parts in folded.items():
        values[i] = " ".join([values[i], *parts]) if values[i] else " ".join(parts)
    if "via" in keys:
        vias = [v for k, v in zip(keys, values, strict=True) if k == "via"]
        # a comma can sit inside a quoted parameter: count exactly only past the quick count
        if (len(vias) > max_vias or sum(v.count(",") + 1 for v in vias) > max_vias) and sum(
                len(split_list(v)) for v in vias) > max_vias:
            raise SipParseError(f"too many Via entries (over {max_vias})")
    headers = Headers._from_lists(names, keys, values)

    msg: SipRequest | SipResponse
    start = lines[0]
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line {start[:60]!r}")
        if parts[0] != "SIP/2.0":
            raise SipParseError(f"unsupported version {parts[0][:20]!r}", 505)
        code = parts[1]
        # Status-Code = 3DIGIT, 100..699 (RFC 3261 §7.2, RFC 4475 §3.1.2.19)
        if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
            raise SipParseError(f"bad status code {code[:20]!r}")
        msg = SipResponse(int(code), parts[2] if len(parts) == 3 else "", headers)
    else:
        # Request-Line = Method SP Request-URI SP SIP-Version CRLF, single SPs (§7.1)
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"bad request line {start[:60]!r}")
        method, uri, version = parts
        if TOKEN_RE.fullmatch(method) is None:
            raise SipParseError(f"bad method {method[:30]!r}")
        if _SCHEME_URI_RE.fullmatch(uri) is None:
            raise SipParseError(f"bad Request-URI {uri[:60]!r}")
        if version.upper() != "SIP/2.0" and not (salvage and version[:4].upper() == "SIP/"):
            if version[:4].upper() == "SIP/":
                raise SipParseError(f"unsupported version {version[:20]!r}", 505)
            raise SipParseError(f"bad SIP version {version[:20]!r}")
        msg = SipRequest(method, uri, headers, version="SIP/2.0")

    # CSeq: 32-bit number; method must match the request's (RFC 4475 §3.1.2.4, §3.1.2.17)
    if salvage:
        msg.body = data[body_start:]
        return msg
    if "cseq" in keys:
        cv = values[keys.index("cseq")]
        cseq = parse_cseq(cv)
        if isinstance(msg, SipRequest) and cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method")
        msg._cseq = (cv, cseq)

    # Content-Length framing (RFC 3261 §18.3, §20.14; RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9)
    avail = len(data) - body_start
    if "content-length" in keys:
        cls = {v for k, v in zip(keys, values, strict=True) if k == "content-length"}
        if len(cls) != 1:
            raise SipParseError("conflicting Content-Length headers")
        cl_s = cls.pop()
        if not cl_s.isdigit() or not cl_s.isascii() or len(cl_s) > 9:
            raise SipParseError(f"bad Content-Length {cl_s[:20]!r}")
        cl = int(cl_s)
        if cl > avail:
            raise SipParseError("Content-Length larger than the body")
        msg.body = data[body_start : body_start + cl]
    elif avail:
        msg.body = data[body_start:]
    if strict:
        msg.validate()
    return msg
