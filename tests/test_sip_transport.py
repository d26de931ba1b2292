"""Transports and endpoint over real loopback sockets: UDP, TCP, TLS (mutual auth)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vipr.config.schema import TlsFiles
from vipr.proxy.federation_tls import server_context
from vipr.proxy.sip import SipMessage, SipParseError, SipRequest, SipResponse, parse_message
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.transport import (
    Source,
    StreamTransport,
    UdpTransport,
    cert_dns_names,
    response_destination,
)
from vipr.proxy.sip.ua import SimpleUAC, SimpleUAS

pytestmark = pytest.mark.timeout(30)

OPTIONS = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


class Inbox:
    """Collects messages; `get()` awaits the next one with a bound."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[tuple[SipMessage, Source]] = asyncio.Queue()
        self.errors: list[SipParseError] = []

    def __call__(self, msg: SipMessage, source: Source) -> None:
        self.q.put_nowait((msg, source))

    def on_error(self, data: bytes, source: Source, exc: SipParseError) -> None:
        self.errors.append(exc)

    async def get(self) -> tuple[SipMessage, Source]:
        return await asyncio.wait_for(self.q.get(), 5)


def _cert(name: str, issuer_key: ec.EllipticCurvePrivateKey | None,
          issuer: x509.Name | None, dns: list[str]) -> tuple[x509.Certificate,
                                                            ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=1)))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    else:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return b.sign(issuer_key or key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _cert("test CA", None, None, [])
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, dns in (("server", ["sip.provider-b.test"]), ("client", ["sip.provider-a.test"])):
        cert, key = _cert(who, ca_key, ca.subject, dns)
        out[who] = d / f"{who}.pem"
        out[who].write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    return out


def contexts(pki: dict[str, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    # the proxy's own federation listener context (mutual TLS), so the tests guard it
    server = server_context(TlsFiles(cert=pki["server"], key=pki["server"], ca=pki["ca"]))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    client.load_cert_chain(str(pki["client"]))
    client.check_hostname = False
    return server, client


async def test_udp_stamps_received_rport_and_survives_garbage() -> None:
    inbox = Inbox()
    server = await UdpTransport.listen("127.0.0.1", 0, inbox, on_error=inbox.on_error)
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    try:
        await client.send(b"\x00garbage\r\n\r\n", "127.0.0.1", server.local_port)
        await client.send(b"\r\n\r\n", "127.0.0.1", server.local_port)   # keep-alive: ignored
        await client.send(OPTIONS, "127.0.0.1", server.local_port)
        msg, src = await inbox.get()
        assert isinstance(msg, SipRequest) and len(inbox.errors) == 1
        assert (src.transport, src.host, src.port) == ("udp", "127.0.0.1", client.local_port)
        via = msg.top_via
        # RFC 3261 §18.2.1 received; RFC 3581 rport filled in
        assert via.received == "127.0.0.1" and via.rport == client.local_port
        assert response_destination(via, src) == ("127.0.0.1", client.local_port)
    finally:
        server.close()
        client.close()


async def test_tcp_framing_reuse_keepalive_and_limits() -> None:
    inbox = Inbox()
    server = await StreamTransport.listen("127.0.0.1", 0, inbox, on_error=inbox.on_error,
                                          max_size=2000)
    got = Inbox()
    client = await StreamTransport.listen("127.0.0.1", 0, got, accept=False)
    try:
        conn = await client.send(OPTIONS[:50], "127.0.0.1", server.local_port)
        conn.write(OPTIONS[50:] + OPTIONS)
        m1, s1 = await inbox.get()
        m2, s2 = await inbox.get()
        assert m1 == m2 and s1.connection is s2.connection and s1.transport == "tcp"
        again = await client.send(OPTIONS, "127.0.0.1", server.local_port)
        assert again is conn and len(client.connections) == 1   # reused (RFC 3261 §18.1.1)
        await inbox.get()
        # RFC 5626 ping -> pong, no message
        reader, writer = await asyncio.open_connection("127.0.0.1", server.local_port)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        # a response goes back over the request's connection
        assert s1.connection is not None
        s1.connection.write(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\n"
                            b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        resp, _ = await got.get()
        assert isinstance(resp, SipResponse) and resp.status == 200
        # over the size limit: framing error, connection closed, server keeps serving
        writer.write(b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert inbox.errors and inbox.errors[-1].status == 513
        writer.close()
        await client.send(OPTIONS, "127.0.0.1", server.local_port)
        await inbox.get()
    finally:
        await client.close()
        await server.close()


async def test_tls_mutual_auth_exposes_peer_dns_name(pki: dict[str, Path]) -> None:
    server_ctx, client_ctx = contexts(pki)
    inbox = Inbox()
    server = await StreamTransport.listen("127.0.0.1", 0, inbox, ssl=server_ctx)
    got = Inbox()
    client = await StreamTransport.listen("127.0.0.1", 0, got, client_ssl=client_ctx,
                                          accept=False)
    try:
        assert server.name == client.name == "tls"
        conn = await client.send(OPTIONS, "127.0.0.1", server.local_port)
        _msg, src = await inbox.get()
        assert src.transport == "tls" and src.tls_dns_names == ("sip.provider-a.test",)
        assert src.tls_verified
        assert conn.tls_dns_names == ("sip.provider-b.test",) and conn.tls_verified
        # a client without a certificate is refused by the mutual-auth server
        bare = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
        bare.check_hostname = False
        anon = await StreamTransport.listen("127.0.0.1", 0, got, client_ssl=bare, accept=False)
        try:
            try:
                c2 = await anon.send(OPTIONS, "127.0.0.1", server.local_port)
            except (ssl.SSLError, ConnectionError):
                pass   # refused while the client was still in its handshake
            else:
                # TLS 1.3: the client finishes first, then the server's alert closes it.
                # A timeout here (TimeoutError) means the server kept the connection: red.
                await asyncio.wait_for(c2.closed, 5)
            assert inbox.q.empty()   # nothing from the anonymous client was delivered
            assert list(server.connections) == [src.connection.remote]   # never registered
        finally:
            await anon.close()
    finally:
        await client.close()
        await server.close()


def test_cert_dns_names_of_garbage() -> None:
    assert cert_dns_names(None) == () and cert_dns_names(b"not a cert") == ()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_endpoint_calls(transport: str, pki: dict[str, Path]) -> None:
    server_ctx, client_ctx = contexts(pki)
    uas = SimpleUAS()
    _, port = await uas.start(transport, "127.0.0.1",
                              ssl=server_ctx if transport == "tls" else None)
    uac = SimpleUAC()
    await uac.start(transport, "127.0.0.1", client_ssl=client_ctx if transport == "tls" else None)
    try:
        results = await asyncio.gather(*[uac.call("127.0.0.1", port) for _ in range(20)])
        assert results == [200] * 20
        assert (uas.invites, uas.acks, uas.byes) == (20, 20, 20)
    finally:
        await uac.close()
        await uas.close()


async def test_endpoint_answers_bad_request_with_400_and_retransmits_final() -> None:
    seen: list[SipRequest] = []

    def on_request(req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        seen.append(req)
        if server is not None:
            server.respond(486, to_tag="t")

    ep = SipEndpoint(on_request)
    await ep.listen("udp", "127.0.0.1", 0)
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    port = ep.transports["udp"].local_port
    try:
        bad = OPTIONS.replace(b"To: <sip:x@example.com>", b"To: \"unclosed <sip:x@y>")
        await client.send(bad, "127.0.0.1", port)
        r, _ = await got.get()
        assert isinstance(r, SipResponse) and r.status == 400 and not seen
        await client.send(OPTIONS, "127.0.0.1", port)
        r, _ = await got.get()
        assert isinstance(r, SipResponse) and r.status == 486 and len(seen) == 1
        await client.send(OPTIONS, "127.0.0.1", port)   # retransmission: absorbed, 486 again
        r2, _ = await got.get()
        assert isinstance(r2, SipResponse) and r2.serialize() == r.serialize() and len(seen) == 1
        assert parse_message(r2.serialize()).to_tag == "t"
    finally:
        client.close()
        await ep.close()


async def test_client_timeout_over_udp() -> None:
    """Nobody answers: Timer F ends the transaction (T1 shortened to keep the test fast)."""
    from vipr.proxy.sip.transaction import TimerValues

    ep = SipEndpoint(lambda r, s, h: None, timers=TimerValues(t1=0.01, t2=0.04, t4=0.05))
    await ep.listen("udp", "127.0.0.1", 0)
    silent = await UdpTransport.listen("127.0.0.1", 0, Inbox())
    try:
        req = parse_message(OPTIONS)
        assert isinstance(req, SipRequest)
        failures: list[Exception] = []
        h = await ep.send_request(req, "udp", "127.0.0.1", silent.local_port,
                                  on_failure=failures.append)
        with pytest.raises(TimeoutError):
            await h.final(timeout=5)
        assert len(failures) == 1 and isinstance(failures[0], TimeoutError)
    finally:
        silent.close()
        await ep.close()


async def test_cancel_pending_invite_over_udp() -> None:
    """CANCEL (RFC 3261 §9): 200 to the CANCEL, 487 to the INVITE, ACK from the client txn."""
    from vipr.proxy.sip import make_cancel
    from vipr.proxy.sip.transaction import new_branch

    acks: list[SipRequest] = []
    acked = asyncio.Event()
    uas = SipEndpoint(lambda r, s, h: None)

    def on_request(req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if req.method == "CANCEL" and server is not None:
            server.respond(200)
            inv = uas.find_invite_server(req)
            assert inv is not None
            inv.respond(487, to_tag="u1")
        elif req.method == "ACK":
            acks.append(req)
            acked.set()
        # INVITE: left pending (100 Trying was sent by the transaction)

    uas.on_request = on_request
    await uas.listen("udp", "127.0.0.1", 0)
    uac = SipEndpoint(lambda r, s, h: None)
    await uac.listen("udp", "127.0.0.1", 0)
    port = uas.transports["udp"].local_port
    try:
        inv = parse_message(OPTIONS.replace(b"OPTIONS", b"INVITE").replace(
            b"z9hG4bK1", new_branch().encode()))
        assert isinstance(inv, SipRequest)
        seen: list[int] = []
        ch = await uac.send_request(inv, "udp", "127.0.0.1", port,
                                    on_response=lambda r: seen.append(r.status))
        first = await asyncio.wait_for(ch.responses.get(), 5)
        assert first.status == 100
        cancel = make_cancel(inv)
        assert cancel.top_via.branch == inv.top_via.branch and cancel.cseq.method == "CANCEL"
        cc = await uac.send_request(cancel, "udp", "127.0.0.1", port)
        assert (await cc.final(5)).status == 200
        assert (await ch.final(5)).status == 487
        assert seen == [100, 487]
        # the INVITE client transaction ACKs the 487 by itself; the UAS's server
        # transaction absorbs that ACK, so the TU never sees it
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(acked.wait(), 1.0)
        assert not acks
        srv = uas.find_invite_server(cancel)
        assert srv is not None and srv.txn.state == "confirmed"
    finally:
        await uac.close()
        await uas.close()


async def test_uas_retransmits_2xx_until_ack() -> None:
    """RFC 3261 §13.3.1.4: over UDP the UAS core resends its 2xx until the ACK arrives."""
    uas = SimpleUAS(timers_t1=0.05)
    _, port = await uas.start("udp", "127.0.0.1")
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    try:
        invite = OPTIONS.replace(b"OPTIONS", b"INVITE")
        await client.send(invite, "127.0.0.1", port)
        statuses = []
        while statuses.count(200) < 3:   # 100, 200, then 200 retransmissions
            r, _ = await got.get()
            assert isinstance(r, SipResponse)
            statuses.append(r.status)
        assert statuses[0] == 100
        ok = r
        ack = (b"ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2\r\n"
               b"From: <sip:a@example.com>;tag=1\r\nTo: " + (ok.headers.get("to") or "").encode()
               + b"\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        await client.send(ack, "127.0.0.1", port)
        late = 0
        with pytest.raises(TimeoutError):   # retransmissions stop once the ACK is in
            while True:
                await asyncio.wait_for(got.q.get(), 0.6)   # next one would be due in 0.2-0.4 s
                late += 1
        assert late <= 1   # at most one already in flight when the ACK arrived
        assert uas.acks == 1 and uas.invites == 1 and not uas._pending_2xx
    finally:
        client.close()
        await uas.close()


def _have_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _have_ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_endpoint_calls_over_ipv6(transport: str) -> None:
    uas = SimpleUAS()
    _, port = await uas.start(transport, "::1")
    uac = SimpleUAC()
    await uac.start(transport, "::1")
    try:
        assert await asyncio.gather(*[uac.call("::1", port) for _ in range(5)]) == [200] * 5
        assert (uas.invites, uas.acks, uas.byes) == (5, 5, 5)
    finally:
        await uac.close()
        await uas.close()


async def test_endpoint_answers_unparseable_requests() -> None:
    """RFC 4475 §3.1.2: malformed requests get 400 (505 for a bad version), then the
    endpoint goes on serving; malformed responses and ACKs are dropped silently."""
    ep = SipEndpoint(lambda r, s, h: h.respond(200) if h is not None else None)
    await ep.listen("udp", "127.0.0.1", 0)
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    port = ep.transports["udp"].local_port
    try:
        cases = [
            (OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), 400),        # mismatch01
            (OPTIONS.replace(b"x@127.0.0.1 SIP/2.0", b"x@127.0.0.1 SIP/7.0"), 505),  # badvers
            (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 9999"), 400),  # clerr
            (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: -999"), 400),  # ncl
        ]
        for data, status in cases:
            await client.send(data, "127.0.0.1", port)
            r, _ = await got.get()
            assert isinstance(r, SipResponse) and r.status == status, (r.status, status)
            assert r.call_id == "c1" and r.top_via.branch == "z9hG4bK1"
        await client.send(b"SIP/2.0 999 Bad\r\n\r\n", "127.0.0.1", port)
        await client.send(OPTIONS.replace(b"OPTIONS", b"ACK").replace(b"CSeq: 1 ACK",
                                                                       b"CSeq: x ACK"),
                          "127.0.0.1", port)
        await client.send(OPTIONS.replace(b"z9hG4bK1", b"z9hG4bK9"), "127.0.0.1", port)
        r, _ = await got.get()   # the next answer is the good request's
        assert isinstance(r, SipResponse) and r.status == 200 and r.top_via.branch == "z9hG4bK9"
    finally:
        client.close()
        await ep.close()


async def test_endpoint_named_interfaces_answer_on_the_receiving_socket() -> None:
    seen: list[str] = []

    def on_request(req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        seen.append(source.interface)
        if server is not None:
            server.respond(200)

    ep = SipEndpoint(on_request)
    a = await ep.listen("udp", "127.0.0.1", 0, name="internal")
    b = await ep.listen("udp", "127.0.0.1", 0, name="pstn")
    with pytest.raises(ValueError):
        await ep.listen("udp", "127.0.0.1", 0, name="pstn")
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    try:
        for tr, branch in ((b, b"z9hG4bKb"), (a, b"z9hG4bKa")):
            await client.send(OPTIONS.replace(b"z9hG4bK1", branch), "127.0.0.1", tr.local_port)
            r, src = await got.get()
            assert isinstance(r, SipResponse) and r.status == 200
            assert src.port == tr.local_port   # left by the socket the request came in on
        assert seen == ["pstn", "internal"]
    finally:
        client.close()
        await ep.close()


@pytest.mark.parametrize(("fail", "status"), [("parse", 400), ("bug", 500), ("async", 500)])
async def test_endpoint_answers_for_a_failing_handler(fail: str, status: int) -> None:
    async def async_bug() -> None:
        raise RuntimeError("boom")

    def on_request(req: SipRequest, source: Source, server: ServerHandle | None) -> object:
        if fail == "parse":
            return req.headers.get("x-bad") and parse_message(b"junk")
        if fail == "bug":
            raise RuntimeError("boom")
        return async_bug()

    ep = SipEndpoint(on_request)   # type: ignore[arg-type]
    await ep.listen("udp", "127.0.0.1", 0)
    got = Inbox()
    client = await UdpTransport.listen("127.0.0.1", 0, got)
    try:
        await client.send(OPTIONS.replace(b"Max-Forwards", b"X-Bad: 1\r\nMax-Forwards"),
                          "127.0.0.1", ep.transports["udp"].local_port)
        r, _ = await got.get()
        assert isinstance(r, SipResponse) and r.status == status
    finally:
        client.close()
        await ep.close()
