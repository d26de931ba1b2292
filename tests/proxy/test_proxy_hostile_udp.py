"""Issue 13 defect 1: one datagram must not silence the proxy (DESIGN §10).

A request whose top Via names a host with a NUL byte or bytes that are not UTF-8/IDNA used to
get its 400 sent to that host: `sendto` raised TypeError inside asyncio's datagram transport,
which closed the listener for good. Responses to UDP requests now go to the packet's source
address and port (RFC 3261 §18.2.2 `received`, RFC 3581 `rport`), every send is checked and
contained, and a listener that closes anyway is reopened (or the daemon exits non-zero).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import A_NUMBER, VIPR, ProxyProcess, write_provider
from vipr.proxy.sip import SipRequest, parse_message
from vipr.proxy.sip.endpoint import SipEndpoint
from vipr.proxy.sip.transport import BadDestination, UdpTransport, ip_destination

pytestmark = pytest.mark.timeout(60)


def request(via_host: bytes, *, cseq: bytes = b"1 OPTIONS", branch: bytes = b"z9hG4bK1",
            rport: bool = False) -> bytes:
    return (b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + via_host
            + b":5060;branch=" + branch + (b";rport" if rport else b"") + b"\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c-"
            + branch + b"\r\nCSeq: " + cseq + b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


# The datagrams of the issue: unparseable (bad CSeq) so that the answer is a stateless 400,
# with a top Via host that cannot be sent to; then the same hosts on parseable requests.
HOSTILE = [
    request(b"a\x00b", cseq=b"x OPTIONS", branch=b"z9hG4bKnul"),
    request(b"\xff\xfe.example", cseq=b"x OPTIONS", branch=b"z9hG4bKutf"),
    request(b"xn--\xc3\x28.example", cseq=b"x OPTIONS", branch=b"z9hG4bKidna"),
    request(b"a" * 300 + b".example", cseq=b"x OPTIONS", branch=b"z9hG4bKlong"),
    request(b"a\x00b", branch=b"z9hG4bKnul2"),
    request(b"\xff\xfe.example", branch=b"z9hG4bKutf2", rport=True),
    request(b"a\x00b", cseq=b"x OPTIONS", branch=b"z9hG4bK\xff\x00"),
]
# no answer possible (the Via cannot be read), but no harm either
UNANSWERABLE = [request(b"[::1", cseq=b"x OPTIONS", branch=b"z9hG4bKv6")]


def _udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv(s: socket.socket, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, raw): the answers to bad requests echo their bad CSeq, so no full parse."""
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
    assert data.startswith(b"SIP/2.0 "), data[:40]
    return int(data[8:11]), data


async def test_hostile_via_datagrams_leave_both_udp_listeners_answering(tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    attacker, legit = _udp_socket(), _udp_socket()
    try:
        for port in (p.internal, p.pstn):
            for dgram in UNANSWERABLE:
                attacker.sendto(dgram, ("127.0.0.1", port))
            for dgram in HOSTILE:
                attacker.sendto(dgram, ("127.0.0.1", port))
                # the answer goes to where the datagram came from, never to the Via host
                status, raw = await _recv(attacker)
                branch = dgram.split(b"branch=")[1].split(b"\r")[0].split(b";")[0]
                assert status == 400 and b"branch=" + branch in raw, raw[:200]
            legit.sendto(request(b"127.0.0.1", branch=b"z9hG4bKok"), ("127.0.0.1", port))
            status, raw = await _recv(legit)
            assert status == 200 and b"branch=z9hG4bKok" in raw
        st = await proxy.status()
        ifaces = st["interfaces"]
        assert isinstance(ifaces, dict)
        assert {n: i["state"] for n, i in ifaces.items()} == {"internal": "open", "pstn": "open"}
        out = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
            [*VIPR, "proxy", "status", "--config", str(p.config)], capture_output=True,
            text=True, timeout=30))
        assert f"internal   udp/127.0.0.1:{p.internal} open" in out.stdout, out.stdout
        assert proxy.proc is not None and proxy.proc.returncode is None
    finally:
        attacker.close()
        legit.close()
        await proxy.stop()
    assert "Traceback" not in proxy.log_text()


def test_ip_destination_accepts_only_ip_literals() -> None:
    assert ip_destination("127.0.0.1", 5060) == ("127.0.0.1", 5060)
    assert ip_destination("[::1]", 5060) == ("::1", 5060)
    for host, port in (("a\x00b", 5060), ("example.com", 5060), ("\udcff", 1),
                       ("127.0.0.1", 0), ("127.0.0.1", 70000)):
        with pytest.raises(BadDestination):
            ip_destination(host, port)
    with pytest.raises(BadDestination):
        ip_destination("::1", 5060, socket.AF_INET)


