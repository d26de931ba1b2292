"""Stand-in for `vipr.proxy.federation_tls` (same signatures) until the proxy's lands.

A federation CA and per-provider leaf certificates for mutual TLS between proxies:
subjectAltName dNSName=domain + IP 127.0.0.1, serverAuth+clientAuth EKU (CONTRACTS).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cp: Path, kp: Path) -> None:
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.touch(mode=0o600)
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))


def create_federation_ca(out_dir: Path, name: str = "VIPR federation CA") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cp, kp = out_dir / "federation-ca.crt", out_dir / "federation-ca.key"
    _write(cert, key, cp, kp)
    return cp, kp


def issue_federation_cert(ca_cert: Path, ca_key: Path, domain: str,
                          out_dir: Path) -> tuple[Path, Path]:
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    cakey = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(cakey, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(domain), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(cakey, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    cp, kp = out_dir / f"{domain}.crt", out_dir / f"{domain}.key"
    _write(cert, key, cp, kp)
    return cp, kp
