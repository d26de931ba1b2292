"""PVP profile v2 (issue 18, DESIGN §5): nothing that identifies a call on the wire, and the
outer TLS refuses every wrong certificate before any SRP byte is sent.

The capture runs two real `vipr pvp` daemons (A with a stand-in overlay.sock whose AppAttach
answer points at a raw TCP tap on loopback that forwards to B and records every byte both
ways). The negative matrix runs PvpClient against PvpServer in one process over real TLS."""

from __future__ import annotations

import asyncio
import datetime as _dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pvp_harness import (
    CALLEE,
    CALLER,
    OVERLAY,
    T0,
    Provider,
    cleanup,
    node_tls,
    overlay_ca,
    pem,
    provider,
    short_dir,
    vcr,
)
from test_pvp_e2e import Daemon, _import, overlay_pki, run, write_cfg

from tests.ports import free_port
from vipr.ipc import IpcServer
from vipr.pvp.client import PvpClient
from vipr.pvp.credentials import client_credentials
from vipr.pvp.messages import ValInfo
from vipr.pvp.outer import ALPN, OuterTls
from vipr.pvp.srp import SrpConnection
from vipr.store import Store

NODE_A, NODE_B, NODE_C = "a" * 32, "b" * 32, "c" * 32
RIGHT = client_credentials(CALLER, CALLEE, T0, T0 + 60, 10.0)


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


# ---------------------------------------------------------------- the capture


class Tap:
    """A TCP relay on 127.0.0.1 to `target` that records every byte in both directions."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.bytes = bytearray()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                self.bytes += data
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def _relay(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        r2, w2 = await asyncio.open_connection(*self.target)
        for t in (self._pump(r, w2), self._pump(r2, w)):
            task = asyncio.ensure_future(t)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def encodings(text: str) -> list[bytes]:
    """`text` as bytes in the common encodings: ASCII/UTF-8, UTF-16 LE and BE."""
    return [text.encode(), text.encode("utf-16-le"), text.encode("utf-16-be")]


def secrets_of_the_call(caller: str, callee: str, start: float, stop: float) -> list[bytes]:
    login = client_credentials(caller, callee, start, stop, 10.0).login
    texts = [caller, callee, caller.lstrip("+"), callee.lstrip("+"), str(login.window),
             login.encode(), *login.encode().split(";")[4:]]  # the two offsets
    return [b for t in texts for b in encodings(t)]


async def test_capture_between_two_daemons_shows_no_call_data(base: Path) -> None:
    """Issue 18 acceptance: neither number (E.164 with +, digits only, UTF-16 LE/BE), nor the
    window, nor the offsets appear anywhere in the bytes of a validation between two real
    daemons; the validation itself succeeds through the tap."""
    b_port = free_port()
    pki = await overlay_pki(base)
    a_cfg = write_cfg(base, "a", 1, free_port(), pki["a"][1])
    b_cfg = write_cfg(base, "b", 2, b_port, pki["b"][1])
    node_a, node_b = pki["a"][0], pki["b"][0]
    await _import(a_cfg, b_cfg, base)
    learned: list[str] = []

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        learned.append(params["number"])
        return {"cached": True}

    async with Tap(("127.0.0.1", b_port)) as tap:
        from pvp_harness import FakeOverlay, claim

        overlay = FakeOverlay([node_a], claims={CALLEE: [claim(node_b)]},
                              peers={node_b: tap.address})
        a, b = Daemon("pvp", a_cfg, base), Daemon("pvp", b_cfg, base)
        async with IpcServer(base / "a" / "run" / "overlay.sock", overlay.handlers()), \
                IpcServer(base / "a" / "run" / "proxy.sock", {"route_learned": route_learned}):
            try:
                await b.start()
                await a.start()
                rc, out, err = await run("validate", CALLEE, "--config", str(a_cfg))
            finally:
                codes = [await a.stop(), await b.stop()]
        assert rc == 0 and out.startswith(f"{CALLEE}: learned"), out + err + a.log.read_text()
        assert codes == [0, 0]
    assert learned == [CALLEE] and tap.connections == 1
    wire = bytes(tap.bytes)
    assert len(wire) > 1000  # the whole exchange went through the tap
    leaks = [s for s in secrets_of_the_call(CALLER, CALLEE, T0, T0 + 61.5) if s in wire]
    assert leaks == []
    assert ALPN.encode() in wire  # the outer TLS's ClientHello (ALPN is in clear)
    # B logged who the client is (the Node-ID and user name of A's node certificate)
    async with Store.open(base / "b" / "vipr.db") as sb:
        (rec,) = await sb.list_validations()
    assert rec.outcome == "ok" and f"node {node_a} user node@a.example" in rec.reason


# ---------------------------------------------------------------- the negative matrix


class SrpSpy:
    """Counts SRP ClientHellos sent by clients and seen by servers, in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = 0
        self.seen = 0
        hs, peek = SrpConnection.handshake_client, SrpConnection.peek_login

        async def handshake_client(conn: SrpConnection, *a: Any, **kw: Any) -> None:
            self.sent += 1
            await hs(conn, *a, **kw)

        async def peek_login(conn: SrpConnection) -> bytes:
            user = await peek(conn)
            self.seen += 1
            return user

        monkeypatch.setattr(SrpConnection, "handshake_client", handshake_client)
        monkeypatch.setattr(SrpConnection, "peek_login", peek_login)


