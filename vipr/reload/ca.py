"""Overlay CA and node certificates (RFC 6940 §11.3 enrollment result, §13.4 self-signed)."""

from __future__ import annotations

import datetime as _dt
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from vipr.pki import self_signed_ca, validity_window
from vipr.reload.wire.codec import NODE_ID_LENGTH
from vipr.reload.wire.security import NodeCredentials, reload_uri, self_signed_node_id

RSA_BITS = 2048  # DESIGN §4


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def random_node_id() -> bytes:
    """A random Node-ID, never all-zeros (invalid) nor all-ones (wildcard) (§6.3.1.1)."""
    while True:
        nid = os.urandom(NODE_ID_LENGTH)
        if nid not in (b"\0" * NODE_ID_LENGTH, b"\xff" * NODE_ID_LENGTH):
            return nid


def _validity(days: float, not_before: _dt.datetime | None,
              not_after: _dt.datetime | None) -> tuple[_dt.datetime, _dt.datetime]:
    start, end = validity_window(days)
    if not_before is not None:
        start, end = not_before, not_before + _dt.timedelta(days=days)
    return start, not_after or end


def create_ca(overlay: str, *, key: rsa.RSAPrivateKey | None = None, days: float = 3650,
              ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed overlay CA (the configuration's root-cert)."""
    key = key or generate_key()
    return self_signed_ca(key, f"{overlay} RELOAD CA", days), key


def _node_builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey,
                  overlay: str, user: str, node_ids: list[bytes], start: _dt.datetime,
                  end: _dt.datetime) -> x509.CertificateBuilder:
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(reload_uri(n, overlay)) for n in node_ids
    ]
    names.append(x509.RFC822Name(user))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        # §11.3: empty subject, identities only in subjectAltName (critical per RFC 5280 §4.2.1.6)
        .add_extension(x509.SubjectAlternativeName(names), critical=not subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
    )


def issue_node_cert(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    overlay: str,
    user: str,
    node_ids: list[bytes] | int = 1,
    *,
    key: rsa.RSAPrivateKey | None = None,
    days: float = 365,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
) -> NodeCredentials:
    """An RSA-2048 node certificate with `reload://` URIs and one rfc822Name (§11.3)."""
    ids = [random_node_id() for _ in range(node_ids)] if isinstance(node_ids, int) else node_ids
    key = key or generate_key()
    start, end = _validity(days, not_before, not_after)
    builder = _node_builder(x509.Name([]), ca_cert.subject, key, overlay, user, ids, start, end)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return NodeCredentials(cert, key, ids[0], overlay)


def self_signed_node_cert(overlay: str, user: str, *, key: rsa.RSAPrivateKey | None = None,
                          digest: str = "sha256", days: float = 365) -> NodeCredentials:
    """§13.4 self-signed certificate: Node-ID = H(SubjectPublicKeyInfo) high-order bits."""
    key = key or generate_key()
    start, end = _validity(days, None, None)
    # Compute the Node-ID from the key: build once to get the SPKI, then embed the URI.
    probe = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    nid = self_signed_node_id(probe, digest)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = _node_builder(name, name, key, overlay, user, [nid], start, end).sign(
        key, hashes.SHA256())
    return NodeCredentials(cert, key, nid, overlay)


def configuration_signer(ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, overlay: str,
                         *, days: float = 3650) -> NodeCredentials:
    """The configuration and kind signer of RFC 6940 §11.1: a certificate of the overlay CA
    with one Node-ID (signers are named by Node-ID in `<configuration-signer>`), kept with
    the CA and used only to sign the overlay configuration document."""
    return issue_node_cert(ca_cert, ca_key, overlay, f"configuration-signer@{overlay}", 1,
                           days=days)
