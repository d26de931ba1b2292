"""Certificates, message and stored-data signatures (RFC 6940 §6.3.4, §7.1, §11.3, §13.4).

All checks raise `ReloadSecurityError` (callers answer Error_Forbidden or drop, §6.1.2).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vipr.private_files import write_private
from vipr.reload.errors import ReloadError
from vipr.reload.wire.codec import NODE_ID_LENGTH, Writer
from vipr.reload.wire.envelope import (
    CERT_X509,
    HASH_SHA256,
    IDENTITY_CERT_HASH,
    IDENTITY_CERT_HASH_NODE_ID,
    IDENTITY_NONE,
    SIG_RSA,
    GenericCertificate,
    Message,
    SecurityBlock,
    Signature,
    SignerIdentity,
)
from vipr.reload.wire.forwarding import ForwardingHeader
from vipr.reload.wire.storage_bodies import ArrayEntry, StoredData, StoredDataValue, value_bytes


class ReloadSecurityError(ReloadError):
    """A signature, certificate or identity check failed."""


_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_URI_RE = re.compile(r"^reload://([0-9A-Fa-f]+)@([^/]+)/?$")


def _now_utc(now: float | None) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.UTC)
    return _dt.datetime.fromtimestamp(now, _dt.UTC)


def reload_uri(node_id: bytes, overlay: str) -> str:
    """§11.3 / RFC 6940 §14.15: `reload://<hex Destination>@<overlay>/`, Destination = 01 10 id."""
    return f"reload://0110{node_id.hex()}@{overlay}/"


def parse_reload_uri(uri: str) -> tuple[bytes, str] | None:
    """Node-ID and overlay of a RELOAD URI; accepts the RFC form and bare hex (danpascu form)."""
    m = _URI_RE.match(uri)
    if not m:
        return None
    hexpart, overlay = m.group(1), m.group(2)
    if len(hexpart) % 2:
        return None
    raw = bytes.fromhex(hexpart)
    if len(raw) == NODE_ID_LENGTH + 2 and raw[0] == 1 and raw[1] == NODE_ID_LENGTH:
        return raw[2:], overlay
    if len(raw) == NODE_ID_LENGTH:
        return raw, overlay
    return None


def cert_node_ids(cert: x509.Certificate, overlay: str | None = None) -> tuple[bytes, ...]:
    """Node-IDs named by the certificate's subjectAltName RELOAD URIs (optionally one overlay)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        parsed = parse_reload_uri(uri)
        if parsed and (overlay is None or parsed[1] == overlay):
            out.append(parsed[0])
    return tuple(out)


def cert_user(cert: x509.Certificate) -> str | None:
    """The rfc822Name user name of a RELOAD certificate (§11.3)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = san.get_values_for_type(x509.RFC822Name)
    return names[0] if names else None


def self_signed_node_id(cert: x509.Certificate, digest: str = "sha256", index: int = 0) -> bytes:
    """§13.4: Node-ID = high-order bits of H(SubjectPublicKeyInfo); index (1-based) prefixed
    as a 4-byte integer when a certificate carries several Node-IDs."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    data = (struct.pack("!I", index) if index else b"") + spki
    h = hashlib.new(digest, data).digest()
    return h[:NODE_ID_LENGTH]


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise ReloadSecurityError(f"bad certificate: {e}") from e


def load_certificates(data: bytes) -> list[x509.Certificate]:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificates(data)
    return [load_certificate(data)]


def cert_der(cert: x509.Certificate) -> bytes:
    return _der_and_hash(cert)[0]


@functools.lru_cache(maxsize=2048)
def _der_and_hash(cert: x509.Certificate) -> tuple[bytes, bytes]:
    der = cert.public_bytes(serialization.Encoding.DER)
    return der, hashlib.sha256(der).digest()