async def _refused(a: Provider, b: Provider, spy: SrpSpy, match: str) -> list[str]:
    """A validation from `a` to `b` fails with `match` and no SRP byte was sent or seen; the
    server's log reasons."""
    await b.store.add_vcr(vcr("terminating"))
    n = b.server.logged
    host, port = b.server.address
    with pytest.raises(Exception, match=match):
        await a.client.validate_at(host, port, RIGHT, NODE_B)
    assert (spy.sent, spy.seen) == (0, 0)
    await b.server.wait_logged(n + 1)
    assert await b.store.ticket_keys() == []
    return [r.reason for r in await b.store.list_validations()]


async def test_server_certificate_from_another_ca_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SrpSpy(monkeypatch)
    other = node_tls(base / "pki-b", NODE_B, ca="other")  # issued by another CA
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, tls=other) as b:
        reasons = await _refused(a, b, spy, "outer-tls CERTIFICATE_VERIFY_FAILED")
        assert reasons[0].startswith("outer-tls"), reasons


async def test_certificate_for_another_node_id_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid overlay certificate, but for NODE_C, where the client AppAttached to NODE_B."""
    spy = SrpSpy(monkeypatch)
    squatter = node_tls(base / "pki-b", NODE_B, node_ids=[NODE_C])
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, tls=squatter) as b:
        await _refused(a, b, spy, f"wrong-node server certificate is for node {NODE_C}")


async def test_client_without_a_certificate_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SrpSpy(monkeypatch)
    anonymous = node_tls(base / "pki-a", NODE_A)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=pem(overlay_ca()[0]))
    ctx.set_alpn_protocols([ALPN])
    anonymous.client_context = ctx  # trusts the overlay root, presents no certificate
    async with provider(base, "a", NODE_A, tls=anonymous) as a, provider(base, "b", NODE_B) as b:
        reasons = await _refused(a, b, spy, "outer-tls server refused the handshake")
        assert reasons[0].startswith("outer-tls") and "CERTIFICATE" in reasons[0], reasons


async def test_client_certificate_from_another_ca_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SrpSpy(monkeypatch)
    stranger = node_tls(base / "pki-a", NODE_A, ca="other", trust="main")
    async with provider(base, "a", NODE_A, tls=stranger) as a, provider(base, "b", NODE_B) as b:
        reasons = await _refused(a, b, spy, "outer-tls server refused the handshake")
        assert "CERTIFICATE_VERIFY_FAILED" in reasons[0], reasons


EXPIRED = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1)


async def test_expired_server_certificate_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SrpSpy(monkeypatch)
    old = node_tls(base / "pki-b", NODE_B, not_after=EXPIRED)
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, tls=old) as b:
        await _refused(a, b, spy, "outer-tls .*certificate has expired")


async def test_expired_client_certificate_is_refused(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SrpSpy(monkeypatch)
    old = node_tls(base / "pki-a", NODE_A, not_after=EXPIRED)
    async with provider(base, "a", NODE_A, tls=old) as a, provider(base, "b", NODE_B) as b:
        reasons = await _refused(a, b, spy, "outer-tls server refused the handshake")
        assert "certificate has expired" in reasons[0], reasons


# ---------------------------------------------------------------- resumption


async def test_second_validation_resumes_and_keeps_the_identities(base: Path) -> None:
    """The server's ticket lets the next validation resume (no RSA signatures); the server
    still knows the client's Node-ID, and the client's cache is per server Node-ID."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        assert a.tls is not None
        for _ in range(2):
            assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
            a.client.drop_idle()  # a new connection each time, not the idle channel
        assert a.tls.session((host, port, NODE_B)) is not None
        assert b.tls is not None and b.tls.server_context.session_stats()["hits"] >= 1
        await b.server.wait_logged(2)
        reasons = [r.reason for r in await b.store.list_validations()]
        assert len(reasons) == 2
        assert all(f"node {NODE_A} user pvp@a.example.net" in r for r in reasons), reasons
        # the same address but another Node-ID: no session to offer, the check runs afresh
        other = PvpClient(a.cfg, a.store, tls=a.tls, backoff=())
        with pytest.raises(Exception, match="wrong-node"):
            await other.validate_at(host, port, RIGHT, NODE_C)


