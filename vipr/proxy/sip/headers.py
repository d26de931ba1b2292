"""Structured header values: parameters, lists, name-addr, Via, CSeq (RFC 3261 §20, §25.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.uri import TOKEN_RE, URI, parse_host_port, parse_uri

# gen-value = token / host / quoted-string (RFC 3261 §25.1 generic-param); RFC 5118 §4.5
# asks receivers to accept a bracketed IPv6 reference as a Via received value.
_GEN_VALUE_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~]+|\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]+\]?|\"(?:[^\"\\]|\\.)*\"", re.S
)
_TOKEN_DISPLAY_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# via-parm = sent-protocol LWS sent-by *( SEMI via-params ); SLASH and COLON allow SWS.
_VIA_RE = re.compile(
    rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[^\]]*\]|[^;:\s\[]+)(?:[ \t]*:[ \t]*([^;\s]*))?[ \t]*(?:;(.*))?",
    re.S,
)


def unquote(text: str) -> str:
    """Remove the quotes of a quoted-string and resolve quoted-pairs; other text unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.S) if "\\" in inner else inner
    return text


def quote(text: str) -> str:
    """Make a quoted-string (RFC 3261 §25.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_outside(text: str, sep: str, angles: bool) -> list[str]:
    """Split on `sep` outside quoted strings (and `<...>` when `angles`)."""
    out: list[str] = []
    start = 0
    i, n = 0, len(text)
    in_angle = False
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise SipParseError("unterminated quoted string")
        elif angles and ch == "<":
            in_angle = True
        elif angles and ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def split_list(value: str, *, strict: bool = False) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), honouring quotes and <>."""
    parts = value.split(",")
    if '"' in value or ("<" in value and any(p.count("<") != p.count(">") for p in parts)):
        parts = _split_outside(value, ",", True)
    out = []
    for p in parts:
        p = p.strip(" \t")
        if p:
            out.append(p)
        elif strict:
            raise SipParseError("empty element in header list")
    return out


