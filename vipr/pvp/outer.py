"""PVP profile v2: the outer TLS 1.3 channel around TLS-SRP (DESIGN §5 "Profile v2").

The SRP login names the caller, the callee and the call's time window, and RFC 5054 §2.8.1
puts it in the ClientHello in clear. Profile v2 runs the unchanged TLS-SRP exchange inside a
TLS 1.3 channel (RFC 8446) that both ends authenticate with their overlay node certificates:

- both sides: TLS 1.3 only, ALPN `vipr-pvp/2` (RFC 7301) required, the peer's certificate
  must chain to the overlay's root certificate(s) and be valid now (OpenSSL checks both) and
  carry at least one `reload://<Node-ID>@<overlay>/` URI for this overlay (RFC 6940 §11.3);
- the client checks that the server's certificate names the Node-ID it AppAttached to; it
  asks for that node's certificate with SNI (RFC 6066 §3, `<hex>.node.vipr.invalid`: a
  provider's nodes may each hold their own certificate, `vipr ca issue --per-node`);
- the server logs the client's Node-ID(s) and certificate user name (rfc822Name);
- the client sends its first SRP byte only after the server has confirmed the handshake
  (its NewSessionTicket, RFC 8446 §4.6.1, comes only once the client's certificate passed):
  a refused client never puts an SRP ClientHello on the wire, even encrypted;
- the ticket lets the next connection to that server resume (RFC 8446 §2.2, PSK with
  (EC)DHE): no RSA signatures then, the identities are those of the first handshake.

`OuterTls` holds the contexts and the session cache; `OuterLayer` is the sans-I/O record
layer of one connection (`ssl.SSLObject` over two `ssl.MemoryBIO`s); `SrpConnection` drives it.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from vipr.reload.wire.security import (
    ReloadSecurityError,
    cert_node_ids,
    cert_user,
    load_certificates,
)

if TYPE_CHECKING:
    from vipr.config import ProviderConfig

__all__ = ["ALPN", "OuterLayer", "OuterTls", "OuterTlsConfigError", "PeerIdentity", "sni_name"]

ALPN = "vipr-pvp/2"
SNI_SUFFIX = ".node.vipr.invalid"  # RFC 6761 §6.4: .invalid never resolves
MAX_SESSIONS = 1024  # cached TLS sessions (one per server Node-ID and address)
_TLS12_ALERT_PROTOCOL_VERSION = bytes([21, 3, 3, 0, 2, 2, 70])  # RFC 5246 §7.2: fatal, 70


class OuterTlsConfigError(ValueError):
    """The node certificate, key or overlay roots cannot be used for the outer TLS."""


def sni_name(node_id: str) -> str:
    return f"{node_id}{SNI_SUFFIX}"


def protocol_version_alert() -> bytes:
    """A fatal TLS 1.2 protocol_version alert record: the answer to a profile-v1 client's raw
    TLS-SRP ClientHello (its tlslite reports `remote alert protocol_version`)."""
    return _TLS12_ALERT_PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What the peer's verified certificate says: its Node-IDs (hex) and user name."""

    node_ids: tuple[str, ...]
    user: str

    def describe(self) -> str:
        return f"node {','.join(self.node_ids)} user {self.user}"