def test_overlay_name_is_checked() -> None:
    """A certificate from the right CA for another overlay names no Node-ID of ours."""
    d = short_dir()
    try:
        tls = node_tls(d, NODE_A, overlay=f"elsewhere.{OVERLAY}")
        der = Path(next(d.glob("*.crt"))).read_bytes()
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(der)
        raw = cert.public_bytes(serialization.Encoding.DER)
        mine = node_tls(d / "m", NODE_B)
        with pytest.raises(ValueError, match="names no Node-ID"):
            mine.identify(raw)
        assert tls.identify(raw).node_ids == (NODE_A,)
    finally:
        cleanup(d)


async def test_server_presents_the_certificate_of_the_attached_node(base: Path) -> None:
    """A provider whose nodes hold one certificate each (`vipr ca issue --per-node`): the
    client names the node it AppAttached to by SNI and gets that node's certificate."""
    d = base / "pki-b"
    node_tls(d, NODE_B)
    node_tls(d, NODE_C)
    two = OuterTls(OVERLAY, pem(overlay_ca()[0]), [
        (bytes.fromhex(n), d / f"node-{n[:8]}-main.crt", d / f"node-{n[:8]}-main.key")
        for n in (NODE_B, NODE_C)])
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, tls=two) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        for node in (NODE_C, NODE_B):
            assert isinstance(await a.client.validate_at(host, port, RIGHT, node), ValInfo)


async def test_successive_validations_share_one_outer_channel(base: Path) -> None:
    """After a successful validation both ends close the SRP session (close_notify each way)
    and keep the authenticated outer channel for the next validation to that server."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        accepted: list[object] = []
        orig = b.server.accepted
        b.server.accepted = lambda conn: (accepted.append(conn), orig(conn))[1]  # type: ignore
        host, port = b.server.address
        for _ in range(3):
            assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
        assert len(accepted) == 1
        await b.server.wait_logged(3)
        recs = await b.store.list_validations()
        assert [r.outcome for r in recs] == ["ok"] * 3
        assert all(f"node {NODE_A} user pvp@a.example.net" in r.reason for r in recs)


async def test_idle_channel_closed_by_the_server_is_replaced(base: Path) -> None:
    """The server ends an idle channel at its pre-handshake deadline; the client's next
    validation then opens a fresh connection, and no attempt is logged for the idle one."""
    pvp = {"limits": "{handshake_timeout: 0.5}"}
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B, pvp=pvp) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
        ((_, idle),) = a.client._idle[(host, port, NODE_B)]
        await asyncio.wait_for(idle._lost.wait(), 10)  # the server's deadline closed it
        assert not idle.reusable
        assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
        await b.server.wait_logged(2)
        assert [r.outcome for r in await b.store.list_validations()] == ["ok", "ok"]


async def test_valinfo_leaves_with_the_close_notify_in_one_write(base: Path) -> None:
    """The server holds its valinfo record for the close_notify that ends the SRP session:
    one outer TLS record and one TCP write, so the client reads both on one wake-up."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        await b.store.add_vcr(vcr("terminating"))
        writes: list[int] = []
        marks: list[int] = []
        orig_accepted, orig_exchange = b.server.accepted, b.server._exchange

        def accepted(conn: Any) -> Any:
            raw = conn._send_raw

            def send_raw(out: bytes) -> None:
                if out:
                    writes.append(len(out))
                raw(out)

            conn._send_raw = send_raw
            return orig_accepted(conn)

        async def exchange(*args: Any) -> bool:
            marks.append(len(writes))  # after the SRP handshake, before the validate
            return await orig_exchange(*args)

        b.server.accepted = accepted  # type: ignore[method-assign]
        b.server._exchange = exchange  # type: ignore[method-assign,assignment]
        host, port = b.server.address
        assert isinstance(await a.client.validate_at(host, port, RIGHT, NODE_B), ValInfo)
        # validate_at returns once the client has read the server's close_notify
        assert len(marks) == 1
        assert len(writes) - marks[0] == 1
