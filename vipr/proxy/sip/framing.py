"""Stream framing for TCP/TLS (RFC 3261 §18.3) with RFC 5626 §3.5.1 CRLF keep-alives."""

from __future__ import annotations

import re

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.parser import MAX_MESSAGE_SIZE

# linear: the value is taken to the end of the line and stripped in Python
_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:([^\r\n]*)", re.I)


class StreamFramer:
    """Bytes in, whole raw messages out.

    `feed(data)` returns the complete messages now buffered (parse each with
    `parse_message`). A double CRLF between messages is a keep-alive ping: `pings`
    counts them and the transport answers each with a single CRLF (pong); lone CRLFs
    are ignored. A framing error (no or bad Content-Length, over `max_size`) means the
    stream cannot be resynchronised: close the connection. `feed` raises it as
    SipParseError, unless messages before it completed in the same call: then it
    returns those and keeps the error in `error` (raised by the next `feed`).

    Memory (DESIGN §10): at most `max_size` bytes plus one received chunk are ever
    buffered: a header section without its empty line past `max_size`, or a
    Content-Length that makes the message larger, is a 513 error at once (the body is
    never awaited). For the latter `rejected_head` keeps the header section so that the
    transport can answer the request with 513 Message Too Large (RFC 3261 §21.5.11).
    """

    __slots__ = ("_buf", "_need", "_scanned", "error", "max_size", "pings", "rejected_head")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._scanned = 0   # bytes of _buf already searched for the empty line
        self._need = 0      # length of the message at the head of _buf, once known
        self.max_size = max_size
        self.pings = 0
        self.error: SipParseError | None = None
        self.rejected_head: bytes | None = None

    @property
    def buffered(self) -> int:
        """Bytes waiting for the rest of a message."""
        return len(self._buf)

    def take_pings(self) -> int:
        """Return and reset the number of keep-alive pings seen."""
        n, self.pings = self.pings, 0
        return n

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message completed by them."""
        if self.error is not None:
            raise self.error
        out: list[bytes] = []
        try:
            self._feed(data, out)
        except SipParseError as exc:
            self.error = exc
            self._buf.clear()
            self._scanned = self._need = 0
            if not out:
                raise
        return out

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        buf = self._buf
        buf += data
        while buf:
            if self._need:
                if len(buf) < self._need:
                    break   # the rest of a body whose size is already checked
                out.append(bytes(buf[:self._need]))
                del buf[:self._need]
                self._need = 0
                continue
            if buf[0] in (13, 10):
                if buf.startswith(b"\r\n\r\n"):
                    self.pings += 1
                    del buf[:4]
                    continue
                if len(buf) < 4 and bytes(buf) in (b"\r", b"\r\n", b"\r\n\r"):
                    break   # maybe the start of a ping: wait for more
                self._scanned = 0
                if buf.startswith(b"\r\n"):
                    del buf[:2]   # a pong, or stray CRLF before a start line (§7.5)
                elif buf[0] == 10:
                    del buf[:1]
                else:
                    raise SipParseError("stray CR in stream")
                continue
            # a slow sender (one byte at a time) must not make this quadratic
            end = buf.find(b"\r\n\r\n", max(self._scanned - 3, 0))
            if end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("header section too large", 513)
                self._scanned = len(buf)
                break
            self._scanned = 0
            found = _CL_RE.findall(buf, 0, end + 2)
            if not found:
                raise SipParseError("no Content-Length on a stream transport")
            values = {v.strip(b" \t") for v in found}
            if len(values) != 1:
                raise SipParseError("conflicting Content-Length headers")
            cl_b = values.pop()
            if not cl_b.isdigit() or len(cl_b) > 9:
                raise SipParseError(f"bad Content-Length {cl_b[:20]!r}")
            total = end + 4 + int(cl_b)
            if total > self.max_size:
                self.rejected_head = bytes(buf[:end + 4])
                raise SipParseError("message too large", 513)
            self._need = total