@dataclass
class NodeCredentials:
    """A node's certificate + private key, with precomputed signer identity (RSA-2048)."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    node_id: bytes
    overlay: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    der: bytes = field(init=False)
    identity: SignerIdentity = field(init=False)
    identity_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.der = cert_der(self.cert)
        ids = cert_node_ids(self.cert) or (self.node_id,)
        if len(ids) > 1:
            # §6.3.4: cert_hash_node_id when the certificate holds several Node-IDs.
            h = hashlib.sha256(self.node_id + self.der).digest()
            self.identity = SignerIdentity(IDENTITY_CERT_HASH_NODE_ID, HASH_SHA256, h)
        else:
            h = hashlib.sha256(self.der).digest()
            self.identity = SignerIdentity(IDENTITY_CERT_HASH, HASH_SHA256, h)
        self.identity_bytes = self.identity.encode()

    @property
    def user(self) -> str | None:
        return cert_user(self.cert)

    def generic_certificates(self) -> tuple[GenericCertificate, ...]:
        extra = (GenericCertificate(CERT_X509, cert_der(c)) for c in self.chain)
        return (GenericCertificate(CERT_X509, self.der), *extra)

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, _PKCS1, _SHA256)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, directory: Path, stem: str = "node") -> tuple[Path, Path]:
        """Write `<stem>.crt` / `<stem>.key` (0600) for TLS contexts; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cp, kp = directory / f"{stem}.crt", directory / f"{stem}.key"
        cp.write_bytes(self.cert_pem() + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.chain))
        write_private(kp, self.key_pem())
        return cp, kp

    @classmethod
    def load(cls, cert_path: Path, key_path: Path, node_id: bytes | None = None,
             overlay: str | None = None) -> NodeCredentials:
        certs = load_certificates(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ReloadSecurityError("node keys must be RSA (RFC 6940 {4,1})")
        cert = certs[0]
        ids = cert_node_ids(cert, overlay)
        if node_id is None:
            node_id = ids[0] if ids else self_signed_node_id(cert)
        return cls(cert, key, node_id, overlay, tuple(certs[1:]))


@dataclass(frozen=True)
class VerifiedSigner:
    """Who signed: the certificate, its Node-IDs, the Node-ID the identity names, user name."""

    cert: x509.Certificate
    node_ids: tuple[bytes, ...]
    node_id: bytes
    user: str | None


class TrustStore:
    """Trust anchors (`root-cert`s) plus the self-signed switch (§11.1, §13.4)."""

    def __init__(
        self,
        roots: Iterable[x509.Certificate] = (),
        *,
        overlay: str | None = None,
        self_signed_permitted: bool = False,
        self_signed_digest: str = "sha256",
        bad_nodes: Iterable[bytes] = (),
    ) -> None:
        self.roots = list(roots)
        self.overlay = overlay
        self.self_signed_permitted = self_signed_permitted
        self.self_signed_digest = self_signed_digest
        self.bad_nodes = set(bad_nodes)
        self._cache: dict[bytes, tuple[bytes, ...]] = {}

    def roots_pem(self) -> str:
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.roots)

    def _check_time(self, cert: x509.Certificate, now: _dt.datetime) -> None:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ReloadSecurityError("certificate expired or not yet valid")

    def validate(
        self,
        cert: x509.Certificate,
        now: float | None = None,
        intermediates: Sequence[x509.Certificate] = (),
    ) -> tuple[bytes, ...]:
        """Check time validity and the chain to a root; return the certificate's Node-IDs."""
        t = _now_utc(now)
        self._check_time(cert, t)
        der = cert_der(cert)
        cached = self._cache.get(der)
        if cached is not None:
            return cached
        ids = self._validate_uncached(cert, t, intermediates)
        if not ids:
            raise ReloadSecurityError("certificate names no Node-ID")
        if self.bad_nodes.intersection(ids):
            raise ReloadSecurityError("certificate names a revoked Node-ID (bad-node)")
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[der] = ids
        return ids

    def _validate_uncached(
        self, cert: x509.Certificate, t: _dt.datetime, intermediates: Sequence[x509.Certificate]
    ) -> tuple[bytes, ...]:
        current = cert
        for _depth in range(5):
            for root in self.roots:
                if self._issued_by(current, root):
                    self._check_time(root, t)
                    return cert_node_ids(cert, self.overlay)
            nxt = next((c for c in intermediates if c != current and self._issued_by(current, c)
                        and _is_ca(c)), None)
            if nxt is None:
                break
            self._check_time(nxt, t)
            current = nxt
        if self.self_signed_permitted and self._issued_by(cert, cert):
            # §13.4: the Node-ID is derived from the public key; verifiers recompute it.
            nid = self_signed_node_id(cert, self.self_signed_digest)
            named = cert_node_ids(cert, self.overlay)
            if named and nid not in named:
                raise ReloadSecurityError("self-signed certificate Node-ID does not match its key")
            return (nid,)
        raise ReloadSecurityError("certificate does not chain to a configured root")

    @staticmethod
    def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if cert.issuer != issuer.subject:
            return False
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def message_signature_input(overlay: int, transaction_id: int, contents: bytes,
                            identity_bytes: bytes) -> bytes:
    """§7.1: overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity (wire encodings)."""
    return struct.pack("!IQ", overlay, transaction_id) + contents + identity_bytes


