"""Pure cores of the proxy: routing decision, route cache, admission order, call tracking,
request rewriting."""

from __future__ import annotations

import os

import pytest

from vipr.e164 import NumberSet
from vipr.proxy.admission import admit, ticket_header
from vipr.proxy.calls import CallTracker
from vipr.proxy.forward import ack_and_bye, prepare_request, stateless_branch, strip_own_routes
from vipr.proxy.legs import Dialog, DialogTextError, Leg, dialog_from_text, dialog_text
from vipr.proxy.routing import RouteCache, decide, number_of, route_state
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse
from vipr.store.models import Route, TicketKey
from vipr.tickets import TicketVerifier, mint_ticket

NOW = 1_800_000_000.0
DAY = 86400.0
OURS = NumberSet(["+14085551234", "+1408555[0000-0999]"])


def _route(number: str = "+442071234567", days_left: float = 80, failures: int = 0) -> Route:
    return Route(number=number, routes=("sip:127.0.0.1:5161;transport=tls",), ticket="T",
                 ticket_expires=NOW + days_left * DAY, expires=NOW + days_left * DAY,
                 learned_from_node="00" * 16, learned_from_domain="b.example.org",
                 validated_at=NOW - DAY, failures=failures)


def test_number_of_request_uris() -> None:
    assert number_of("sip:+14085551234@a.example.net;user=phone") == "+14085551234"
    assert number_of("tel:+1-408-555-1234") == "+14085551234"
    assert number_of("sip:%2B14085551234@x") == "+14085551234"
    assert number_of("sip:alice@x") is None
    assert number_of("mailto:a@b") is None


def test_decide_matrix() -> None:
    cache = RouteCache([_route(), _route("+33140000000", days_left=10),
                        _route("+33140000001", days_left=-1)])
    d = decide("internal", "sip:+14085550007@a", OURS, cache, NOW, 30 * DAY)
    assert (d.kind, d.reason) == ("internal", "our-number")
    d = decide("internal", "sip:+442071234567@a", OURS, cache, NOW, 30 * DAY)
    assert (d.kind, d.route) == ("federation", _route())
    assert decide("internal", "sip:+33140000000@a", OURS, cache, NOW, 30 * DAY).reason \
        == "renewal"
    assert decide("internal", "sip:+33140000001@a", OURS, cache, NOW, 30 * DAY).reason \
        == "expired"
    assert decide("internal", "sip:+4915112345678@a", OURS, cache, NOW, 30 * DAY).reason \
        == "no-route"
    assert decide("internal", "sip:bob@a", OURS, cache, NOW, 30 * DAY).kind == "pstn"
    assert decide("pstn", "sip:+14085551234@a", OURS, cache, NOW, 30 * DAY).kind == "internal"
    assert decide("federation", "sip:+14085551234@a", OURS, cache, NOW, 30 * DAY).kind \
        == "admission"


def test_route_cache_failures_drop_at_three() -> None:
    cache = RouteCache([_route()])
    assert not cache.record_failure("+442071234567")
    assert not cache.record_failure("+442071234567")
    assert cache.record_failure("+442071234567")
    assert "+442071234567" not in cache
    assert route_state(None, NOW, DAY) == "no-route"


def _key(epoch: int = 1) -> TicketKey:
    return TicketKey(epoch=epoch, secret=os.urandom(32), created=NOW, retired=None)


def test_admission_checks_transport_first_then_ticket() -> None:
    key = _key()
    v = TicketVerifier([key])
    tok = mint_ticket(key, "+442071234567", "a.example.net", NOW, 90 * DAY)
    kw = {"number": "+442071234567", "now": NOW + 1}
    assert admit(v, token=tok, transport="tcp", tls_verified=False, peer_dns_names=(),
                 **kw).reason == "not-tls"   # type: ignore[arg-type]
    ok = admit(v, token=tok, transport="tls", tls_verified=True,
               peer_dns_names=("x.example", "A.example.net"), **kw)  # type: ignore[arg-type]
    assert ok.ok and ok.peer_domain == "a.example.net"
    bad = admit(v, token=tok, transport="tls", tls_verified=True,
                peer_dns_names=("c.example.com",), **kw)  # type: ignore[arg-type]
    assert (bad.ok, bad.reason) == (False, "domain-mismatch")
    assert admit(v, token=None, transport="tls", tls_verified=True,
                 peer_dns_names=("a.example.net",), **kw).reason == "missing"  # type: ignore[arg-type]


def test_ticket_header_prefers_vipr_then_cisco() -> None:
    h = Headers([("X-Cisco-ViPR-Ticket", "c")])
    assert ticket_header(h.get) == "c"
    h.add("VIPR-Ticket", "v")
    assert ticket_header(h.get) == "v"


