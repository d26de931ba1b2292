"""The SIP 302 redirect interface (DESIGN §11): a real `vipr proxy`, our SIP core as the UA
that reads the 302 field by field (Contacts, q values, the escaped ticket). SIPp following the
redirect through Kamailio edges: tests/deploy/test_redirect_sipp.py."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    B_NUMBER,
    FederationPeer,
    ProxyProcess,
    add_route,
    federation_call,
    make_pki,
    mint_for,
    write_provider,
)
from vipr.config import ConfigError, load_config
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.uri import parse_uri
from vipr.tickets import TICKET_HEADER

FR = "+33140000000"


async def _invite(ep: SipEndpoint, port: int, callee: str) -> SipResponse:
    ruri = f"sip:{callee}@127.0.0.1:{port}"
    h = Headers([("Via", f"SIP/2.0/UDP 127.0.0.1:9;branch={new_branch()}"),
                 ("Max-Forwards", "70"), ("From", f"<sip:{B_NUMBER}@edge>;tag=1"),
                 ("To", f"<{ruri}>"), ("Call-ID", secrets.token_hex(8)), ("CSeq", "1 INVITE"),
                 ("Contact", "<sip:edge@127.0.0.1:9>")])
    client = await ep.send_request(SipRequest("INVITE", ruri, h), "udp", "127.0.0.1", port)
    return await client.final(10)


async def test_302_carries_the_route_with_ticket_then_the_pstn(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    peer = await FederationPeer(pki, "b.example.net", 200).start()
    rport, gw = free_port(), free_port()
    p = write_provider(tmp_path, "a", "a.example.net", [B_NUMBER], None, gateway=gw,
                       interfaces=(f'redirect: {{listen: "127.0.0.1:{rport}"}}',),
                       extra=("dialplan: {country_code: 44}",))
    ticket = await mint_for(p.db, FR, "a.example.net")
    await add_route(p.db, FR, f"sip:127.0.0.1:{peer.port};transport=tls", ticket,
                    "b.example.net")
    proc = await ProxyProcess(p).start()
    ep = SipEndpoint(lambda *a: None)
    await ep.listen("udp", "127.0.0.1", 0)
    await ep.listen("tls", "127.0.0.1", 0, client_ssl=pki.client_ctx("a.example.net"))
    try:
        resp = await _invite(ep, rport, "0033140000000")   # international prefix form
        assert resp.status == 302
        first, second = resp.contacts
        assert first.params["q"] == "1.0" and second.params["q"] == "0.5"
        assert first.uri.headers is not None
        name, _, value = first.uri.headers.partition("=")
        assert (name, unquote(value)) == (TICKET_HEADER, ticket)
        assert (first.uri.user, first.uri.port) == (FR, peer.port)
        assert (second.uri.user, second.uri.host, second.uri.port) == (FR, "127.0.0.1", gw)
        # follow it as an edge does: the Contact's header goes into the new INVITE
        target = parse_uri(str(first.uri))
        status = await federation_call(ep, "tls", "127.0.0.1", target.port or 5061, FR,
                                       [(name, unquote(value))],
                                       server_hostname="b.example.net")
        assert status == 200
        [(req, _src)] = peer.invites
        assert req.headers.get(TICKET_HEADER) == ticket
        # no route: the PSTN gateway alone
        resp = await _invite(ep, rport, "+442079460000")
        assert resp.status == 302
        [only] = resp.contacts
        assert (only.uri.user, only.uri.port) == ("+442079460000", gw)
        status = await proc.status()
        assert status["redirect"]["listen"] == f"127.0.0.1:{rport}"  # type: ignore[index]
    finally:
        await ep.close()
        await peer.close()
        await proc.stop()


async def test_no_route_status_is_configurable(tmp_path: Path) -> None:
    rport = free_port()
    p = write_provider(tmp_path, "a", "a.example.net", [B_NUMBER], None,
                       interfaces=(f'redirect: {{listen: "127.0.0.1:{rport}",'
                                   " no_route_status: 480}",))
    proc = await ProxyProcess(p).start()
    ep = SipEndpoint(lambda *a: None)
    await ep.listen("udp", "127.0.0.1", 0)
    try:
        resp = await _invite(ep, rport, "+33140000009")
        assert resp.status == 480 and not resp.contacts
    finally:
        await ep.close()
        await proc.stop()


def test_redirect_config_refuses_other_3xx(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [B_NUMBER], None,
                       interfaces=('redirect: {listen: "127.0.0.1:1", no_route_status: 301}',))
    with pytest.raises(ConfigError, match=r"no_route_status: expected 302"):
        load_config(p.config)