def sign_message(creds: NodeCredentials, header: ForwardingHeader, contents: bytes,
                 include_certs: bool = True) -> SecurityBlock:
    data = message_signature_input(header.overlay, header.transaction_id, contents,
                                   creds.identity_bytes)
    sig = Signature(HASH_SHA256, SIG_RSA, creds.identity, creds.sign(data))
    certs = creds.generic_certificates() if include_certs else ()
    return SecurityBlock(certs, sig)


def _find_cert(identity: SignerIdentity, certs: Iterable[x509.Certificate],
               overlay: str | None) -> tuple[x509.Certificate, bytes | None]:
    if identity.hash_alg != HASH_SHA256:
        raise ReloadSecurityError(f"unsupported identity hash algorithm {identity.hash_alg}")
    for c in certs:
        der, digest = _der_and_hash(c)
        if identity.identity_type == IDENTITY_CERT_HASH:
            if digest == identity.hash_value:
                return c, None
        else:
            for nid in cert_node_ids(c, overlay):
                if hashlib.sha256(nid + der).digest() == identity.hash_value:
                    return c, nid
    raise ReloadSecurityError("no certificate matches the signer identity")


def verify_signature(
    signature: Signature,
    data_without_identity: bytes,
    trust: TrustStore,
    certs: Sequence[x509.Certificate],
    now: float | None = None,
) -> VerifiedSigner:
    """Verify `data ‖ SignerIdentity` against the identity's certificate, chained to `trust`."""
    ident = signature.identity
    if ident.identity_type == IDENTITY_NONE or (signature.hash_alg, signature.sig_alg) != (
        HASH_SHA256,
        SIG_RSA,
    ):
        # §7.4.1.1: identity none / {0,0} is never acceptable on signed data; we only do {4,1}.
        raise ReloadSecurityError("unsupported or missing signature algorithm")
    cert, named = _find_cert(ident, certs, trust.overlay)
    node_ids = trust.validate(cert, now, certs)
    if named is not None and named not in node_ids:
        raise ReloadSecurityError("signer Node-ID is not in its certificate")
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise ReloadSecurityError("signer key is not RSA")
    try:
        pub.verify(signature.value, data_without_identity + ident.encode(), _PKCS1, _SHA256)
    except InvalidSignature as e:
        raise ReloadSecurityError("bad signature") from e
    node_id = named if named is not None else node_ids[0]
    return VerifiedSigner(cert, node_ids, node_id, cert_user(cert))


_CERT_CACHE: dict[bytes, x509.Certificate] = {}


