"""SIP message model and serializer (RFC 3261 §7).

Header text is kept as received (unfolded) until a caller changes it; structured views
(`vias`, `from_`, `cseq`, ...) are parsed on access and never cached, so they always
reflect the current header text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    parse_via_list,
    split_list,
)
from vipr.proxy.sip.uri import URI, parse_uri

# RFC 3261 §7.3.3 compact forms, plus the later registrations (IANA "Header Fields").
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT"
)
# Header values that passed the strict check (`validate`): many repeat from call to call
# (Contact, Route, Record-Route, To of a new request), and the check is pure, so a value
# seen before is not parsed again. Bounded: cleared when full.
_STRICT_KINDS = frozenset(("via", "from", "to", "contact", "route", "record-route"))
_STRICT_OK: set[tuple[str, str]] = set()
_STRICT_OK_MAX = 4096
# Headers that may appear only once (RFC 3261 §7.3.1: only list headers may repeat).
_SINGLE = ("call-id", "from", "to", "cseq", "max-forwards", "content-length")


def _tag_of(value: str) -> str | None:
    """The tag parameter of a From/To value; fast path for `...<uri>;params` (no quotes
    after the last '>'), the full name-addr parser otherwise."""
    gt = value.rfind(">")
    tail = value[gt + 1 :].lstrip(" \t") if gt >= 0 else ""
    if gt < 0 or '"' in tail or value.find("<") < 0 or (tail and tail[0] != ";"):
        return parse_name_addr(value).tag   # addr-spec, quoted params or malformed
    for piece in tail.split(";"):
        name, eq, v = piece.partition("=")
        if name.strip(" \t").lower() == "tag":
            return v.strip(" \t") if eq else None
    return None


_KEYS: dict[str, str] = {}


def header_key(name: str) -> str:
    """Canonical lookup key: lower case, compact forms expanded."""
    k = _KEYS.get(name)
    if k is None:
        k = name.lower()
        k = COMPACT_FORMS.get(k, k)
        if len(_KEYS) < 2048:
            _KEYS[name] = k
    return k


class Headers:
    """Ordered header fields; lookup by any spelling, compact forms included."""

    __slots__ = ("_keys", "_names", "_values")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._names: list[str] = []
        self._keys: list[str] = []
        self._values: list[str] = []
        for n, v in items:
            self.add(n, v)

    @classmethod
    def _from_lists(cls, names: list[str], keys: list[str], values: list[str]) -> Headers:
        h = cls.__new__(cls)
        h._names, h._keys, h._values = names, keys, values
        return h

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(self._names, self._values, strict=True)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._keys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._names == other._names and self._values == other._values

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        """A shallow copy (strings are immutable)."""
        return Headers._from_lists(self._names[:], self._keys[:], self._values[:])

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value."""
        try:
            return self._values[self._keys.index(header_key(name))]
        except ValueError:
            return default

    def get_all(self, name: str) -> list[str]:
        """The values of every field with this name, in order."""
        k = header_key(name)
        return [v for kk, v in zip(self._keys, self._values, strict=True) if kk == k]

    def get_list(self, name: str) -> list[str]:
        """Comma-separated elements across all fields with this name (RFC 3261 §7.3.1)."""
        out: list[str] = []
        for v in self.get_all(name):
            out += split_list(v)
        return out

    def count(self, name: str) -> int:
        """How many fields have this name."""
        return self._keys.count(header_key(name))

    def add(self, name: str, value: str) -> None:
        """Append a field at the end."""
        self._names.append(name)
        self._keys.append(header_key(name))
        self._values.append(value)

    def insert(self, name: str, value: str) -> None:
        """Insert before the first field of this name (top of the list), else at the top."""
        k = header_key(name)
        try:
            i = self._keys.index(k)
        except ValueError:
            i = 0
        self._names.insert(i, name)
        self._keys.insert(i, k)
        self._values.insert(i, value)

    def set(self, name: str, value: str) -> None:
        """Replace the first field's value and drop the others; append if absent."""
        k = header_key(name)
        try:
            i = self._keys.index(k)
        except ValueError:
            self.add(name, value)
            return
        self._values[i] = value
        self._drop(k, i + 1)

    def remove(self, name: str) -> int:
        """Remove every field with this name; returns how many."""
        return self._drop(header_key(name), 0)

    def _drop(self, k: str, start: int) -> int:
        n = 0
        i = len(self._keys) - 1
        while i >= start:
            if self._keys[i] == k:
                del self._keys[i], self._names[i], self._values[i]
                n += 1
            i -= 1
        return n

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first comma-separated element (e.g. the top Via)."""
        k = header_key(name)
        try:
            i = self._keys.index(k)
        except ValueError:
            return None
        parts = split_list(self._values[i])
        if len(parts) <= 1:
            del self._keys[i], self._names[i], self._values[i]
            return parts[0] if parts else None
        self._values[i] = ", ".join(parts[1:])
        return parts[0]


class SipMessage:
    """Fields shared by requests and responses."""

    __slots__ = ("_cseq", "_via", "body", "headers", "version")

    headers: Headers
    body: bytes
    version: str
    _cseq: tuple[str, CSeq] | None
    _via: tuple[str, Via] | None

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        self.version = version
        self._cseq = None
        self._via = None

    def start_line(self) -> str:
        """The request or status line."""
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire bytes. Content-Length is written (or fixed) to match the body (§20.14)."""
        names, values, keys = self.headers._names, self.headers._values, self.headers._keys
        blen = str(len(self.body))
        lines = [self.start_line()]
        has_cl = False
        for n, k, v in zip(names, keys, values, strict=True):
            if k == "content-length":
                if has_cl:
                    continue
                has_cl = True
                v = blen
            lines.append(f"{n}: {v}")
        if not has_cl:
            lines.append(f"Content-Length: {blen}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    # --- structured views (parsed on access; raise SipParseError) ---

    def _need(self, name: str) -> str:
        v = self.headers.get(name)
        if v is None:
            raise SipParseError(f"missing {name} header")
        return v

    @property
    def call_id(self) -> str:
        """Call-ID value."""
        return self._need("call-id")

    @property
    def cseq(self) -> CSeq:
        """Parsed CSeq (CSeq is immutable, so it is cached while the text is unchanged)."""
        v = self._need("cseq")
        c = self._cseq
        if c is not None and c[0] == v:
            return c[1]
        cs = parse_cseq(v)
        self._cseq = (v, cs)
        return cs

    @property
    def from_(self) -> NameAddr:
        """Parsed From."""
        return parse_name_addr(self._need("from"))

    @property
    def to(self) -> NameAddr:
        """Parsed To."""
        return parse_name_addr(self._need("to"))

    @property
    def from_tag(self) -> str | None:
        """From tag, or None."""
        return _tag_of(self._need("from"))

    @property
    def to_tag(self) -> str | None:
        """To tag, or None."""
        return _tag_of(self._need("to"))

    @property
    def vias(self) -> list[Via]:
        """All Via values, top first."""
        out: list[Via] = []
        for v in self.headers.get_all("via"):
            out += parse_via_list(v)
        return out

    @property
    def top_via(self) -> Via:
        """The topmost Via (parses only the first element); a fresh object to edit."""
        return parse_via(self._top_via_text())

    def top_via_view(self) -> Via:
        """The topmost Via for reading only (keys, response routing): parsed once and
        shared while the header text is unchanged. Do not modify it; use `top_via`."""
        v = self._need("via")
        c = self._via
        if c is not None and c[0] is v:
            return c[1]
        via = parse_via(self._first_via(v))
        self._via = (v, via)
        return via

    def _top_via_text(self) -> str:
        return self._first_via(self._need("via"))

    @staticmethod
    def _first_via(v: str) -> str:
        if "," in v or '"' in v:
            first = split_list(v)
            if not first:
                raise SipParseError("empty Via header")
            return first[0]
        return v

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (empty for `Contact: *`, see `contact_is_star`)."""
        out: list[NameAddr] = []
        for v in self.headers.get_all("contact"):
            if v.strip() != "*":
                out += parse_name_addr_list(v)
        return out

    @property
    def contact_is_star(self) -> bool:
        """`Contact: *` (REGISTER removal, RFC 3261 §10.2.2)."""
        return any(v.strip() == "*" for v in self.headers.get_all("contact"))

    @property
    def routes(self) -> list[NameAddr]:
        """Route values, top first."""
        return [a for v in self.headers.get_all("route") for a in parse_name_addr_list(v)]

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values, top first."""
        return [a for v in self.headers.get_all("record-route") for a in parse_name_addr_list(v)]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent."""
        v = self.headers.get("max-forwards")
        if v is None:
            return None
        if not v.isdigit() or not v.isascii() or int(v) > 255:
            raise SipParseError(f"bad Max-Forwards {v[:20]!r}")
        return int(v)

    @property
    def content_type(self) -> str | None:
        """Content-Type value."""
        return self.headers.get("content-type")

    # --- proxy helpers (RFC 3261 §16.6) ---

    def push_via(self, via: Via | str) -> None:
        """Add a Via on top."""
        text = str(via)
        self.headers.insert("Via", text)
        if isinstance(via, Via):   # a copy, as `parse_via` would give it: the caller keeps its own
            self._via = (text, Via(via.transport.upper(), via.host, via.port,
                                   {k.lower(): v for k, v in via.params.items()}, via.protocol))

    def pop_via(self) -> Via:
        """Remove and return the top Via (§16.7 step 3)."""
        v = self.headers.pop_first("via")
        if v is None:
            raise SipParseError("missing Via header")
        c = self._via
        if c is not None and c[0] == v:
            self._via = None   # no longer in the message: the caller may keep it
            return c[1]
        return parse_via(v)

    def validate(self) -> None:
        """Deep syntax check of every header this core knows; raises SipParseError.

        Checks the mandatory headers (RFC 3261 §8.1.1), single-valued headers not
        repeated (RFC 4475 §3.3.8), Via, From, To, Contact, Route, Record-Route, Date,
        Max-Forwards in strict grammar.
        """
        h = self.headers
        keys = h._keys
        for name in ("via", "from", "to", "call-id", "cseq"):
            if name not in keys:
                raise SipParseError(f"missing {name} header")
        for name in _SINGLE:
            if keys.count(name) > 1:
                raise SipParseError(f"repeated {name} header")
        ok = _STRICT_OK
        for k, v in zip(keys, h._values, strict=True):
            if k not in _STRICT_KINDS or (k, v) in ok:
                continue
            if k == "via":
                parse_via_list(v, strict=True)
            elif k in ("from", "to"):
                parse_name_addr(v, strict=True)
            elif k == "contact":
                if v.strip() != "*":
                    parse_name_addr_list(v, strict=True)
            else:   # route, record-route
                parse_name_addr_list(v, strict=True)
            if len(ok) >= _STRICT_OK_MAX:
                ok.clear()
            ok.add((k, v))
        if not self.call_id or any(c in self.call_id for c in " \t"):
            raise SipParseError("bad Call-ID")
        self.max_forwards  # noqa: B018 - parses and range-checks
        date = h.get("date")
        if date is not None and not _DATE_RE.fullmatch(date):
            # RFC 3261 §20.17: rfc1123-date, GMT only (RFC 4475 §3.1.2.12)
            raise SipParseError(f"bad Date {date[:40]!r}")


class SipRequest(SipMessage):
    """A request: `method`, `uri` (text; `request_uri` parses it)."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str | URI,
                 headers: Headers | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.method = method
        self.uri = str(uri)

    @property
    def request_uri(self) -> URI:
        """The parsed Request-URI."""
        return parse_uri(self.uri)

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipRequest):
            return NotImplemented
        return (self.method, self.uri, self.version, self.headers, self.body) == (
            other.method, other.uri, other.version, other.headers, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"

    def validate(self) -> None:
        """`SipMessage.validate` plus the Request-URI and CSeq method (RFC 4475 §3.1.2)."""
        if ("request-uri", self.uri) not in _STRICT_OK:
            u = parse_uri(self.uri, strict=True)
            if u.is_sip and u.headers is not None:
                # RFC 3261 §19.1.5: headers are not allowed in a Request-URI (§3.1.2.11)
                raise SipParseError("Request-URI has headers")
            if len(_STRICT_OK) >= _STRICT_OK_MAX:
                _STRICT_OK.clear()
            _STRICT_OK.add(("request-uri", self.uri))
        super().validate()
        if self.cseq.method != self.method:
            raise SipParseError("CSeq method does not match the request method")


class SipResponse(SipMessage):
    """A response: `status`, `reason`."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str | None = None,
                 headers: Headers | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipResponse):
            return NotImplemented
        return (self.status, self.reason, self.version, self.headers, self.body) == (
            other.status, other.reason, other.version, other.headers, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def make_response(request: SipRequest, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"") -> SipResponse:
    """Build a response to `request` (RFC 3261 §8.2.6.2): copies Via, From, To, Call-ID,
    CSeq (and Record-Route for dialog-creating 1xx/2xx, §12.1.1); adds a To tag when given
    and the request had none. 100 Trying also copies Timestamp (§8.2.6.1).
    """
    src = request.headers
    h = Headers()
    for name, value in src:
        k = header_key(name)
        if k in ("via", "from", "call-id", "cseq") or (
            k == "record-route" and 100 < status < 300
        ) or (k == "timestamp" and status == 100):
            h.add(name, value)
        elif k == "to":
            if to_tag is not None and status > 100 and "tag" not in parse_name_addr(value).params:
                value = f"{value};tag={to_tag}"
            h.add(name, value)
    for name, value in headers:
        h.add(name, value)
    return SipResponse(status, reason, h, body)


def make_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From,
    CSeq number and Route set; only the top Via (so the branch matches)."""
    h = Headers()
    vias = invite.headers.get_list("via")
    if not vias:
        raise SipParseError("missing Via header")
    h.add("Via", vias[0])
    for name, value in invite.headers:
        if header_key(name) in ("route", "from", "to", "call-id"):
            h.add(name, value)
    h.add("CSeq", f"{invite.cseq.seq} CANCEL")
    h.add("Max-Forwards", "70")
    return SipRequest("CANCEL", invite.uri, h)
