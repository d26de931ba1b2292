"""SIP parse+serialize throughput on a mix of real call-flow messages, against aiosipua 0.7.1.

Method: the same 10 messages (a proxied call: INVITE, 100, 180, 200, ACK, BYE, 200, plus
OPTIONS, REGISTER with credentials, 401) are parsed and serialized by our core
(`parse_message` + `serialize`) and by aiosipua 0.7.1 (`SipMessage.parse` + `bytes()`),
in alternating rounds in one process; each figure is the median over rounds and the
ratio is the median of per-round ratios (robust on a shared, loaded machine). A second
figure adds the accessors a proxy reads per message (top Via branch, Call-ID, CSeq,
From tag). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from vipr.proxy.sip import parse_message
from vipr.proxy.sip.message import _STRICT_OK

SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.10\r\ns=-\r\n"
    "c=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 opus/48000/2\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
VIAS = (
    "Via: SIP/2.0/TLS 203.0.113.5:5061;branch=z9hG4bK3f1a.8c2e7d4b1b0a;rport=5061;"
    "received=203.0.113.5\r\n"
    "Via: SIP/2.0/UDP 10.1.2.3:5060;received=198.51.100.10;branch=z9hG4bK7d1c9e2;rport=5060\r\n"
)
DIALOG = (
    "From: \"Alice Example\" <sip:+14085550100@provider-a.example;user=phone>;tag=9fxced76sl\r\n"
    "To: <sip:+12125550199@provider-b.example;user=phone>{totag}\r\n"
    "Call-ID: 3848276298220188511@10.1.2.3\r\n"
)


def _msg(start: str, headers: str, body: str = "") -> bytes:
    return (f"{start}\r\n{headers}Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def messages() -> list[bytes]:
    """The benchmark mix."""
    d0 = DIALOG.format(totag="")
    d1 = DIALOG.format(totag=";tag=8321234356")
    rr = ("Record-Route: <sip:203.0.113.5:5061;transport=tls;lr;r2=on>,"
          " <sip:10.1.2.1;lr;r2=on>\r\n")
    route = "Route: <sip:10.1.2.1;lr;r2=on>, <sip:203.0.113.5:5061;transport=tls;lr;r2=on>\r\n"
    return [
        _msg("INVITE sip:+12125550199@provider-b.example;user=phone SIP/2.0",
             VIAS + "Max-Forwards: 68\r\n" + rr + d0 +
             "CSeq: 101 INVITE\r\nContact: <sip:alice@10.1.2.3:5060;transport=udp>\r\n"
             "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n"
             "Supported: replaces, timer\r\nUser-Agent: ExamplePhone/5.2\r\n"
             "VIPR-Ticket: AQEAAAAAZ0x8sAAAAABneXvwq3Jm2lq1bJ1qf4_3uR6mKQ\r\n"
             "Content-Type: application/sdp\r\n", SDP),
        _msg("SIP/2.0 100 Trying", VIAS + d0 + "CSeq: 101 INVITE\r\n"),
        _msg("SIP/2.0 180 Ringing", VIAS + rr + d1 +
             "CSeq: 101 INVITE\r\nContact: <sip:bob@192.0.2.44:5060>\r\n"),
        _msg("SIP/2.0 200 OK", VIAS + rr + d1 +
             "CSeq: 101 INVITE\r\nContact: <sip:bob@192.0.2.44:5060>\r\n"
             "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nContent-Type: application/sdp\r\n",
             SDP.replace("198.51.100.10", "192.0.2.44")),
        _msg("ACK sip:bob@192.0.2.44:5060 SIP/2.0", VIAS + "Max-Forwards: 69\r\n" + route + d1
             + "CSeq: 101 ACK\r\n"),
        _msg("BYE sip:bob@192.0.2.44:5060 SIP/2.0", VIAS + "Max-Forwards: 69\r\n" + route + d1
             + "CSeq: 102 BYE\r\nUser-Agent: ExamplePhone/5.2\r\n"),
        _msg("SIP/2.0 200 OK", VIAS + d1 + "CSeq: 102 BYE\r\n"),
        _msg("OPTIONS sip:provider-b.example SIP/2.0",
             "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK.ka1;rport\r\nMax-Forwards: 70\r\n"
             "From: <sip:ping@provider-a.example>;tag=ka1\r\nTo: <sip:provider-b.example>\r\n"
             "Call-ID: ka-77@203.0.113.5\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\n"),
        _msg("REGISTER sip:provider-a.example SIP/2.0",
             "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKreg2;rport\r\nMax-Forwards: 70\r\n"
             "From: <sip:alice@provider-a.example>;tag=r55\r\n"
             "To: <sip:alice@provider-a.example>\r\n"
             "Call-ID: reg-1@10.1.2.3\r\nCSeq: 2 REGISTER\r\n"
             "Contact: <sip:alice@10.1.2.3:5060>;expires=3600;+sip.instance=\"<urn:uuid:1>\"\r\n"
             "Authorization: Digest username=\"alice\", realm=\"provider-a.example\", "
             "nonce=\"5f1a2b3c\", uri=\"sip:provider-a.example\", "
             "response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5\r\n"),
        _msg("SIP/2.0 401 Unauthorized",
             "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKreg1;rport=5060;received=10.1.2.3\r\n"
             "From: <sip:alice@provider-a.example>;tag=r55\r\n"
             "To: <sip:alice@provider-a.example>;tag=srv1\r\nCall-ID: reg-1@10.1.2.3\r\n"
             "CSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"provider-a.example\", "
             "nonce=\"5f1a2b3c\", algorithm=MD5, qop=\"auth\"\r\n"),
    ]


def ours(msgs: list[bytes]) -> None:
    for d in msgs:
        parse_message(d).serialize()


def ours_fields(msgs: list[bytes]) -> None:
    for d in msgs:
        m = parse_message(d)
        _ = (m.top_via.branch, m.call_id, m.cseq.seq, m.from_tag)
        m.serialize()


def ours_strict(msgs: list[bytes]) -> None:
    for d in msgs:
        # the strict check remembers values that passed (they repeat between calls);
        # here every value is new, as the Via and From of a new call are: the cold cost
        _STRICT_OK.clear()
        parse_message(d, strict=True).serialize()


def theirs(msgs: list[bytes]) -> None:
    from aiosipua import SipMessage

    for d in msgs:
        bytes(SipMessage.parse(d))


def theirs_fields(msgs: list[bytes]) -> None:
    from aiosipua import SipMessage, parse_address

    for d in msgs:
        m = SipMessage.parse(d)
        _ = (m.via[0].branch, m.call_id, m.cseq.seq, parse_address(m.headers.get_first("from")).tag)
        bytes(m)


def rate(fn: Callable[[list[bytes]], None], msgs: list[bytes], batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batch):
        fn(msgs)
    return batch * len(msgs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (CI)")
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    rounds = args.rounds or (7 if args.quick else 31)
    batch = 30 if args.quick else 100
    msgs = messages()
    for d in msgs:   # both parsers accept the whole mix
        parse_message(d, strict=True)
    try:
        theirs(msgs)
        have_baseline = True
    except ImportError:
        have_baseline = False
    pairs = [("parse+serialize", ours, theirs), ("parse+fields+serialize", ours_fields,
                                                  theirs_fields)]
    result: dict[str, object] = {"bench": "sip_parse", "messages": len(msgs), "rounds": rounds}
    for label, a, b in pairs:
        ra, rb, ratios = [], [], []
        for _ in range(rounds):
            x = rate(a, msgs, batch)
            ra.append(x)
            if have_baseline:
                y = rate(b, msgs, batch)
                rb.append(y)
                ratios.append(x / y)
        line = f"{label:24s} ours {statistics.median(ra):>9,.0f} msg/s"
        if have_baseline:
            line += (f"   aiosipua 0.7.1 {statistics.median(rb):>9,.0f} msg/s"
                     f"   ratio {statistics.median(ratios):.2f}x")
        print(line)
        key = label.replace("+", "_")
        result[f"{key}_msgs_per_s"] = round(statistics.median(ra))
        if have_baseline:
            result[f"{key}_aiosipua_msgs_per_s"] = round(statistics.median(rb))
            result[f"{key}_ratio"] = round(statistics.median(ratios), 2)
    strict = statistics.median(rate(ours_strict, msgs, batch) for _ in range(rounds))
    print(f"{'strict parse+serialize':24s} ours {strict:>9,.0f} msg/s")
    result["strict_parse_serialize_msgs_per_s"] = round(strict)
    result["ratio"] = result.get("parse_serialize_ratio")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