async def test_a_closed_udp_listener_is_reopened_and_answers_again() -> None:
    ep = SipEndpoint(lambda r, s, h: h.respond(200) if h is not None else None)
    tr = await ep.listen("udp", "127.0.0.1", 0)
    assert isinstance(tr, UdpTransport)
    port = tr.local_port
    legit = _udp_socket()
    try:
        assert tr.state == "open"
        assert tr._transport is not None
        tr._transport.abort()   # as asyncio does on a fatal send error
        assert tr.state == "reopening"
        for _ in range(100):
            if tr.state == "open":
                break
            await asyncio.sleep(0.02)
        assert tr.state == "open" and tr.reopened == 1 and tr.local_port == port
        legit.sendto(request(b"127.0.0.1", branch=b"z9hG4bKback"), ("127.0.0.1", port))
        status, raw = await _recv(legit)
        assert status == 200 and b"branch=z9hG4bKback" in raw
    finally:
        legit.close()
        await ep.close()


async def test_a_udp_listener_that_cannot_be_reopened_is_reported_dead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dead: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    ep = SipEndpoint(lambda r, s, h: None,
                     on_transport_dead=lambda n, why: dead.set_result((n, why)))
    tr = await ep.listen("udp", "127.0.0.1", 0, name="internal")
    assert isinstance(tr, UdpTransport)

    async def refuse(host: str, port: int) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(tr, "_open", refuse)
    monkeypatch.setattr("vipr.proxy.sip.udp.UDP_REOPEN_DELAY", 0.0)
    try:
        assert tr._transport is not None
        tr._transport.abort()
        name, why = await asyncio.wait_for(dead, 5)
        assert name == "internal" and "in use" in why and tr.state == "dead"
    finally:
        await ep.close()


def test_response_to_udp_goes_to_the_source_not_the_via_host() -> None:
    from vipr.proxy.sip.transport import Source, response_destination
    msg = parse_message(request(b"evil.example", rport=False))
    assert isinstance(msg, SipRequest)
    src = Source("udp", "127.0.0.9", 40000, "127.0.0.1", 5060)
    assert response_destination(msg.top_via_view(), src) == ("127.0.0.9", 40000)
    tcp = Source("tcp", "127.0.0.9", 40000, "127.0.0.1", 5060)
    assert response_destination(msg.top_via_view(), tcp) == ("127.0.0.9", 5060)


async def test_a_bad_next_hop_is_a_connection_error_never_another_exception() -> None:
    ep = SipEndpoint(lambda r, s, h: None)
    await ep.listen("tcp", "127.0.0.1", 0)
    await ep.listen("udp", "127.0.0.1", 0)
    try:
        for transport in ("tcp", "udp"):
            for i, (host, port) in enumerate((("a\x00b", 5060), ("\udcff.example", 5060),
                                              ("127.0.0.1", 0))):
                branch = f"z9hG4bK{transport}{i}".encode()
                msg = parse_message(request(b"127.0.0.1", branch=branch))
                assert isinstance(msg, SipRequest)
                try:
                    client = await ep.send_request(msg, transport, host, port)
                except ConnectionError:
                    continue   # stream: the connect fails, as a ConnectionError
                with pytest.raises(ConnectionError):   # UDP: the transaction fails
                    await client.final(5)
    finally:
        await ep.close()


async def test_the_proxy_stops_with_an_error_when_a_listener_cannot_be_reopened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DESIGN §10: a dead listener ends `serve` with ProxyError (run_daemon: exit 1), so the
    supervisor restarts the proxy instead of it running deaf."""
    from vipr.config import load_config
    from vipr.proxy import cli
    from vipr.proxy.server import ProxyError, ProxyServer

    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    cfg = load_config(p.config)
    started: asyncio.Queue[ProxyServer] = asyncio.Queue()
    real_start = ProxyServer.start

    async def start(self: ProxyServer) -> None:
        await real_start(self)
        started.put_nowait(self)

    monkeypatch.setattr(ProxyServer, "start", start)
    monkeypatch.setattr(cli, "tune_gc", lambda: None)   # not in the test process
    monkeypatch.setattr("vipr.proxy.sip.udp.UDP_REOPEN_DELAY", 0.0)
    task = asyncio.ensure_future(cli.serve(cfg, asyncio.Event()))
    try:
        proxy = await asyncio.wait_for(started.get(), 10)
        assert proxy.endpoint is not None
        tr = proxy.endpoint.transports["pstn"]
        assert isinstance(tr, UdpTransport) and tr._transport is not None

        async def refuse(host: str, port: int) -> None:
            raise OSError(98, "Address already in use")

        monkeypatch.setattr(tr, "_open", refuse)
        tr._transport.abort()
        with pytest.raises(ProxyError, match="SIP interface pstn closed"):
            await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
