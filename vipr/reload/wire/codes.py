"""RELOAD message codes (RFC 6940 §14.8)."""

from __future__ import annotations

from enum import IntEnum


class MessageCode(IntEnum):
    """§14.8 message codes: requests are odd, answers request+1, 0xFFFF error."""

    PROBE_REQ = 0x01
    PROBE_ANS = 0x02
    ATTACH_REQ = 0x03
    ATTACH_ANS = 0x04
    STORE_REQ = 0x07
    STORE_ANS = 0x08
    FETCH_REQ = 0x09
    FETCH_ANS = 0x0A
    FIND_REQ = 0x0D
    FIND_ANS = 0x0E
    JOIN_REQ = 0x0F
    JOIN_ANS = 0x10
    LEAVE_REQ = 0x11
    LEAVE_ANS = 0x12
    UPDATE_REQ = 0x13
    UPDATE_ANS = 0x14
    ROUTE_QUERY_REQ = 0x15
    ROUTE_QUERY_ANS = 0x16
    PING_REQ = 0x17
    PING_ANS = 0x18
    STAT_REQ = 0x19
    STAT_ANS = 0x1A
    APP_ATTACH_REQ = 0x1D
    APP_ATTACH_ANS = 0x1E
    CONFIG_UPDATE_REQ = 0x21
    CONFIG_UPDATE_ANS = 0x22
    ERROR = 0xFFFF