def cert_from_der_cached(der: bytes) -> x509.Certificate:
    """Parse a DER certificate, remembering recent ones (peers resend the same certificate)."""
    c = _CERT_CACHE.get(der)
    if c is None:
        try:
            c = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise ReloadSecurityError(f"bad certificate: {e}") from e
        if len(_CERT_CACHE) > 1024:
            _CERT_CACHE.clear()
        _CERT_CACHE[der] = c
    return c


def message_certificates(msg: Message, extra: Iterable[x509.Certificate] = ()) -> list[
        x509.Certificate]:
    out = [cert_from_der_cached(gc.certificate) for gc in msg.security.certificates
           if gc.type == CERT_X509]
    out.extend(extra)
    return out


def verify_message(
    msg: Message,
    trust: TrustStore,
    now: float | None = None,
    extra_certs: Iterable[x509.Certificate] = (),
    expected_node_id: bytes | None = None,
) -> VerifiedSigner:
    """§6.3.4/§7.1 message signature check at the destination.

    `expected_node_id`: the Node-ID the signer must hold (e.g. the responder to a request we sent
    to that Node-ID, or the link peer for Join/Leave/Update).
    """
    certs = message_certificates(msg, extra_certs)
    data = struct.pack("!IQ", msg.header.overlay, msg.header.transaction_id) + msg.contents_bytes()
    signer = verify_signature(msg.security.signature, data, trust, certs, now)
    if expected_node_id is not None and expected_node_id not in signer.node_ids:
        raise ReloadSecurityError("message not signed by the expected Node-ID")
    return signer


def stored_data_signature_input(resource_id: bytes, kind: int, storage_time: int,
                                value: StoredDataValue, kind_bytes: int = 4) -> bytes:
    """§7.1: resource_id ‖ kind ‖ storage_time ‖ StoredDataValue (‖ SignerIdentity appended).

    Encoding (digest A.3): raw Resource-ID bytes, Kind as uint32, storage_time uint64; for arrays
    the index is set to 0 before signing (an append would otherwise change it). `kind_bytes=8`
    reproduces java-reload's 8-byte Kind (interop experiments only).
    """
    if isinstance(value, ArrayEntry):
        value = ArrayEntry(0, value.value)
    w = Writer().raw(resource_id).raw(kind.to_bytes(kind_bytes, "big"))
    return w.u64(storage_time).raw(value_bytes(value)).getvalue()


def sign_stored_data(creds: NodeCredentials, resource_id: bytes, kind: int, storage_time: int,
                     lifetime: int, value: StoredDataValue) -> StoredData:
    data = stored_data_signature_input(resource_id, kind, storage_time, value)
    sig = Signature(HASH_SHA256, SIG_RSA, creds.identity, creds.sign(data + creds.identity_bytes))
    return StoredData(storage_time, lifetime, value, sig)


def verify_stored_data(sd: StoredData, resource_id: bytes, kind: int, trust: TrustStore,
                       certs: Sequence[x509.Certificate],
                       now: float | None = None) -> VerifiedSigner:
    """Check a StoredData signature (§7.1); the signing certificate must still be valid."""
    if sd.signature is None:
        raise ReloadSecurityError("stored data of an unknown Kind cannot be verified")
    data = stored_data_signature_input(resource_id, kind, sd.storage_time, sd.value)
    return verify_signature(sd.signature, data, trust, certs, now)


def cert_from_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise ReloadSecurityError(f"bad certificate: {e}") from e


__all__ = [
    "NodeCredentials",
    "ReloadSecurityError",
    "TrustStore",
    "VerifiedSigner",
    "cert_from_der",
    "cert_node_ids",
    "cert_user",
    "load_certificate",
    "message_signature_input",
    "parse_reload_uri",
    "reload_uri",
    "self_signed_node_id",
    "sign_message",
    "sign_stored_data",
    "stored_data_signature_input",
    "verify_message",
    "verify_signature",
    "verify_stored_data",
]