class OuterTls:
    """The outer TLS contexts of one provider and its client session cache.

    `identities`: (Node-ID, certificate file, key file) per overlay node of this provider; the
    first is the default (the client's certificate, the server's without a matching SNI)."""

    def __init__(self, overlay: str, roots_pem: str,
                 identities: Sequence[tuple[bytes, Path, Path]]) -> None:
        if not identities:
            raise OuterTlsConfigError("no node certificate for the PVP outer TLS")
        if not roots_pem.strip():
            raise OuterTlsConfigError(
                "the overlay configuration has no root certificate (PVP v2 needs one)")
        self.overlay = overlay
        self._roots = roots_pem
        self.node_ids = tuple(n.hex() for n, _, _ in identities)
        try:
            self.client_context = self._context(ssl.PROTOCOL_TLS_CLIENT, identities[0])
            self._by_node = {n.hex(): self._context(ssl.PROTOCOL_TLS_SERVER, (n, c, k))
                             for n, c, k in identities}
        except (OSError, ssl.SSLError) as e:
            raise OuterTlsConfigError(f"PVP outer TLS: {e}") from None
        self.server_context = self._by_node[self.node_ids[0]]
        self.server_context.sni_callback = self._sni
        self._sessions: OrderedDict[tuple[str, int, str], ssl.SSLSession] = OrderedDict()

    def _context(self, proto: int, ident: tuple[bytes, Path, Path]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(proto)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False  # the Node-ID check replaces the host name check
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self._roots)
        ctx.load_cert_chain(str(ident[1]), str(ident[2]))
        ctx.set_alpn_protocols([ALPN])
        if proto == ssl.PROTOCOL_TLS_SERVER:
            ctx.num_tickets = 1  # the client's go-ahead, and its next resumption
        return ctx

    def _sni(self, obj: ssl.SSLObject | ssl.SSLSocket, name: str | None,
             ctx: ssl.SSLContext) -> None:
        if name and name.endswith(SNI_SUFFIX):
            other = self._by_node.get(name[: -len(SNI_SUFFIX)])
            if other is not None and other is not ctx:
                obj.context = other

    @classmethod
    def from_config(cls, cfg: ProviderConfig) -> OuterTls:
        """From `overlay.cert`/`overlay.key` (node i: `<stem>-<i><suffix>` when present, as
        overlayd) and the overlay configuration's root certificates."""
        from cryptography.hazmat.primitives import serialization

        from vipr.reload.overlay_config import OverlayConfigError, load_overlay_config

        oc = cfg.overlay
        if oc.cert is None or oc.key is None or oc.configuration is None:
            raise OuterTlsConfigError(
                "PVP v2 needs overlay.cert, overlay.key and overlay.configuration")
        try:
            own = load_certificates(oc.cert.read_bytes())
            conf = load_overlay_config(oc.configuration, member=own[0], chain=own[1:])
            roots = "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                            for c in conf.root_certificates())
            idents: list[tuple[bytes, Path, Path]] = []
            for i in range(cfg.overlay_node_count()):
                path = oc.cert if i == 0 else oc.cert.with_name(
                    f"{oc.cert.stem}-{i}{oc.cert.suffix}")
                if not path.exists():
                    continue
                ids = cert_node_ids(x509.load_pem_x509_certificate(path.read_bytes()),
                                    conf.instance_name)
                idents += [(n, path, oc.key) for n in ids if all(n != m for m, _, _ in idents)]
        except (OSError, ValueError, OverlayConfigError, ReloadSecurityError) as e:
            raise OuterTlsConfigError(f"PVP outer TLS: {e}") from None
        return cls(conf.instance_name, roots, idents)

    def identify(self, der: bytes | None) -> PeerIdentity:
        """The verified peer certificate's identity; ValueError when it names no Node-ID of
        this overlay (OpenSSL has checked the chain and the validity period already)."""
        if not der:
            raise ValueError("no peer certificate")
        return _identity(der, self.overlay)

    def session(self, key: tuple[str, int, str]) -> ssl.SSLSession | None:
        return self._sessions.get(key)

    def remember(self, key: tuple[str, int, str], session: ssl.SSLSession | None) -> None:
        if session is None or not session.has_ticket:
            return
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)

    def forget(self, key: tuple[str, int, str]) -> None:
        self._sessions.pop(key, None)


@functools.lru_cache(maxsize=256)
def _identity(der: bytes, overlay: str) -> PeerIdentity:
    """Parsed once per certificate: a peer validates again and again (~0.1 ms a parse)."""
    cert = x509.load_der_x509_certificate(der)
    ids = cert_node_ids(cert, overlay)
    if not ids:
        raise ValueError(f"certificate names no Node-ID of overlay {overlay}")
    return PeerIdentity(tuple(n.hex() for n in ids), cert_user(cert) or "?")


class OuterLayer:
    """One connection's outer TLS record layer, sans I/O: `feed` raw bytes in, get plaintext;
    `wrap` plaintext, get raw bytes; `take_out` what TLS itself has to send."""

    def __init__(self, ctx: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=server_hostname, session=session)
        self.established = False
        self.closed = False  # the peer's close_notify came

    def handshake(self) -> bool:
        """One handshake step: True once finished. ssl.SSLError on failure."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        if self.obj.selected_alpn_protocol() != ALPN:
            raise ssl.SSLError(f"peer did not negotiate ALPN {ALPN}")
        self.established = True
        return True

    def feed(self, raw: bytes) -> bytes:
        """Raw bytes in; the plaintext now readable (b"" during the handshake)."""
        if raw:
            self.incoming.write(raw)
        if not self.established or self.closed:
            return b""
        out = bytearray()
        while self.incoming.pending or self.obj.pending():  # a raised WantRead costs
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            out += chunk
        return bytes(out)

    def wrap(self, plain: bytes) -> bytes:
        if plain:
            self.obj.write(plain)
        return self.take_out()

    def take_out(self) -> bytes:
        return self.outgoing.read() if self.outgoing.pending else b""

    def close_notify(self) -> bytes:
        """Our close_notify (RFC 8446 §6.1), best effort."""
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        return self.take_out()

    def peer_der(self) -> bytes | None:
        return self.obj.getpeercert(binary_form=True)
