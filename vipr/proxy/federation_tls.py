"""Federation TLS certificates for the proxy's mutual-TLS interface (DESIGN §6, RFC 5922).

A small private CA and leaf certificates carrying the provider's domain as a subjectAltName
dNSName (RFC 5922 §7.1: the SIP domain identity comes from dNSName entries), plus the loopback
IP address so tests and the testnet can connect to 127.0.0.1.  Leaves carry both serverAuth and
clientAuth EKU because every federation peer is client and server (mutual TLS).
"""

from __future__ import annotations

import ipaddress
import os
import ssl as _ssl
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vipr.pki import self_signed_ca, validity_window
from vipr.private_files import write_private

if TYPE_CHECKING:
    from vipr.config import ProviderConfig, TlsFiles

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"


class FederationTlsError(Exception):
    """A certificate could not be created or the CA files are unusable."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:                 # 0600 whatever the umask, also over an older file
        write_private(path, data)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_federation_ca(out_dir: Path, name: str = "VIPR federation CA",
                         *, days: float = 3650) -> tuple[Path, Path]:
    """Create a self-signed CA in out_dir (ca.pem, ca.key); returns (cert path, key path)."""
    out_dir = Path(out_dir)
    key = _key()
    cert = self_signed_ca(key, name, days)
    cert_path, key_path = out_dir / CA_CERT_NAME, out_dir / CA_KEY_NAME
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cert_path, key_path


def _load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(Path(ca_cert).read_bytes())
        key = serialization.load_pem_private_key(Path(ca_key).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise FederationTlsError(f"cannot load CA {ca_cert} / {ca_key}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FederationTlsError(f"{ca_key}: expected an EC private key")
    return cert, key


def issue_federation_cert(ca_cert: Path, ca_key: Path, domain: str, out_dir: Path,
                          *, days: float = 825) -> tuple[Path, Path]:
    """Issue <domain>.pem / <domain>.key in out_dir, signed by the CA; returns (cert, key).

    subjectAltName: dNSName=domain and IP 127.0.0.1; EKU serverAuth + clientAuth.
    """
    if not domain or "/" in domain or domain.startswith("."):
        raise FederationTlsError(f"not a domain name: {domain!r}")
    cacert, cakey = _load_ca(ca_cert, ca_key)
    key = _key()
    start, end = validity_window(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(cacert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(domain),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(cakey.public_key()),
                       critical=False)
        .sign(cakey, hashes.SHA256())
    )
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / f"{domain}.pem", out_dir / f"{domain}.key"
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cert_path, key_path


def client_context(tls: TlsFiles) -> _ssl.SSLContext:
    """Outgoing federation TLS: verify the peer against the CA, present our certificate."""
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def server_context(tls: TlsFiles) -> _ssl.SSLContext:
    """The federation listener: mutual TLS (a client certificate from the CA is required)."""
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.load_verify_locations(str(tls.ca))
    ctx.verify_mode = _ssl.CERT_REQUIRED   # mutual authentication (DESIGN §6)
    return ctx


def check_tls_files(cfg: ProviderConfig) -> list[str]:
    """Problems that stop the proxy from starting (beyond what config loading checks)."""
    out: list[str] = []
    fed = cfg.proxy.interfaces.federation
    if fed is not None and fed.tls is not None:
        for label, p in (("cert", fed.tls.cert), ("key", fed.tls.key), ("ca", fed.tls.ca)):
            if not p.exists():
                out.append(f"proxy.interfaces.federation.tls.{label}: {p} does not exist")
    return out
