"""TLS-TCP-FH-NO-ICE framing (RFC 6940 §6.6), sans-I/O: bytes and `now` in, frames and bytes out.

`FramingState` keeps sequence numbers, ACK bitmaps (§6.6.3.1) and RTT/RTO (RFC 6298) of one
connection; the asyncio `Link` (aio/link.py) feeds it the TLS stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vipr.reload.wire.codec import Reader, ReloadDecodeError
from vipr.reload.wire.forwarding import ForwardingHeader

FRAME_DATA = 0x80  # §6.6.2 FramedMessageType data(128)
FRAME_ACK = 0x81  # ack(129)
DEFAULT_MAX_MESSAGE_SIZE = 5000  # §11.1 max-message-size default
INITIAL_RTO = 1.0  # RFC 6298 §2.1
MIN_RTO = 1.0  # RFC 6298 §2.4 (SHOULD)
DEAD_AFTER = 30.0  # §6.6.3.2: keep ~30 s before declaring the link failed


@dataclass(frozen=True, slots=True)
class DataFrame:
    sequence: int
    message: bytes


@dataclass(frozen=True, slots=True)
class AckFrame:
    sequence: int
    received: int


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A data frame over max-message-size; `header` is its forwarding header when readable."""

    sequence: int
    length: int
    header: ForwardingHeader | None


FrameEvent = DataFrame | AckFrame | TooLarge


def encode_data_frame(sequence: int, message: bytes) -> bytes:
    if len(message) > 0xFFFFFF:
        raise ValueError("message does not fit a 24-bit frame length")
    return struct.pack("!BI", FRAME_DATA, sequence) + len(message).to_bytes(3, "big") + message


def encode_ack_frame(sequence: int, received: int) -> bytes:
    return struct.pack("!BII", FRAME_ACK, sequence, received)


@dataclass
class FramingState:
    """Sans-I/O framing for one connection: sequence numbers, ACK bitmaps, RTT/RTO (RFC 6298)."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    dead_after: float = DEAD_AFTER
    next_sequence: int = 1  # §6.6.2 "initially zero"; the first frame we send carries 1
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = INITIAL_RTO
    _buf: bytearray = field(default_factory=bytearray)
    _recent: list[int] = field(default_factory=list)
    _unacked: dict[int, float] = field(default_factory=dict)
    _last_ack: float | None = None

    def send_data(self, message: bytes, now: float) -> bytes:
        seq = self.next_sequence
        self.next_sequence = (seq + 1) & 0xFFFFFFFF
        self._unacked[seq] = now
        if len(self._unacked) > 1024:  # keep state bounded on links that never ACK
            self._unacked.pop(next(iter(self._unacked)))
        return encode_data_frame(seq, message)

    def ack_for(self, sequence: int) -> bytes:
        """§6.6.3.1: bit (N-M) set for each M among the last 32 received with N-32 < M < N."""
        bits = 0
        for m in self._recent:
            d = (sequence - m) & 0xFFFFFFFF
            if 0 < d < 32:
                bits |= 1 << d
        self._recent.append(sequence)
        if len(self._recent) > 32:
            del self._recent[0]
        return encode_ack_frame(sequence, bits)

    def receive(self, data: bytes, now: float) -> tuple[list[FrameEvent], bytes]:
        """Feed stream bytes; returns complete frames and the ACK bytes to send back.

        Raises `ReloadDecodeError` on an unknown frame type (the caller closes the link).
        """
        self._buf += data
        events: list[FrameEvent] = []
        out = bytearray()
        buf = self._buf
        while True:
            if not buf:
                break
            t = buf[0]
            if t == FRAME_DATA:
                if len(buf) < 8:
                    break
                seq = int.from_bytes(buf[1:5], "big")
                length = int.from_bytes(buf[5:8], "big")
                if length > self.max_message_size:
                    # §6.6: read enough to answer Error_Message_Too_Large, then the link closes;
                    # a forwarding header that does not fit max-message-size → silent close.
                    want = min(length, self.max_message_size)
                    if len(buf) - 8 < want:
                        break
                    hdr: ForwardingHeader | None
                    try:
                        hdr = ForwardingHeader.decode(Reader(bytes(buf[8 : 8 + want])))
                    except ReloadDecodeError:
                        hdr = None
                    events.append(TooLarge(seq, length, hdr))
                    del buf[:]
                    break
                if len(buf) < 8 + length:
                    break
                msg = bytes(buf[8 : 8 + length])
                del buf[: 8 + length]
                out += self.ack_for(seq)
                events.append(DataFrame(seq, msg))
            elif t == FRAME_ACK:
                if len(buf) < 9:
                    break
                seq, received = struct.unpack_from("!II", buf, 1)
                del buf[:9]
                self._on_ack(seq, now)
                events.append(AckFrame(seq, received))
            else:
                raise ReloadDecodeError(f"unknown framed message type 0x{t:02x}")
        return events, bytes(out)

    def _on_ack(self, seq: int, now: float) -> None:
        sent = self._unacked.pop(seq, None)
        self._last_ack = now
        if sent is None:
            return
        r = max(0.0, now - sent)
        # RFC 6298 §2.2 / §2.3
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = max(MIN_RTO, self.srtt + max(0.001, 4 * self.rttvar))

    def oldest_unacked(self) -> float | None:
        return min(self._unacked.values()) if self._unacked else None

    def suspect(self, now: float) -> bool:
        """§6.6.3.2: no ACK within RTO for an outstanding frame."""
        o = self.oldest_unacked()
        return o is not None and now - o > self.rto

    def dead(self, now: float) -> bool:
        o = self.oldest_unacked()
        return o is not None and now - o > self.dead_after
