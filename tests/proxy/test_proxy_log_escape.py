"""Issue 13 defect 11: peer-supplied SIP values are escaped before a text log (DESIGN §10).

A federation INVITE whose Call-ID carries NUL, an ANSI escape and line breaks (vertical tab,
NEL, U+2028: a raw LF cannot sit inside a header value) is rejected (no ticket); the running
`vipr proxy` logs the rejection as one line with every such character written as \\xNN/\\uNNNN.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import B_NUMBER, ProxyProcess, make_pki, write_provider
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest
from vipr.proxy.sip.transaction import new_branch

pytestmark = pytest.mark.timeout(60)

EVIL_CALL_ID = "evil\x00\x1b[31m\x0bFAKE\x85ERROR\u2028line@a.example.net"
ESCAPED = r"evil\x00\x1b[31m\x0bFAKE\x85ERROR\u2028line@a.example.net"


async def test_call_id_with_nul_and_line_breaks_is_one_escaped_log_line(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    p = write_provider(tmp_path, "b", "b.example.org", [B_NUMBER], pki)
    proxy = await ProxyProcess(p).start()
    client = SipEndpoint(lambda *a: None)
    await client.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))
    try:
        assert p.federation is not None
        ruri = f"sip:{B_NUMBER}@127.0.0.1:{p.federation};user=phone"
        h = Headers([("Via", f"SIP/2.0/TLS 127.0.0.1:9;branch={new_branch()}"),
                     ("Max-Forwards", "70"),
                     ("From", f"<sip:+14085551234@a.example.net>;tag={secrets.token_hex(4)}"),
                     ("To", f"<sip:{B_NUMBER}@b.example.org>"), ("Call-ID", EVIL_CALL_ID),
                     ("CSeq", "1 INVITE"), ("Contact", "<sip:a@127.0.0.1:9>")])
        handle = await client.send_request(SipRequest("INVITE", ruri, h), "tls", "127.0.0.1",
                                           p.federation, server_hostname="b.example.org")
        final = await handle.final(20)
        assert final.status == 403
    finally:
        await client.close()
        await proxy.stop()
    raw = proxy.log.read_bytes()
    assert b"\x00" not in raw and b"\x1b" not in raw and b"\x0b" not in raw
    text = raw.decode()
    assert "\x85" not in text and "\u2028" not in text
    lines = [ln for ln in text.split("\n") if "rejected federation call" in ln]
    assert len(lines) == 1 and ESCAPED in lines[0], lines
    assert len(lines[0].splitlines()) == 1
