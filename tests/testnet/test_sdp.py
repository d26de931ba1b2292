"""SDP narrowing (the PSTN), phone offers and answers: pure functions."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipr.testnet.sdp import (
    SdpError,
    answer_for,
    narrowband_answer,
    narrowband_offer,
    parse_sdp,
    phone_offer,
    summarize,
)

OFFER = phone_offer("192.0.2.1")


def test_phone_offer_is_wideband_with_video() -> None:
    s = summarize(OFFER)
    assert s.audio[:4] == ("OPUS", "G722", "PCMU", "PCMA")
    assert s.video and s.wideband and not s.narrowband_only


def test_narrowband_offer_keeps_only_g711_audio() -> None:
    nb, kept = narrowband_offer(OFFER)
    sdp = parse_sdp(nb)
    assert kept == [0]
    assert [m.kind for m in sdp.media] == ["audio"]
    assert sdp.media[0].formats == ["0", "8"]
    text = nb.decode()
    assert "opus" not in text and "G722" not in text and "H264" not in text
    assert "a=rtpmap:0 PCMU/8000" in text and "a=rtpmap:8 PCMA/8000" in text
    assert "a=fmtp:111" not in text and "a=fmtp:101" not in text
    assert summarize(nb).narrowband_only


def test_narrowband_offer_static_payload_types_without_rtpmap() -> None:
    offer = ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n"
             "m=audio 4000 RTP/AVP 9 8 0\r\n")
    nb, _ = narrowband_offer(offer)
    assert parse_sdp(nb).media[0].formats == ["8", "0"]


def test_narrowband_offer_without_g711_is_refused() -> None:
    offer = ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n"
             "m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
             "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    with pytest.raises(SdpError):
        narrowband_offer(offer)


def test_narrowband_answer_has_one_mline_per_offered_mline() -> None:
    nb, kept = narrowband_offer(OFFER)
    callee_answer = answer_for(nb, "198.51.100.7")
    ans = narrowband_answer(callee_answer, OFFER, kept)
    sdp = parse_sdp(ans)
    assert [(m.kind, m.port != 0) for m in sdp.media] == [("audio", True), ("video", False)]
    s = summarize(ans)
    assert s.audio == ("PCMU", "PCMA") and not s.video and not s.wideband


def test_narrowband_answer_strips_a_wideband_answer_too() -> None:
    # a callee that answers with codecs it was never offered still gets narrowed
    ans = narrowband_answer(answer_for(OFFER, "h"), OFFER, [0])
    assert summarize(ans).audio == ("PCMU", "PCMA")


def test_direct_answer_keeps_wideband_and_video() -> None:
    s = summarize(answer_for(OFFER, "198.51.100.7"))
    assert s.audio[0] == "OPUS" and s.video and s.wideband
    assert str(s) == "opus,g722,pcmu,pcma + video"


def test_answer_declines_unknown_media() -> None:
    offer = ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n"
             "m=audio 4000 RTP/AVP 0\r\nm=application 5000 UDP/BFCP *\r\n")
    sdp = parse_sdp(answer_for(offer, "h"))
    assert [m.port != 0 for m in sdp.media] == [True, False]


@pytest.mark.parametrize("bad", [b"", b"hello", b"v=0\r\nm=audio x RTP/AVP 0\r\n",
                                 b"v=0\r\nbadline\r\n"])
def test_garbage_is_an_sdp_error(bad: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(bad)


# ---------------------------------------------------------------------- properties / fuzz

_tok = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./:", min_size=1, max_size=12)
_attr = st.builds(lambda k, v: f"a={k}:{v}", _tok, _tok)
_media = st.builds(
    lambda kind, port, fmts, attrs: [f"m={kind} {port} RTP/AVP {' '.join(fmts)}", *attrs],
    st.sampled_from(["audio", "video", "application"]), st.integers(0, 65535),
    st.lists(st.sampled_from(["0", "8", "9", "18", "96", "101", "111"]), min_size=1,
             max_size=5, unique=True),
    st.lists(_attr, max_size=4))


@given(st.lists(_media, max_size=4))
def test_parse_serialize_round_trip(media: list[list[str]]) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    for m in media:
        lines += m
    text = "\r\n".join(lines) + "\r\n"
    sdp = parse_sdp(text)
    assert sdp.serialize().decode() == text
    assert parse_sdp(sdp.serialize()) == sdp


@given(st.lists(_media, min_size=1, max_size=4))
def test_narrowing_any_offer_leaves_only_g711(media: list[list[str]]) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", *(ln for m in media for ln in m)]
    text = "\r\n".join(lines) + "\r\n"
    try:
        nb, kept = narrowband_offer(text)
    except SdpError:
        return
    s = summarize(nb)
    assert s.audio and set(s.audio) <= {"PCMU", "PCMA"} and not s.video
    ans = narrowband_answer(answer_for(nb, "h"), text, kept)
    assert len(parse_sdp(ans).media) == len(parse_sdp(text).media)   # RFC 3264 §6
    assert set(summarize(ans).audio) <= {"PCMU", "PCMA"}


@given(st.binary(max_size=300))
def test_garbage_never_crashes(data: bytes) -> None:
    for fn in (parse_sdp, summarize, narrowband_offer):
        with contextlib.suppress(SdpError):
            fn(data)  # type: ignore[operator]
