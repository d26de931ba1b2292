"""Federation certificates: SAN/EKU content, a real mutual-TLS handshake, the CLI."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from vipr.cli import main
from vipr.proxy.federation_tls import create_federation_ca, issue_federation_cert
from vipr.proxy.sip.transport import cert_dns_names


def _ctx(purpose: ssl.Purpose, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    if purpose is ssl.Purpose.CLIENT_AUTH:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_leaf_has_domain_ip_and_both_ekus(tmp_path: Path) -> None:
    ca, cakey = create_federation_ca(tmp_path / "ca")
    cert, key = issue_federation_cert(ca, cakey, "b.example.net", tmp_path / "b")
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["b.example.net"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (key.stat().st_mode & 0o777) == 0o600


async def test_mutual_tls_handshake_sees_peer_domain(tmp_path: Path) -> None:
    ca, cakey = create_federation_ca(tmp_path / "ca")
    acert, akey = issue_federation_cert(ca, cakey, "a.example.net", tmp_path / "a")
    bcert, bkey = issue_federation_cert(ca, cakey, "b.example.net", tmp_path / "b")
    seen: asyncio.Future[tuple[str, ...]] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen.set_result(cert_dns_names(der))
        w.close()

    server = await asyncio.start_server(
        on_conn, "127.0.0.1", 0, ssl=_ctx(ssl.Purpose.CLIENT_AUTH, ca, bcert, bkey))
    port = server.sockets[0].getsockname()[1]
    _r, w = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_ctx(ssl.Purpose.SERVER_AUTH, ca, acert, akey),
        server_hostname="b.example.net")
    assert await asyncio.wait_for(seen, 10) == ("a.example.net",)
    w.close()
    server.close()
    await server.wait_closed()


def test_cli_ca_and_issue(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["tls", "ca", "--out", str(tmp_path / "ca")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ca" / "ca.pem").exists()
    res = runner.invoke(main, ["tls", "issue", "--ca-dir", str(tmp_path / "ca"),
                               "--domain", "a.example.net", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "a.example.net.pem").exists()
    res = runner.invoke(main, ["tls", "issue", "--ca-dir", str(tmp_path / "nope"),
                               "--domain", "a.example.net", "--out", str(tmp_path / "a")])
    assert res.exit_code == 1
