"""SIP message model, parser, serializer, framer: unit tests, round trips and fuzz."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vipr.proxy.sip import (
    URI,
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    quote,
    salvage_request,
)

EXAMPLES = int(os.environ.get("VIPR_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# generating whole messages is slower: fewer examples by default (VIPR_FUZZ_EXAMPLES scales all)
SOME = settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))

SDP = b"v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
INVITE = (
    b"INVITE sip:+14085550100@example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n"
    b"v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKabc;received=192.0.2.9, SIP/2.0/UDP [2001:db8::1]:5070"
    b";branch=z9hG4bKdef\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: Bob <sip:bob@example.com>\r\n"
    b"f: \"Alice A.\" <sip:alice@example.org>;tag=1928301774\r\n"
    b"i: a84b4c76e66710@pc33\r\n"
    b"CSeq:\r\n 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def test_parse_basics() -> None:
    m = parse_message(INVITE, strict=True)
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE" and m.request_uri.user == "+14085550100"
    assert m.request_uri.params == {"user": "phone"}
    assert [v.branch for v in m.vias] == ["z9hG4bK776", "z9hG4bKabc", "z9hG4bKdef"]
    assert m.top_via.wants_rport and m.top_via.rport is None and m.top_via.port == 5060
    assert m.vias[1].received == "192.0.2.9" and m.vias[2].host == "[2001:db8::1]"
    assert m.from_.display_name == "Alice A." and m.from_tag == "1928301774"
    assert m.to.uri.user == "bob" and m.to_tag is None
    assert m.call_id == "a84b4c76e66710@pc33"
    assert (m.cseq.seq, m.cseq.method) == (314159, "INVITE")
    assert m.headers.get("CSEQ") == "314159 INVITE"   # folding unfolded
    rr = [str(r.uri) for r in m.record_routes]
    assert rr == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert m.contacts[0].uri.transport == "udp"
    assert m.body == SDP and m.content_type == "application/sdp"
    assert m.headers.count("via") == 2 and len(m.headers.get_list("Via")) == 3


def test_serialize_keeps_text_and_round_trips() -> None:
    m = parse_message(INVITE)
    out = m.serialize()
    assert b"f: \"Alice A.\" <sip:alice@example.org>;tag=1928301774\r\n" in out
    assert b"l: %d\r\n\r\n" % len(SDP) in out
    assert parse_message(out) == m


def test_proxy_edits() -> None:
    m = parse_message(INVITE)
    m.push_via(Via("UDP", "proxy.example.net", 5060, {"branch": "z9hG4bKp1"}))
    assert m.top_via.host == "proxy.example.net" and len(m.vias) == 4
    assert m.headers.get_all("via")[0] == "SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKp1"
    assert m.pop_via().branch == "z9hG4bKp1"
    assert m.pop_via().branch == "z9hG4bK776"
    assert m.pop_via().branch == "z9hG4bKabc"   # first element of a comma-joined field
    assert [v.branch for v in m.vias] == ["z9hG4bKdef"]
    m.headers.set("Max-Forwards", str((m.max_forwards or 0) - 1))
    assert m.max_forwards == 69
    m.headers.insert("Record-Route", "<sip:me.example.net;lr>")
    assert str(m.record_routes[0].uri) == "sip:me.example.net;lr"
    assert m.headers.remove("record-route") == 2 and m.record_routes == []
    m.body = b""
    again = parse_message(m.serialize())
    assert again.headers.get("content-length") == "0" and again.body == b""


def test_make_response() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    r = make_response(req, 180, to_tag="xyz", headers=[("Contact", "<sip:bob@192.0.2.7>")])
    assert r.status == 180 and r.reason == "Ringing"
    assert r.to_tag == "xyz" and r.from_tag == "1928301774" and r.call_id == req.call_id
    assert [v.branch for v in r.vias] == [v.branch for v in req.vias]
    assert len(r.record_routes) == 2 and r.cseq == req.cseq
    r100 = make_response(req, 100, to_tag="xyz")
    assert r100.to_tag is None and r100.record_routes == []
    back = parse_message(r.serialize(), strict=True)
    assert isinstance(back, SipResponse) and back.serialize() == r.serialize()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", 505),
        (b"SIP/2.0 1000 Big\r\n\r\n", 400),
        (b"SIP/2.0 099 Small\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nabc", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", 400),
        (b"OPTIONS x" * 10000, 513),
    ],
)
def test_errors(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as ei:
        parse_message(data)
    assert ei.value.status == status


def test_lazy_accessors_raise_parse_errors() -> None:
    m = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: garbage\r\nFrom: \"x <sip:a@b>\r\n\r\n")
    for attr in ("vias", "top_via", "from_", "to", "cseq", "call_id"):
        with pytest.raises(SipParseError):
            getattr(m, attr)
    with pytest.raises(SipParseError):
        m.validate()


def test_udp_body_rules() -> None:
    # RFC 3261 §18.3: extra bytes after Content-Length are dropped; absent = to the end
    m = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nabcdef")
    assert m.body == b"ab"
    m = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\n\r\nabcdef")
    assert m.body == b"abcdef"
    m = parse_message(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nX: 1")   # leading CRLF, no blank line
    assert m.headers.get("x") == "1" and m.body == b""


def test_uri_and_name_addr() -> None:
    u = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=hi&x=y", strict=True)
    parts = (u.scheme, u.user, u.password, u.host, u.port)
    assert parts == ("sips", "alice", "pw", "[2001:db8::1]", 5061)
    assert u.address == "2001:db8::1" and u.params == {"transport": "tcp", "lr": None}
    assert u.headers == "subject=hi&x=y" and parse_uri(str(u)) == u
    t = parse_uri("tel:+1-408-555-0100;phone-context=example.com", strict=True)
    assert t.user == "+1-408-555-0100" and str(t) == "tel:+1-408-555-0100;phone-context=example.com"
    o = parse_uri("urn:service:sos")
    assert o.opaque == "service:sos" and str(o) == "urn:service:sos"
    for bad in ("nocolon", "sip:", "sip:a@b:99999", "sip:a@[::1", "sip:a@b:x", "sip:<a>"):
        with pytest.raises(SipParseError):
            parse_uri(bad, strict=True)
    na = parse_name_addr('"A \\"q\\"" <sip:a@b;lr>;tag=1;x')
    assert na.display_name == 'A "q"' and na.tag == "1" and na.params["x"] is None
    assert parse_name_addr(str(na)) == na
    assert parse_name_addr("sip:a@b;tag=2").params == {"tag": "2"}
    assert str(NameAddr(URI("sip", user="a", host="b"))) == "<sip:a@b>"


# --- hypothesis: round trips ---

TOKEN_CH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CH, min_size=1, max_size=12)
words = st.text(TOKEN_CH + "@:/", min_size=1, max_size=20)
hosts = st.one_of(
    st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
             min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
ports = st.none() | st.integers(1, 65535)
users = st.text("abcdefghijklmnopqrstuvwxyz0123456789+-_.!~*'()&=$", min_size=1, max_size=16)
pvals = st.none() | st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=10)
param_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
params = st.dictionaries(param_names, pvals, max_size=3)
uris = st.builds(lambda s, u, h, p, pr: URI(s, user=u, host=h, port=p, params=pr),
                 st.sampled_from(["sip", "sips"]), st.none() | users, hosts, ports, params)
vias = st.builds(lambda t, h, p, pr, b: Via(t, h, p, {"branch": "z9hG4bK" + b, **pr}),
                 st.sampled_from(["UDP", "TCP", "TLS"]), hosts, ports, params, tokens)
displays = st.none() | tokens | st.text(min_size=0, max_size=12).map(
    lambda s: quote(s.replace("\r", "").replace("\n", "")))
name_addrs = st.builds(NameAddr, uris, displays, params)
values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(
    lambda s: s.strip(" \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u3000"))
ext_headers = st.lists(st.tuples(tokens.map(lambda t: "X-" + t), values), max_size=4)
bodies = st.binary(max_size=200)


@st.composite
def messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    h = Headers()
    for v in draw(st.lists(vias, min_size=1, max_size=3)):
        h.add("Via", str(v))
    h.add(draw(st.sampled_from(["From", "f"])), str(draw(name_addrs)))
    h.add(draw(st.sampled_from(["To", "t"])), str(draw(name_addrs)))
    h.add("Call-ID", draw(words))
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS"]) | tokens)
    h.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    h.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for n, v in draw(ext_headers):
        h.add(n, v)
    body = draw(bodies)
    h.add("Content-Length", str(len(body)))
    if draw(st.booleans()):
        return SipRequest(method, draw(uris), h, body)
    reason = draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
    return SipResponse(draw(st.integers(100, 699)), reason, h, body)


@SOME
@given(messages())
def test_round_trip(m: SipRequest | SipResponse) -> None:
    data = m.serialize()
    back = parse_message(data, strict=True)
    assert back == m
    assert back.serialize() == data
    assert [str(v) for v in back.vias] == [str(v) for v in m.vias]
    assert back.from_tag == parse_name_addr(back.headers.get("from") or "").tag
    assert back.to_tag == parse_name_addr(back.headers.get("to") or "").tag


@SOME
@given(vias, name_addrs)
def test_value_round_trips(v: Via, na: NameAddr) -> None:
    assert parse_via(str(v), strict=True) == v
    assert parse_name_addr(str(na), strict=True) == na


# --- fuzz: only SipParseError, whatever the input ---

def _exercise(data: bytes) -> None:
    salvaged = salvage_request(data)   # never raises
    assert salvaged is None or isinstance(salvaged, SipRequest)
    for strict in (False, True):
        try:
            m = parse_message(data, strict=strict)
        except SipParseError:
            continue
        for attr in ("vias", "top_via", "from_", "to", "cseq", "call_id", "contacts", "routes",
                     "record_routes", "max_forwards", "contact_is_star"):
            with contextlib.suppress(SipParseError):
                getattr(m, attr)
        with contextlib.suppress(SipParseError):
            m.validate()
        if isinstance(m, SipRequest):
            with contextlib.suppress(SipParseError):
                m.request_uri  # noqa: B018
        with contextlib.suppress(SipParseError):
            parse_message(m.serialize())


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _exercise(data)
    _exercise(b"INVITE sip:a@b SIP/2.0\r\n" + data)


@FUZZ
@given(st.randoms(use_true_random=False), st.integers(1, 8))
def test_fuzz_mutations(rnd: random.Random, n: int) -> None:
    data = bytearray(INVITE)
    alphabet = b" \t\r\n:;,<>\"\\@[]=%/0123456789aZz\x00\xff"
    for _ in range(n):
        op = rnd.randrange(3)
        i = rnd.randrange(len(data))
        if op == 0:
            data[i] = rnd.choice(alphabet)
        elif op == 1:
            data.insert(i, rnd.choice(alphabet))
        else:
            del data[i]
    _exercise(bytes(data))


# --- stream framing ---

def test_framer_splits_and_pings() -> None:
    msg = parse_message(INVITE).serialize()
    stream = b"\r\n\r\n" + msg + b"\r\n" + msg + b"\r\n\r\n"
    f = StreamFramer()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += f.feed(stream[i : i + 1])
    assert got == [msg, msg] and f.take_pings() == 2 and f.buffered == 0
    assert f.feed(stream) == [msg, msg]


def test_framer_error_after_good_message() -> None:
    good = parse_message(INVITE).serialize()
    f = StreamFramer()
    assert f.feed(good + b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n") == [good]
    assert f.error is not None and "Content-Length" in f.error.reason
    with pytest.raises(SipParseError):
        f.feed(good)


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\n\r\n",                      # no Content-Length
        b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999\r\n\r\n",                  # over max_size
        b"A" * 70000,                                                     # endless header
    ],
)
def test_framer_errors(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


WIRE = [
    parse_message(INVITE).serialize(),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n",
    # a body holding blank lines and a fake message: only Content-Length frames it
    b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 36\r\n\r\n"
    b"\r\n\r\nINVITE sip:x@y SIP/2.0\r\nl: 0\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\nl:   3  \r\n\r\nabc",
]


@FUZZ
@given(st.lists(st.sampled_from(WIRE), min_size=1, max_size=5),
       st.lists(st.integers(1, 120), min_size=1, max_size=40))
def test_framer_chunking(wire: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(wire)
    f = StreamFramer()
    got: list[bytes] = []
    i = 0
    for n in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        if i >= len(stream):
            break
        got += f.feed(stream[i : i + n])
        i += n
    assert got == wire and f.buffered == 0


@FUZZ
@given(st.binary(max_size=400))
def test_framer_fuzz(data: bytes) -> None:
    f = StreamFramer(max_size=4096)
    try:
        for raw in f.feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + data):
            _exercise(raw)
    except SipParseError:
        pass


HOSTILE_N = 60000
HOSTILE = [
    b"OPTIONS sip:a@b SIP/2.0\r\nX: a" + b"\r\n b" * (HOSTILE_N // 4) + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nl:" + b" " * HOSTILE_N + b"x\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP " + b"a" * HOSTILE_N + b" x\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b";a" * (HOSTILE_N // 2) + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b",SIP/2.0/UDP h" * 4000 + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nFrom: \"" + b"\\\"" * (HOSTILE_N // 2) + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nRoute: " + b"<" * HOSTILE_N + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X:\r\n" * (HOSTILE_N // 4) + b"\r\n",
    b"OPTIONS sip:" + b"a" * HOSTILE_N + b"@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nTo: a" + b" " * HOSTILE_N + b"!<sip:a@b>\r\n\r\n",
]


@pytest.mark.timeout(60)
def test_hostile_inputs_stay_linear() -> None:
    """Inputs that make naive parsers quadratic (h11's promise: linear time, bounded
    memory). The timeout is a guard, not a measurement: each case takes milliseconds."""
    for data in HOSTILE:
        _exercise(data)
        with contextlib.suppress(SipParseError):
            parse_message(data, max_size=10**6, strict=True)
        with contextlib.suppress(SipParseError):
            StreamFramer(max_size=10**6).feed(data)


def test_framer_refuses_a_huge_content_length_at_once_and_keeps_the_head() -> None:
    """DESIGN §10: the body of an oversized message is never awaited or buffered."""
    head = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 999999999\r\n\r\n"
    f = StreamFramer(max_size=4000)
    with pytest.raises(SipParseError) as err:
        f.feed(head + b"body")
    assert err.value.status == 513 and f.rejected_head == head and f.buffered == 0


def test_framer_buffer_stays_bounded_without_an_empty_line() -> None:
    f = StreamFramer(max_size=4000)
    peak = 0
    with pytest.raises(SipParseError) as err:
        f.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
        for _ in range(10_000):
            f.feed(b"X-A: b\r\n")
            peak = max(peak, f.buffered)
    assert err.value.status == 513 and peak <= 4000 and f.rejected_head is None


def test_framer_waits_for_a_body_byte_by_byte() -> None:
    msg = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 300\r\n\r\n" + b"\r\n\r\n" * 75
    f = StreamFramer(max_size=4000)
    got: list[bytes] = []
    for i in range(len(msg)):
        got += f.feed(msg[i : i + 1])
    assert got == [msg] and f.buffered == 0 and f.take_pings() == 0
