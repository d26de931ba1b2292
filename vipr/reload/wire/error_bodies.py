"""Error answers: the §14.9 error codes and the ErrorResponse body (RFC 6940 §6.3.3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from vipr.reload.wire.codec import Reader, Writer


class ErrorCode(IntEnum):
    """§14.9 error codes."""

    FORBIDDEN = 0x02
    NOT_FOUND = 0x03
    REQUEST_TIMEOUT = 0x04
    GENERATION_COUNTER_TOO_LOW = 0x05
    INCOMPATIBLE_WITH_OVERLAY = 0x06
    UNSUPPORTED_FORWARDING_OPTION = 0x07
    DATA_TOO_LARGE = 0x08
    DATA_TOO_OLD = 0x09
    TTL_EXCEEDED = 0x0A
    MESSAGE_TOO_LARGE = 0x0B
    UNKNOWN_KIND = 0x0C
    UNKNOWN_EXTENSION = 0x0D
    RESPONSE_TOO_LARGE = 0x0E
    CONFIG_TOO_OLD = 0x0F
    CONFIG_TOO_NEW = 0x10
    IN_PROGRESS = 0x11
    EXP_A = 0x12
    EXP_B = 0x13
    INVALID_MESSAGE = 0x14


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """§6.3.3.1 ErrorResponse: error_code u16, error_info opaque<0..2^16-1>."""

    error_code: int
    error_info: bytes = b""

    def encode(self) -> bytes:
        return Writer().u16(self.error_code).opaque(2, self.error_info).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ErrorResponse:
        r = Reader(data)
        v = cls(r.u16(), r.opaque(2))
        r.done("ErrorResponse")
        return v

    @classmethod
    def text(cls, code: int, reason: str) -> ErrorResponse:
        """Error with a UTF-8 reason phrase (the default error_info form)."""
        return cls(code, reason.encode("utf-8")[:0xFFFF])

    @classmethod
    def unknown_kinds(cls, kinds: tuple[int, ...]) -> ErrorResponse:
        """§6.3.3.1: Error_Unknown_Kind carries `KindId unknown_kinds<0..2^8-1>` (binary)."""
        kw = Writer()
        for k in kinds:
            kw.u32(k)
        return cls(ErrorCode.UNKNOWN_KIND, Writer().opaque(1, kw.getvalue()).getvalue())

    def decode_unknown_kinds(self) -> tuple[int, ...]:
        r = Reader(self.error_info)
        kr = r.sub(1)
        r.done("unknown_kinds")
        out = []
        while kr.remaining():
            out.append(kr.u32())
        return tuple(out)

    def info_text(self) -> str:
        return self.error_info.decode("utf-8", "replace")
