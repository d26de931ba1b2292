"""PVP messages (DESIGN §5): 4-byte length + JSON framing, strict validation."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vipr.pvp.messages import (
    MAX_MESSAGE,
    ErrorMsg,
    Framer,
    MessageError,
    Validate,
    ValInfo,
    decode_message,
    encode_message,
)

VALINFO = ValInfo("+14085551234", ("sip:127.0.0.1:5061;transport=tls",), "AAAA-_b", 1_800_000_000)
MESSAGES = [Validate("a.example.net", "0000000000000001"), VALINFO, ErrorMsg(403, "denied")]


@pytest.mark.parametrize("msg", MESSAGES)
def test_round_trip(msg: object) -> None:
    raw = encode_message(msg)  # type: ignore[arg-type]
    assert struct.unpack("!I", raw[:4])[0] == len(raw) - 4
    assert Framer().feed(raw) == [msg]


def test_wire_form_of_validate() -> None:
    raw = encode_message(Validate("a.example.net", "00000000000000ff"))
    assert json.loads(raw[4:]) == {
        "type": "validate", "domain": "a.example.net", "vservice": "00000000000000ff"}


def test_framer_byte_by_byte_and_several_in_one_chunk() -> None:
    raw = b"".join(encode_message(m) for m in MESSAGES)
    f = Framer()
    out = []
    for b in raw:
        out += f.feed(bytes([b]))
    assert out == MESSAGES and f.pending == 0
    assert Framer().feed(raw) == MESSAGES


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"type": "validate", "domain": "a.example.net"}, "bad-keys"),
        ({"type": "validate", "domain": "a.example.net", "vservice": "01", "x": 1}, "bad-keys"),
        ({"type": "validate", "domain": "A..net", "vservice": "0000000000000001"}, "bad-field"),
        ({"type": "validate", "domain": "a.net", "vservice": "000000000000000G"}, "bad-field"),
        ({"type": "validate", "domain": 5, "vservice": "0000000000000001"}, "bad-field"),
        ({"type": "valinfo", "number": "+1408", "routes": [], "ticket": "A",
          "ticket_expires": 1}, "bad-field"),
        ({"type": "valinfo", "number": "+1408", "routes": ["http://x"], "ticket": "A",
          "ticket_expires": 1}, "bad-field"),
        ({"type": "valinfo", "number": "1408", "routes": ["sip:x"], "ticket": "A",
          "ticket_expires": 1}, "bad-field"),
        ({"type": "valinfo", "number": "+1408", "routes": ["sip:x"], "ticket": "A=",
          "ticket_expires": 1}, "bad-field"),
        ({"type": "valinfo", "number": "+1408", "routes": ["sip:x"], "ticket": "A",
          "ticket_expires": True}, "bad-field"),
        ({"type": "valinfo", "number": "+1408", "routes": ["sip:x"], "ticket": "A",
          "ticket_expires": 1.5}, "bad-field"),
        ({"type": "error", "code": 99, "reason": "x"}, "bad-field"),
        ({"type": "error", "code": 403}, "bad-keys"),
        ({"type": "hello"}, "bad-type"),
        ([1, 2], "not-object"),
    ],
)
def test_strict_validation(obj: object, reason: str) -> None:
    with pytest.raises(MessageError) as ei:
        decode_message(_body(obj))
    assert ei.value.reason == reason


def test_not_json_and_not_utf8() -> None:
    for body in (b"{", b"\xff\xfe", b"[" * 100000):
        with pytest.raises(MessageError):
            decode_message(body)


def test_oversize_length_is_refused_before_buffering() -> None:
    with pytest.raises(MessageError, match="too-large"):
        Framer().feed(struct.pack("!I", MAX_MESSAGE + 1))


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(MessageError):
        encode_message(ErrorMsg(1000, "x"))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_framer_only_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        Framer().feed(data)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["type", "domain", "vservice", "number", "routes",
                                         "ticket", "ticket_expires", "code", "reason"]),
                       st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(
                           st.text(max_size=10), max_size=3)), max_size=6))
def test_fuzz_objects_only_message_error(obj: dict[str, object]) -> None:
    try:
        msg = decode_message(_body(obj))
    except MessageError:
        return
    assert decode_message(encode_message(msg)[4:]) == msg