def parse_params(text: str, *, strict: bool = False) -> dict[str, str | None]:
    """Parse `;name[=value]` header parameters; `text` starts after the first ';'."""
    params: dict[str, str | None] = {}
    pieces = _split_outside(text, ";", False) if '"' in text else text.split(";")
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip(" \t")
        value = value.strip(" \t")
        if not name:
            if strict or eq:
                raise SipParseError("empty header parameter")
            continue
        if strict and (
            not TOKEN_RE.fullmatch(name) or (eq and not _GEN_VALUE_RE.fullmatch(value))
        ):
            raise SipParseError(f"bad header parameter {piece.strip()!r}")
        params[name.lower()] = value if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialize parameters as `;a=b;c`."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class NameAddr:
    """`display <uri>;params` (From, To, Contact, Route, Record-Route)."""

    uri: URI
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The `tag` parameter (RFC 3261 §19.3)."""
        return self.params.get("tag")

    @property
    def display_name(self) -> str | None:
        """The display name with quoting removed."""
        return None if self.display is None else unquote(self.display)

    def __str__(self) -> str:
        lead = f"{self.display} <{self.uri}>" if self.display else f"<{self.uri}>"
        return lead + format_params(self.params) if self.params else lead


def parse_name_addr(text: str, *, strict: bool = False) -> NameAddr:
    """Parse name-addr or addr-spec with header parameters (RFC 3261 §20.10, §20.20)."""
    s = text.strip(" \t")
    display: str | None = None
    if s.startswith('"'):
        i, n = 1, len(s)
        while i < n and s[i] != '"':
            i += 2 if s[i] == "\\" else 1
        if i >= n:
            raise SipParseError("unterminated quoted display name")
        display = s[: i + 1]
        rest = s[i + 1 :].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError("quoted display name without <URI>")
        lt = 0
        s = rest
    else:
        lt = s.find("<")
        if lt >= 0:
            # RFC 4475 §3.1.1.6: a token display name directly before '<' is accepted.
            d = s[:lt].rstrip(" \t")
            if d:
                if strict and not _TOKEN_DISPLAY_RE.fullmatch(d):
                    raise SipParseError(f"display name must be tokens or quoted: {d!r}")
                display = d
    if lt >= 0:
        gt = s.find(">", lt)
        if gt < 0:
            raise SipParseError("missing '>' in name-addr")
        inner = s[lt + 1 : gt]
        if strict and inner != inner.strip(" \t"):
            # RFC 4475 §3.1.2.14: no LWS inside the angle brackets.
            raise SipParseError("whitespace inside <URI>")
        uri = parse_uri(inner.strip(" \t"), strict=strict)
        tail = s[gt + 1 :].strip(" \t")
    else:
        # addr-spec: parameters after the URI are header parameters (RFC 3261 §20.10);
        # the user part may hold ';', so look for them after the '@'.
        at = s.find("@")
        semi = s.find(";", at if at >= 0 else 0)
        spec, tail = (s[:semi], s[semi:]) if semi >= 0 else (s, "")
        spec = spec.rstrip(" \t")
        if strict and ("?" in spec[at + 1 :] if at >= 0 else "?" in spec):
            # RFC 4475 §3.1.2.13: a URI with headers must use name-addr form
            raise SipParseError("addr-spec with URI headers must be in <>")
        if strict and any(c in spec for c in " \t,"):
            raise SipParseError(f"bad addr-spec {spec!r}")
        uri = parse_uri(spec, strict=strict)
    if not tail:
        return NameAddr(uri, display)
    if tail[0] != ";":
        raise SipParseError(f"junk after address: {tail[:40]!r}")
    return NameAddr(uri, display, parse_params(tail[1:], strict=strict))


def parse_name_addr_list(value: str, *, strict: bool = False) -> list[NameAddr]:
    """Parse a comma-separated list of name-addr (Contact, Route, Record-Route)."""
    return [parse_name_addr(p, strict=strict) for p in split_list(value, strict=strict)]


@dataclass(slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 §8.1.1.7)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The received parameter (RFC 3261 §18.2.1)."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value if filled in (RFC 3581)."""
        v = self.params.get("rport")
        return int(v) if v and v.isdigit() else None

    @property
    def wants_rport(self) -> bool:
        """The rport parameter is present (with or without a value)."""
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        """`host[:port]` as sent."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(text: str, *, strict: bool = False) -> Via:
    """Parse one via-parm."""
    m = _VIA_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"bad Via {text[:80]!r}")
    name, version, transport, host, port_s, ptext = m.groups()
    if strict and (name.upper() != "SIP" or version != "2.0"):
        raise SipParseError(f"unsupported Via protocol {name}/{version}", 505)
    if port_s is not None:
        host, port = parse_host_port(f"{host}:{port_s}", strict=strict)
    else:
        host, port = parse_host_port(host, strict=strict)
    params = parse_params(ptext, strict=strict) if ptext is not None else {}
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
    return Via(transport.upper(), host, port, params, protocol)


def parse_via_list(value: str, *, strict: bool = False) -> list[Via]:
    """Parse a Via header value holding one or more comma-separated via-parms."""
    return [parse_via(p, strict=strict) for p in split_list(value, strict=strict)]


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq: sequence number and method (RFC 3261 §20.16)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must fit in 32 bits (RFC 4475 §3.1.2.4)."""
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"bad CSeq {value[:40]!r}")
    num, method = parts
    if not num.isdigit() or not num.isascii() or len(num) > 10 or int(num) > 0xFFFFFFFF:
        raise SipParseError(f"bad CSeq number {num[:20]!r}")
    if not TOKEN_RE.fullmatch(method):
        raise SipParseError(f"bad CSeq method {method[:20]!r}")
    return CSeq(int(num), method)
