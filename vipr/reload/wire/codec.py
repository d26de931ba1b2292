"""Bounded reader/writer for the TLS presentation language used by RFC 6940 (§6.3).

Every read is bounds-checked; any violation raises `ReloadDecodeError` and nothing else.
"""

from __future__ import annotations

import struct

from vipr.reload.errors import ReloadError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")

NODE_ID_LENGTH = 16  # DESIGN §4: 128-bit Node-IDs (RFC 6940 §11.1 node-id-length default)


class ReloadDecodeError(ReloadError, ValueError):
    """Input bytes are not a valid RELOAD structure."""


class ReloadEncodeError(ReloadError, ValueError):
    """A value cannot be encoded (out of range, too long)."""


class Reader:
    """Strict cursor over a byte string, limited to [pos, end)."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise ReloadDecodeError(f"truncated: need {n} bytes at offset {p}, have {self.end - p}")
        self.pos = p + n
        return p

    def u8(self) -> int:
        p = self._need(1)
        return self.buf[p]

    def u16(self) -> int:
        p = self._need(2)
        return int(_U16.unpack_from(self.buf, p)[0])

    def u24(self) -> int:
        p = self._need(3)
        return int.from_bytes(self.buf[p : p + 3], "big")

    def u32(self) -> int:
        p = self._need(4)
        return int(_U32.unpack_from(self.buf, p)[0])

    def u64(self) -> int:
        p = self._need(8)
        return int(_U64.unpack_from(self.buf, p)[0])

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise ReloadDecodeError(f"Boolean must be 0 or 1, got {v}")
        return v == 1

    def fixed(self, n: int) -> bytes:
        p = self._need(n)
        return bytes(self.buf[p : p + n])

    def length(self, prefix: int) -> int:
        if prefix == 1:
            return self.u8()
        if prefix == 2:
            return self.u16()
        if prefix == 3:
            return self.u24()
        return self.u32()

    def opaque(self, prefix: int) -> bytes:
        """`opaque x<0..2^(8*prefix)-1>`: length prefix in bytes, then data."""
        return self.fixed(self.length(prefix))

    def sub(self, prefix: int) -> Reader:
        """A reader over the next length-prefixed block; this reader skips past it."""
        n = self.length(prefix)
        p = self._need(n)
        return Reader(self.buf, p, p + n)

    def sub_fixed(self, n: int) -> Reader:
        p = self._need(n)
        return Reader(self.buf, p, p + n)

    def node_id(self) -> bytes:
        return self.fixed(NODE_ID_LENGTH)

    def node_id_list(self, prefix: int) -> tuple[bytes, ...]:
        """`NodeId list<..>` (length in bytes, must be a multiple of the Node-ID length)."""
        data = self.opaque(prefix)
        if len(data) % NODE_ID_LENGTH:
            raise ReloadDecodeError("NodeId list length is not a multiple of the Node-ID length")
        return tuple(data[i : i + NODE_ID_LENGTH] for i in range(0, len(data), NODE_ID_LENGTH))

    def done(self, what: str = "structure") -> None:
        if self.pos != self.end:
            raise ReloadDecodeError(f"{self.end - self.pos} trailing bytes after {what}")


class Writer:
    """Append-only byte builder with checked integer widths and length prefixes."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> Writer:
        if not 0 <= v <= 0xFF:
            raise ReloadEncodeError(f"uint8 out of range: {v}")
        self.buf.append(v)
        return self

    def u16(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFF:
            raise ReloadEncodeError(f"uint16 out of range: {v}")
        self.buf += _U16.pack(v)
        return self

    def u24(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFFFF:
            raise ReloadEncodeError(f"uint24 out of range: {v}")
        self.buf += v.to_bytes(3, "big")
        return self

    def u32(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFFFFFF:
            raise ReloadEncodeError(f"uint32 out of range: {v}")
        self.buf += _U32.pack(v)
        return self

    def u64(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFFFFFFFFFFFFFF:
            raise ReloadEncodeError(f"uint64 out of range: {v}")
        self.buf += _U64.pack(v)
        return self

    def boolean(self, v: bool) -> Writer:
        self.buf.append(1 if v else 0)
        return self

    def raw(self, data: bytes) -> Writer:
        self.buf += data
        return self

    def length(self, prefix: int, n: int) -> Writer:
        if n >= 1 << (8 * prefix):
            raise ReloadEncodeError(f"length {n} does not fit a {prefix}-byte prefix")
        self.buf += n.to_bytes(prefix, "big")
        return self

    def opaque(self, prefix: int, data: bytes) -> Writer:
        self.length(prefix, len(data))
        self.buf += data
        return self

    def node_id(self, node_id: bytes) -> Writer:
        if len(node_id) != NODE_ID_LENGTH:
            raise ReloadEncodeError(f"Node-ID must be {NODE_ID_LENGTH} bytes")
        self.buf += node_id
        return self

    def node_id_list(self, prefix: int, ids: tuple[bytes, ...]) -> Writer:
        for n in ids:
            if len(n) != NODE_ID_LENGTH:
                raise ReloadEncodeError(f"Node-ID must be {NODE_ID_LENGTH} bytes")
        return self.opaque(prefix, b"".join(ids))

    def getvalue(self) -> bytes:
        return bytes(self.buf)
