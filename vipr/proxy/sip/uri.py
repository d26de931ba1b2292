"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), other schemes kept opaque."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vipr.proxy.sip.errors import SipParseError

# RFC 3261 §25.1: token, and the character classes of the URI components.
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ), user-unreserved = & = + $ , ; ? /
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAMCHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
# hname / hvalue = hnv-unreserved / unreserved / escaped; hnv-unreserved = [ ] / ? : + $
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*"
_HEADERS_RE = re.compile(rf"{_HNV}={_HNV}(?:&{_HNV}={_HNV})*")
# hostname / IPv4address; IPv6reference is checked loosely (RFC 5118 §4.10 asks us to
# tolerate the RFC 3261 ABNF bug that admits three colons).
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_IPV6REF_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
# RFC 3966 telephone-subscriber, loosely: visual separators and the number characters.
_TEL_RE = re.compile(r"[0-9A-Fa-f*#+\-.()pPwW]+|(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9\-_.!~*'()])+")
_OPAQUE_BAD = re.compile(r"[\x00-\x20<>\"\x7f]")
_HEX = "0123456789abcdefABCDEF"


def unescape(text: str) -> str:
    """Decode %HH escapes exactly once (RFC 3261 §19.1.4); invalid escapes stay literal."""
    if "%" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def format_host(host: str) -> str:
    """A host for a URI or Via: IPv6 addresses get brackets (RFC 3261 §25.1 IPv6reference)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_host_port(text: str, *, strict: bool = False) -> tuple[str, int | None]:
    """Split `host[:port]` (IPv6 references keep their brackets)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if strict and not _IPV6REF_RE.fullmatch(host):
            raise SipParseError(f"bad IPv6 reference {host!r}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"junk after IPv6 reference in {text!r}")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.partition(":")
        if not host:
            raise SipParseError(f"empty host in {text!r}")
        if strict and not _HOSTNAME_RE.fullmatch(host):
            raise SipParseError(f"bad host {host!r}")
        if not sep:
            return host, None
    if not port_s.isdigit() or not port_s.isascii() or len(port_s) > 5 or int(port_s) > 65535:
        raise SipParseError(f"bad port in {text!r}")
    return host, int(port_s)


def parse_uri_params(text: str, *, strict: bool = False) -> dict[str, str | None]:
    """Parse `;name[=value]` URI parameters (text starts after the first ';')."""
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        if not piece:
            if strict:
                raise SipParseError("empty URI parameter")
            continue
        name, eq, value = piece.partition("=")
        if strict and (
            not _PARAMCHARS_RE.fullmatch(name) or (eq and not _PARAMCHARS_RE.fullmatch(value))
        ):
            raise SipParseError(f"bad URI parameter {piece!r}")
        params[name.lower()] = value if eq else None
    return params


@dataclass(slots=True)
class URI:
    """A parsed URI. `host` keeps IPv6 brackets; other schemes keep `opaque` (after the colon)."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        """True for sip: and sips: URIs."""
        return self.scheme in ("sip", "sips")

    @property
    def address(self) -> str:
        """The host without IPv6 brackets (for sockets)."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    @property
    def transport(self) -> str | None:
        """The `transport` URI parameter, lower case."""
        t = self.params.get("transport")
        return t.lower() if t else None

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            if self.scheme != "tel":
                parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for k, v in self.params.items():
            parts += [";", k] if v is None else [";", k, "=", v]
        if self.headers is not None:
            parts += ["?", self.headers]
        return "".join(parts)


def parse_uri(text: str, *, strict: bool = False) -> URI:
    """Parse a URI; raises SipParseError. `strict` checks every character class."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"not a URI: {text[:80]!r}")
    low = scheme.lower()
    if not rest:
        raise SipParseError(f"empty URI after scheme: {text[:80]!r}")
    if low in ("sip", "sips"):
        return _parse_sip(low, rest, strict)
    if _OPAQUE_BAD.search(rest):
        raise SipParseError(f"illegal character in URI {text[:80]!r}")
    if low == "tel":
        number, _, ptext = rest.partition(";")
        if not number or (strict and not _TEL_RE.fullmatch(number)):
            raise SipParseError(f"bad tel URI {text[:80]!r}")
        params = parse_uri_params(ptext, strict=strict) if ptext else {}
        return URI("tel", user=number, params=params)
    return URI(low, opaque=rest)


def _parse_sip(scheme: str, rest: str, strict: bool) -> URI:
    # RFC 3261 §19.1.1: sip:user:password@host:port;uri-parameters?headers. '@' cannot
    # appear unescaped after the userinfo, but the user part may hold ';', '?' and ','.
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, csep, pw = userinfo.partition(":")
        if csep:
            password = pw
        if strict and (
            not _USER_RE.fullmatch(user)
            or (password is not None and not _PASSWORD_RE.fullmatch(password))
        ):
            raise SipParseError(f"bad userinfo {userinfo!r}")
        if not user:
            raise SipParseError("empty user part")
    headers = None
    q = rest.find("?")
    if q >= 0:
        rest, headers = rest[:q], rest[q + 1 :]
        if strict and not _HEADERS_RE.fullmatch(headers):
            raise SipParseError(f"bad URI headers {headers!r}")
    if rest.startswith("["):
        # semicolons cannot occur inside an IPv6 reference
        end = rest.find("]")
        semi = rest.find(";", end if end >= 0 else 0)
    else:
        semi = rest.find(";")
    if semi >= 0:
        hostport, ptext = rest[:semi], rest[semi + 1 :]
        params = parse_uri_params(ptext, strict=strict)
    else:
        hostport, params = rest, {}
    if not hostport or (not strict and _OPAQUE_BAD.search(hostport)):
        raise SipParseError(f"bad host in sip URI {rest[:80]!r}")
    host, port = parse_host_port(hostport, strict=strict)
    if not strict and (_OPAQUE_BAD.search(host) or (user and _OPAQUE_BAD.search(user))):
        raise SipParseError("illegal character in sip URI")
    return URI(scheme, user=user, password=password, host=host, port=port, params=params,
               headers=headers)
