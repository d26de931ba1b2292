"""The files a provider config names, checked the way the daemons will use them.

`check_files(r, cfg, roles)` records a FILE:LINE error on the reader for each file that would
stop a role: missing (unless `allow_missing`), not a regular file, not a certificate or key,
a key that does not match its certificate, an overlay document that does not parse (or holds
a DTD), and `overlay.create: false` with no bootstrap node but this provider's own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from yaml.nodes import Node

from vipr.config.schema import ProviderConfig
from vipr.config.values import HostPort
from vipr.config.yaml_reader import YamlReader

T = TypeVar("T")

MAX_FILE_SIZE = 1 << 20  # a certificate, key or overlay document; anything larger is not one
ROLES = ("overlay", "proxy")  # the roles whose files are checked (pvp reads the overlay's)


class _Bad(Exception):
    """One file is unusable; the message says why (the caller adds FILE:LINE: key)."""


def _read(path: Path) -> bytes:
    """The file's bytes; _Bad when it is not a regular, readable file of sane size."""
    if path.is_dir():
        raise _Bad(f"{path} is a directory, not a file")
    if not path.is_file():  # also a FIFO or device, which the daemon could block on
        raise _Bad(f"{path} is not a regular file")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise _Bad(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise _Bad(f"{path} is larger than {MAX_FILE_SIZE >> 20} MiB")
    return data


def _certs(path: Path) -> list[x509.Certificate]:
    data = _read(path)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise _Bad(f"{path} holds no certificate (expected PEM or DER X.509)") from None
    return certs


def _key(path: Path) -> PrivateKeyTypes:
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _Bad(f"{path}: the key is encrypted (the daemons read unencrypted keys)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _Bad(f"{path} holds no private key (expected PEM)") from None


def _spki(key: x509.Certificate | PrivateKeyTypes) -> bytes:
    pub = key.public_key()
    return pub.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class _Checker:
    def __init__(self, r: YamlReader, allow_missing: bool) -> None:
        self.r = r
        self.allow_missing = allow_missing

    def where(self, key: str) -> Node | int:
        return self.r.nodes.get(key, 1)

    def present(self, key: str, path: Path | None) -> bool:
        """True when `path` is set and exists; a missing file is an error unless allowed."""
        if not isinstance(path, Path):
            return False
        if path.exists() or path.is_symlink():
            return True
        if not self.allow_missing:
            self.r.error(self.where(key), key,
                         f"file not found: {path} (--allow-missing-files if it comes later)")
        return False

    def run(self, key: str, fn: Callable[[Path], T], path: Path) -> T | None:
        """fn(path), or None with the error recorded at `key`."""
        try:
            return fn(path)
        except _Bad as exc:
            self.r.error(self.where(key), key, str(exc))
            return None

    def pair(self, prefix: str, cert_path: Path | None, key_path: Path | None,
             *, rsa_only: bool = False) -> None:
        """A certificate and its key: both load, and the key is the certificate's."""
        if not isinstance(cert_path, Path) or not isinstance(key_path, Path):
            return
        ck, kk = f"{prefix}.cert", f"{prefix}.key"
        certs = self.run(ck, _certs, cert_path) if self.present(ck, cert_path) else None
        key = self.run(kk, _key, key_path) if self.present(kk, key_path) else None
        if key is not None and rsa_only and not isinstance(key, rsa.RSAPrivateKey):
            self.r.error(self.where(kk), kk,
                         f"{key_path}: expected an RSA key (RFC 6940 node certificates)")
            return
        if certs is None or key is None:
            return
        if _spki(certs[0]) != _spki(key):
            self.r.error(self.where(kk), kk,
                         f"{key_path} does not match the certificate {cert_path}")
            return
        if not rsa_only:  # the proxy hands both to OpenSSL: check it the same way
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                ctx.load_cert_chain(str(cert_path), str(key_path))
            except (ssl.SSLError, OSError) as exc:
                self.r.error(self.where(kk), kk, f"{key_path}: TLS cannot use it: {exc}")

    def ca(self, key: str, path: Path | None) -> None:
        if not self.present(key, path) or not isinstance(path, Path):
            return
        if self.run(key, _certs, path) is None:
            return
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError) as exc:
            self.r.error(self.where(key), key, f"{path}: TLS cannot use it: {exc}")


def _own_address(listen_host: str, host: str) -> bool:
    if host == listen_host:
        return True
    if listen_host in ("0.0.0.0", "::"):
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"
    return False


def _check_node_certs(c: _Checker, cert: Path | None, key: Path | None, count: int) -> None:
    """Node i > 0 uses `<cert stem>-<i><suffix>` with the same key when that file exists
    (`vipr ca issue --per-node`, overlayd `_identities`): each must load and match the key."""
    if not isinstance(cert, Path) or not isinstance(key, Path) or not key.is_file():
        return
    try:
        spki = _spki(_key(key))
    except _Bad:
        return  # reported for overlay.key
    for i in range(1, min(count, 4096)):
        own = cert.with_name(f"{cert.stem}-{i}{cert.suffix}")
        if not own.exists():
            continue
        certs = c.run("overlay.cert", _certs, own)
        if certs is not None and _spki(certs[0]) != spki:
            c.r.error(c.where("overlay.cert"), "overlay.cert",
                      f"{own} (node {i}) does not match the key {key}")


def _check_overlay(c: _Checker, cfg: ProviderConfig) -> None:
    from vipr.reload.errors import ReloadError
    from vipr.reload.overlay_config import (
        OverlayConfigError,
        check_answers_fit,
        load_overlay_config,
    )
    from vipr.reload.wire.security import load_certificates

    oc = cfg.overlay
    c.pair("overlay", oc.cert, oc.key, rsa_only=True)
    count = cfg.overlay_node_count() if isinstance(oc.nodes, int | None) else 1
    _check_node_certs(c, oc.cert, oc.key, count)
    key = "overlay.configuration"
    if not c.present(key, oc.configuration) or oc.configuration is None:
        return
    doc = oc.configuration
    if c.run(key, _read, doc) is None:
        return
    certs: list[x509.Certificate] = []
    if isinstance(oc.cert, Path) and oc.cert.is_file():
        with contextlib.suppress(OSError, ValueError, ReloadError):  # reported for overlay.cert
            certs = load_certificates(oc.cert.read_bytes())
    try:
        # RFC 6940 §11.1: signed, by a signer of the CA that issued overlay.cert (as overlayd)
        conf = load_overlay_config(doc, member=certs[0] if certs else None,
                                   chain=certs[1:])
        conf.root_certificates()
        check_answers_fit(conf)  # DESIGN §4: a full resource fits one answer; overlayd refuses it
    except (OverlayConfigError, ValueError) as exc:
        c.r.error(c.where(key), key, f"{doc}: {exc}")
        return
    if oc.create is not False or not isinstance(oc.listen, HostPort):
        return
    # overlayd skips bootstrap nodes that are its own listeners: without another, it can never
    # join ("no bootstrap node reachable", retried forever).
    own = range(oc.listen.port, oc.listen.port + count)
    others = [b for b in conf.bootstrap_nodes
              if not (b.port in own and _own_address(oc.listen.host, b.address))]
    if not others:
        where = c.r.nodes.get("overlay.create") or c.where(key)
        named = ", ".join(f"{b.address}:{b.port}" for b in conf.bootstrap_nodes) or "none"
        c.r.error(where, "overlay.create",
                  f"false, but {doc} names no bootstrap node other than this provider's own "
                  f"overlay.listen (bootstrap: {named}): this node could never join; set "
                  "overlay.create: true on the provider that starts the overlay")


def check_files(r: YamlReader, cfg: ProviderConfig, roles: Collection[str] = ROLES,
                *, allow_missing: bool = False) -> None:
    """Record an error on `r` for each file of `roles` that would stop that role."""
    c = _Checker(r, allow_missing)
    if "overlay" in roles:
        _check_overlay(c, cfg)
    if "proxy" in roles:
        for name in ("internal", "pstn", "federation"):
            iface = getattr(cfg.proxy.interfaces, name)
            tls = getattr(iface, "tls", None)
            if tls is None:
                continue
            prefix = f"proxy.interfaces.{name}.tls"
            c.pair(prefix, tls.cert, tls.key)
            c.ca(f"{prefix}.ca", tls.ca)
