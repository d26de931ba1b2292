"""RFC 4475 / RFC 5118 torture corpus: valid parses (key fields asserted), invalid rejected."""

from __future__ import annotations

import contextlib
import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from vipr.proxy.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
    unescape,
)

# The corpus is test data inside the repository (NOTICE.md there keeps the IETF notice); it is
# never optional: a missing or altered corpus fails collection or test_corpus_is_intact.
CORPUS = Path(__file__).parent / "vectors" / "sip-torture"


def _index() -> list[dict[str, str]]:
    with open(CORPUS / "INDEX.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _index()
# Archive quirks (INDEX.tsv): published Content-Length exceeds the body actually present.
CL_QUIRKS = {"4.6_ipv6-in-sdp.dat", "4.8_mult-ip-in-sdp.dat"}
# RFC 4475 §3.3 cases that a strict receiver rejects (400) at the message layer.
STRICT_REJECTS = {"3.3.1_insuf.dat", "3.3.8_multi01.dat", "3.3.9_mcl01.dat"}


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def req(name: str) -> SipRequest:
    m = parse_message(load(name), strict=True)
    assert isinstance(m, SipRequest)
    return m


def _wsinv() -> None:
    m = req("3.1.1.1_wsinv.dat")
    assert m.method == "INVITE" and m.request_uri.params == {"unknownparam": None}
    assert m.to.tag == "1918181833n" and m.from_tag == "98asjd8"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.max_forwards == 68 and m.cseq.seq == 9 and m.cseq.method == "INVITE"
    assert [v.branch for v in m.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [v.transport for v in m.vias] == ["UDP", "TCP", "UDP"]
    assert m.headers.get("subject") == ""
    assert m.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.contacts[0].params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.routes[0].uri.params["unknownwith"] == "value"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def _intmeth() -> None:
    m = req("3.1.1.2_intmeth.dat")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    u = m.request_uri
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)" and u.host == "example.com"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def _esc01() -> None:
    m = req("3.1.1.3_esc01.dat")
    assert unescape(m.request_uri.user or "") == "sips:user@example.com"
    assert unescape(m.to.uri.user or "") == "user"
    assert unescape(m.from_.uri.user or "") == "I have spaces"
    c = m.contacts[0].uri
    assert unescape(c.user or "") == "caller"
    assert unescape(c.params["n%61me"] or "") == "value%41"   # unescaped once only
    assert "%6c%72" in c.params


def _escnull() -> None:
    m = req("3.1.1.4_escnull.dat")
    users = [unescape(c.uri.user or "") for c in m.contacts]
    assert users == ["\x00", "\x00\x00"]
    assert unescape(m.to.uri.user or "") == "null-\x00-null"


def _esc02() -> None:
    m = req("3.1.1.5_esc02.dat")
    assert m.method == "RE%47IST%45R" and m.method != "REGISTER"
    assert m.to.display_name == "%Z%45"
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def _lwsdisp() -> None:
    m = req("3.1.1.6_lwsdisp.dat")
    assert m.from_.display == "caller" and m.from_.uri.user == "caller" and m.from_tag == "323"


def _longreq() -> None:
    m = req("3.1.1.7_longreq.dat")
    assert len(m.vias) == 34 and all(v.host for v in m.vias)
    assert len(m.from_tag or "") > 100 and len(m.call_id) > 100
    assert m.headers.get("content-length") == str(len(m.body))


def _dblreq() -> None:
    m = req("3.1.1.8_dblreq.dat")
    assert m.method == "REGISTER" and m.body == b""


def _semiuri() -> None:
    m = req("3.1.1.9_semiuri.dat")
    u = m.request_uri
    assert u.user == "user;par=u%40example.net" and u.host == "example.com" and u.params == {}
    assert len(m.headers.get_list("accept")) == 6


def _transports() -> None:
    m = req("3.1.1.10_transports.dat")
    assert sorted(v.transport for v in m.vias) == ["SCTP", "TCP", "TLS", "UDP", "UNKNOWN"]


def _mpart01() -> None:
    m = req("3.1.1.11_mpart01.dat")
    assert m.method == "MESSAGE" and len(m.body) == int(m.headers.get("l") or -1)
    assert b"\x00" in m.body or b"\r" in m.body
    assert (m.content_type or "").startswith("multipart/mixed")


def _unreason() -> None:
    m = parse_message(load("3.1.1.12_unreason.dat"), strict=True)
    assert isinstance(m, SipResponse) and m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def _noreason() -> None:
    m = parse_message(load("3.1.1.13_noreason.dat"), strict=True)
    assert isinstance(m, SipResponse) and m.status == 100 and m.reason == ""


def _inv2543() -> None:
    m = req("3.4.1_inv2543.dat")
    assert m.top_via.branch is None and m.from_tag is None and m.max_forwards is None
    assert "content-length" not in m.headers and m.body.startswith(b"v=0")


def _ipv6(name: str, host: str, port: int | None, via: tuple[str, int | None, str | None]) -> None:
    m = req(name)
    u = m.request_uri
    assert (u.host, u.port) == (host, port)
    v = m.vias[0]
    assert (v.host, v.port, v.received) == via


VALID_CHECKS: dict[str, Callable[[], None]] = {
    "3.1.1.1_wsinv.dat": _wsinv,
    "3.1.1.2_intmeth.dat": _intmeth,
    "3.1.1.3_esc01.dat": _esc01,
    "3.1.1.4_escnull.dat": _escnull,
    "3.1.1.5_esc02.dat": _esc02,
    "3.1.1.6_lwsdisp.dat": _lwsdisp,
    "3.1.1.7_longreq.dat": _longreq,
    "3.1.1.8_dblreq.dat": _dblreq,
    "3.1.1.9_semiuri.dat": _semiuri,
    "3.1.1.10_transports.dat": _transports,
    "3.1.1.11_mpart01.dat": _mpart01,
    "3.1.1.12_unreason.dat": _unreason,
    "3.1.1.13_noreason.dat": _noreason,
    "3.4.1_inv2543.dat": _inv2543,
    "4.1_ipv6-good.dat": lambda: _ipv6(
        "4.1_ipv6-good.dat", "[2001:db8::10]", None, ("[2001:db8::9:1]", None, None)),
    "4.4_port-unambiguous.dat": lambda: _ipv6(
        "4.4_port-unambiguous.dat", "[2001:db8::10]", 5070, ("[2001:db8::9:1]", None, None)),
    "4.5_via-received-param-with-delim.dat": lambda: _ipv6(
        "4.5_via-received-param-with-delim.dat", "[2001:db8::10]", None,
        ("[2001:db8::9:1]", None, "[2001:db8::9:255]")),
    "4.5_via-received-param-no-delim.dat": lambda: _ipv6(
        "4.5_via-received-param-no-delim.dat", "[2001:db8::10]", None,
        ("[2001:db8::9:1]", None, "2001:db8::9:255")),
    "4.7_mult-ip-in-header.dat": lambda: _ipv6(
        "4.7_mult-ip-in-header.dat", "host.example.net", None, ("[2001:db8::9:1]", 6050, None)),
    "4.9_ipv4-mapped-ipv6.dat": lambda: _ipv6(
        "4.9_ipv4-mapped-ipv6.dat", "example.com", None, ("[::ffff:192.0.2.10]", 19823, None)),
    "4.10_ipv6-bug-abnf-3-colons.dat": lambda: _ipv6(
        "4.10_ipv6-bug-abnf-3-colons.dat", "[2001:db8:::192.0.2.1]", None,
        ("lab1.east.example.com", None, None)),
    "4.10_ipv6-correct-abnf-2-colons.dat": lambda: _ipv6(
        "4.10_ipv6-correct-abnf-2-colons.dat", "[2001:db8::192.0.2.1]", None,
        ("lab1.east.example.com", None, None)),
}


def test_corpus_is_intact() -> None:
    """Every file byte for byte as committed (a line-ending conversion would change them)."""
    sums = {}
    for line in (CORPUS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    assert len(sums) == 63 and {r["file"] for r in ROWS} <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name


def test_corpus_is_complete() -> None:
    assert len(ROWS) == 62
    valid = {r["file"] for r in ROWS if r["expectation"] == "valid"} - CL_QUIRKS
    assert valid == set(VALID_CHECKS)


def _views(m: SipRequest | SipResponse) -> dict[str, object]:
    """Every field a layer above reads; a view that does not parse is kept as its error."""
    # serialize() writes Content-Length from the body (RFC 3261 §20.14): the body is compared
    headers = [(n, v) for n, v in m.headers if n.lower() not in ("content-length", "l")]
    out: dict[str, object] = {"version": m.version, "headers": headers, "body": m.body}
    if isinstance(m, SipRequest):
        out.update(method=m.method, uri=m.uri)
    else:
        out.update(status=m.status, reason=m.reason)
    views: dict[str, Callable[[], object]] = {
        "request_uri": lambda: m.request_uri if isinstance(m, SipRequest) else None,
        "call_id": lambda: m.call_id, "cseq": lambda: m.cseq, "from": lambda: m.from_,
        "to": lambda: m.to, "vias": lambda: m.vias, "contacts": lambda: m.contacts,
        "routes": lambda: m.routes, "max_forwards": lambda: m.max_forwards,
        "content_type": lambda: m.content_type,
    }
    for name, view in views.items():
        try:
            out[name] = view()
        except SipParseError as exc:
            out[name] = ("SipParseError", str(exc))
    return out


def assert_same_fields(again: object, original: object) -> None:
    """`again` (parsed from `original.serialize()`) carries the original parse field by field."""
    assert isinstance(original, (SipRequest, SipResponse)) and type(again) is type(original)
    a, o = _views(again), _views(original)
    for name in o:
        assert a[name] == o[name], name


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_torture(row: dict[str, str]) -> None:
    name, expect = row["file"], row["expectation"]
    data = load(name)
    if name in CL_QUIRKS:
        # The RFC 5118 archive's Content-Length exceeds the body (INDEX.tsv): a datagram
        # with a short body is rejected (RFC 3261 §18.3); with the length fixed it parses.
        with pytest.raises(SipParseError, match="Content-Length"):
            parse_message(data)
        head, _, body = data.partition(b"\n\n")
        lines = [ln for ln in head.split(b"\n") if not ln.lower().startswith(b"content-length")]
        fixed = b"\n".join([*lines, b"Content-Length: %d" % len(body)]) + b"\n\n" + body
        m = parse_message(fixed, strict=True)
        assert isinstance(m, SipRequest) and m.method == "INVITE" and m.body == body
        assert m.vias[0].host.startswith("[")
        return
    if expect == "valid":
        VALID_CHECKS[name]()
        m = parse_message(data)
        # serializing and parsing again gives the same message
        assert parse_message(m.serialize(), strict=True).serialize() == m.serialize()
        assert_same_fields(parse_message(m.serialize()), m)
        if b"\r\n\r\n" in data and "content-length" in m.headers:
            # over a stream, the framer cuts the same message out (RFC 3261 §18.3)
            framed = StreamFramer().feed(data)
            assert framed and parse_message(framed[0]) == m
    elif expect == "invalid":
        with pytest.raises(SipParseError) as ei:
            parse_message(data, strict=True)
        assert ei.value.status in (400, 505)
        if name == "3.1.2.16_badvers.dat":
            assert ei.value.status == 505
    else:
        assert expect == "valid-but-semantically-wrong"
        if name in STRICT_REJECTS:
            with pytest.raises(SipParseError):
                parse_message(data, strict=True)
        else:
            m = parse_message(data, strict=True)
            assert_same_fields(parse_message(m.serialize(), strict=True), m)
        if name == "3.3.9_mcl01.dat":
            with pytest.raises(SipParseError, match="Content-Length"):
                parse_message(data)


def test_semantic_details() -> None:
    """Fields the layers above need for the RFC 4475 §3.2/§3.3 cases."""
    assert req("3.2.1_badbranch.dat").top_via.branch == "z9hG4bK"
    assert req("3.3.2_unkscm.dat").request_uri.scheme == "nobodyknowsthisscheme"
    assert req("3.3.11_zeromf.dat").max_forwards == 0
    c = req("3.3.12_cparam01.dat").contacts[0]
    assert c.params == {"unknownparam": None} and c.uri.params == {}
    c = req("3.3.13_cparam02.dat").contacts[0]
    assert c.params == {} and "unknownparam" in c.uri.params
    c = req("3.3.14_regescrt.dat").contacts[0]
    assert c.uri.headers == "Route=%3Csip:sip.example.com%3E"
    m = req("3.3.4_unksm2.dat")
    assert m.to.uri.scheme == "isbn" and m.contacts[0].uri.scheme == "name"
    bc = parse_message(load("3.3.10_bcast.dat"), strict=True)
    assert bc.vias[1].host == "255.255.255.255"
    amb = req("4.3_port-ambiguous.dat").request_uri
    assert amb.host == "[2001:db8::10:5070]" and amb.port is None
    nov = req("3.3.3_novelsc.dat")
    assert nov.request_uri.scheme == "soap.beep" and nov.cseq.seq == 3923423
    bext = req("3.3.5_bext01.dat")
    assert bext.headers.get("require") == "nothingSupportsThis, nothingSupportsThisEither"
    assert bext.headers.get("proxy-require") == (
        "noProxiesSupportThis, norDoAnyProxiesSupportThis")
    invut = req("3.3.6_invut.dat")
    assert invut.content_type == "application/unknownformat" and len(invut.body) == 40
    reg = req("3.3.7_regaut01.dat")
    assert reg.method == "REGISTER"
    assert reg.headers.get("authorization") == "NoOneKnowsThisScheme opaque-data=here"
    sdp = req("3.3.15_sdp01.dat")
    assert sdp.headers.get("accept") == "text/nobodyKnowsThis"
    assert sdp.content_type == "application/sdp" and len(sdp.body) == 150


def test_nothing_crashes_on_truncations() -> None:
    """Every prefix of every corpus message parses or raises SipParseError."""
    for row in ROWS:
        data = load(row["file"])
        for cut in range(0, len(data), 7):
            for strict in (False, True):
                with contextlib.suppress(SipParseError):
                    parse_message(data[:cut], strict=strict)
