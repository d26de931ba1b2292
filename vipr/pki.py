"""X.509 pieces shared by the overlay CA (vipr.reload.ca) and the federation CA
(vipr.proxy.federation_tls)."""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# Backdated so a certificate issued now verifies on a peer whose clock is a little behind.
CLOCK_SKEW_ALLOWANCE = _dt.timedelta(minutes=5)


def validity_window(days: float) -> tuple[_dt.datetime, _dt.datetime]:
    """(not_before, not_after): from a few minutes ago for `days` days."""
    start = _dt.datetime.now(_dt.UTC) - CLOCK_SKEW_ALLOWANCE
    return start, start + _dt.timedelta(days=days)


def self_signed_ca(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, common_name: str,
                   days: float) -> x509.Certificate:
    """A root CA certificate that may sign leaves only (pathLen 0; keyCertSign, cRLSign)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = validity_window(days)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
