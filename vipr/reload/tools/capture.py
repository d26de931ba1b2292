"""Debug capture: a node's decrypted RELOAD link traffic as pcap records (sans-I/O).

Each link is drawn as one TCP flow (SYN, SYN-ACK, ACK, then the framed stream) over IPv4
between this node and the peer, the peer on TCP port 6084: Wireshark's decode table hands that
port to `reload-framing` (RFC 6940 §6.6.2 frames, then the RELOAD dissector). Addresses are
the link's own when IPv4, else 127.0.0.1 / 127.0.0.2; the node's ports are synthetic (one
per link). Each framing frame starts a TCP segment of its own (split at MSS, reassembled by
Wireshark): Wireshark 4.0 reports an ACK frame followed by a data frame in one segment as
malformed although the stream is fine.

`CaptureState.feed(link, outgoing, data, now)` → pcap record bytes; the caller writes them
after `pcap_file_header()` (`vipr.reload.aio.capture` does, for `overlay.debug.capture`).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

RELOAD_PORT = 6084  # Wireshark: tcp.port 6084 → reload-framing
MSS = 1400
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
FIRST_PORT = 20000
DATA_FRAME, ACK_FRAME = 0x80, 0x81
MAX_PENDING = 1 << 24  # a frame announces at most 2^24-1 bytes (§6.6.2)


def pcap_file_header() -> bytes:
    """The classic pcap global header (microsecond timestamps, Ethernet)."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = int(sum(struct.unpack(f"!{len(b) // 2}H", b)))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


def tcp_ipv4_frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                   flags: int, payload: bytes, ident: int) -> bytes:
    """Ethernet ‖ IPv4 ‖ TCP ‖ payload, checksums filled in."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), ident & 0xFFFF,
                     0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return b"\0\0\0\0\0\2" + b"\0\0\0\0\0\1" + b"\x08\x00" + ip + tcp + payload


def pcap_record(frame: bytes, now: float) -> bytes:
    sec = int(now)
    usec = min(999_999, int((now - sec) * 1e6))
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def _ipv4(address: str | None, fallback: str) -> bytes:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        ip = ipaddress.ip_address(fallback)
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ipaddress.IPv4Address(fallback)
    return ip.packed


@dataclass
class _Flow:
    local: bytes
    peer: bytes
    port: int
    seq: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})
    pending: dict[bool, bytearray] = field(
        default_factory=lambda: {True: bytearray(), False: bytearray()})


def _frame_length(buf: bytes | bytearray) -> int | None:
    """Length of the §6.6.2 frame at the start of `buf`; None when incomplete; -1 when the
    stream is not framing (then it is passed on as it is)."""
    if not buf:
        return None
    if buf[0] == ACK_FRAME:
        return 9 if len(buf) >= 9 else None
    if buf[0] != DATA_FRAME:
        return -1
    if len(buf) < 8:
        return None
    n = 8 + int.from_bytes(buf[5:8], "big")
    return n if len(buf) >= n else None


class CaptureState:
    """The TCP flows of one node's links and their sequence numbers."""

    def __init__(self) -> None:
        self._flows: dict[object, _Flow] = {}
        self._ident = 0
        self._opened = 0

    def __len__(self) -> int:
        return len(self._flows)

    def knows(self, link: object) -> bool:
        return link in self._flows

    def _segment(self, f: _Flow, outgoing: bool, payload: bytes, now: float,
                 flags: int = 0x18) -> bytes:
        src, dst = (f.local, f.peer) if outgoing else (f.peer, f.local)
        sport, dport = (f.port, RELOAD_PORT) if outgoing else (RELOAD_PORT, f.port)
        ack = 0 if flags == 0x02 else f.seq[not outgoing]
        self._ident += 1
        frame = tcp_ipv4_frame(src, dst, sport, dport, f.seq[outgoing], ack, flags, payload,
                               self._ident)
        f.seq[outgoing] = (f.seq[outgoing] + len(payload) + (flags & 0x02 != 0)) & 0xFFFFFFFF
        return pcap_record(frame, now)

    def _open(self, link: object, local: str | None, peer: str | None, now: float
              ) -> tuple[_Flow, bytes]:
        f = _Flow(_ipv4(local, "127.0.0.1"), _ipv4(peer, "127.0.0.2"),
                  FIRST_PORT + self._opened % (65536 - FIRST_PORT))
        self._opened += 1
        self._flows[link] = f
        out = self._segment(f, True, b"", now, 0x02)  # SYN
        out += self._segment(f, False, b"", now, 0x12)  # SYN-ACK
        out += self._segment(f, True, b"", now, 0x10)  # ACK
        return f, out

    def feed(self, link: object, outgoing: bool, data: bytes, now: float, *,
             local: str | None = None, peer: str | None = None) -> bytes:
        """pcap records for `data` written (`outgoing`) or read on `link`'s TLS stream: one
        segment run per complete framing frame; partial frames wait for their rest."""
        f = self._flows.get(link)
        out = b""
        if f is None:
            f, out = self._open(link, local, peer, now)
        buf = f.pending[outgoing]
        buf += data
        while True:
            n = _frame_length(buf)
            if n is None:
                if len(buf) > MAX_PENDING:
                    n = len(buf)
                else:
                    break
            if n == -1:
                n = len(buf)
            frame = bytes(buf[:n])
            del buf[:n]
            for i in range(0, len(frame), MSS):
                out += self._segment(f, outgoing, frame[i : i + MSS], now)
        return out

    def close(self, link: object, now: float) -> bytes:
        """FIN both ways for a closed link (and forget it)."""
        f = self._flows.pop(link, None)
        if f is None:
            return b""
        return (self._segment(f, True, b"", now, 0x11) + self._segment(f, False, b"", now, 0x11))


__all__ = ["RELOAD_PORT", "CaptureState", "pcap_file_header", "pcap_record", "tcp_ipv4_frame"]