def test_call_tracker_vcr_only_for_answered_pstn_calls() -> None:
    t = CallTracker()
    t.started("c1", "+1", "+2", NOW)
    t.set_direction("c1", "originating")
    assert t.answered("c1", NOW + 1) and not t.answered("c1", NOW + 2)
    v = t.bye("c1", NOW + 11)
    assert v is not None and (v.start, v.stop, v.direction) == (NOW + 1, NOW + 11, "originating")
    t.started("c2", None, "+2", NOW, "terminating")
    t.failed("c2")
    assert t.bye("c2", NOW + 5) is None   # failed: no VCR
    t.started("c3", "+1", "+2", NOW)       # never crossed pstn
    t.answered("c3", NOW)
    assert t.bye("c3", NOW + 5) is None
    t.started("c4", "+1", "+2", NOW, "terminating")
    assert t.expire(NOW + 10_000) == 1 and len(t) == 0


def test_call_tracker_open_vcr_and_restore() -> None:
    t = CallTracker(max_call_duration=100)
    t.started("c1", "+1", "+2", NOW)
    t.set_direction("c1", "originating")
    assert t.open_vcr("c1") is None          # not answered yet
    t.answered("c1", NOW + 1)
    v = t.open_vcr("c1")
    assert v is not None and (v.state, v.start, v.stop) == ("open", NOW + 1, NOW + 1)
    t2 = CallTracker(max_call_duration=100)  # a restarted proxy
    t2.restore(v)
    done = t2.bye("c1", NOW + 31)
    assert done is not None and (done.state, done.start, done.stop) == (
        "complete", NOW + 1, NOW + 31)
    t2.restore(v)
    assert t2.expire(NOW + 100) == 0 and t2.expire(NOW + 102) == 1   # answered + limit


def test_dialog_text_round_trip_and_garbage() -> None:
    dlg = Dialog(Leg("internal", "127.0.0.1", 5060), Leg("federation", "::1", 5061, "b.example"))
    back = dialog_from_text(dialog_text(dlg), NOW)
    assert (back.up, back.down, back.created) == (dlg.up, dlg.down, NOW)
    for bad in ("", "[]", '{"up": 1}', '{"up": ["i", "h", 0, null], "down": ["i", "h", 1, null]}',
                '{"up": ["i", "h", true, null], "down": ["i", "h", 1, null]}', "x" * 5000):
        with pytest.raises(DialogTextError):
            dialog_from_text(bad, NOW)


def _invite() -> SipRequest:
    return SipRequest("INVITE", "sip:+442071234567@a", Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc"), ("Max-Forwards", "5"),
        ("From", "<sip:+1@a>;tag=1"), ("To", "<sip:+442071234567@a>"), ("Call-ID", "x"),
        ("CSeq", "1 INVITE"), ("X-Cisco-ViPR-Ticket", "stale"),
        ("Route", "<sip:127.0.0.1:5060;lr>, <sip:next.example;lr>")]))


def test_prepare_request_rewrites_like_a_proxy() -> None:
    req = _invite()
    fwd = prepare_request(req, via=Via("TLS", "127.0.0.1", 5061, {"branch": "z9hG4bKnew"}),
                          record_route=["sip:in;lr", "sip:out;lr"], uri="sip:+44@b",
                          ticket="TICKET", strip_tickets=True)
    assert fwd.uri == "sip:+44@b" and fwd.max_forwards == 4
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:out;lr", "sip:in;lr"]
    assert fwd.top_via.branch == "z9hG4bKnew" and len(fwd.vias) == 2
    assert fwd.headers.get("VIPR-Ticket") == "TICKET"
    assert fwd.headers.get("X-Cisco-ViPR-Ticket") is None
    assert req.max_forwards == 5 and req.headers.get("X-Cisco-ViPR-Ticket") == "stale"
    n = strip_own_routes(req, lambda u: u.host == "127.0.0.1")
    assert n == 1 and [str(r.uri) for r in req.routes] == ["sip:next.example;lr"]
    assert stateless_branch(req, "pstn") == stateless_branch(_invite(), "pstn")


def test_ack_and_bye_end_a_stray_2xx_dialog() -> None:
    ok = SipResponse(200, headers=[("From", "<sip:+1@a>;tag=1"),
                                   ("To", "<sip:+442071234567@a>;tag=2"), ("Call-ID", "x")])
    ack, bye = ack_and_bye(_invite(), ok)
    for m, cseq in ((ack, "1 ACK"), (bye, "2 BYE")):
        assert m.uri == "sip:+442071234567@a" and m.headers.get("CSeq") == cseq
        assert m.headers.get("To") == "<sip:+442071234567@a>;tag=2"
        assert m.headers.get("Call-ID") == "x" and m.max_forwards == 70 and not m.vias
