"""Signatures of the overlay configuration document (RFC 6940 §11.1): sign and verify.

RFC 6940 §11.1: each `<configuration>` is followed by a `<signature>` by a configuration
signer, and each `<kind-block>` holds a `<kind-signature>` over its `<kind>` by a kind signer;
signers are named by Node-ID (`<configuration-signer>`, `<kind-signer>`). The signed bytes are
the element exactly as written, from its first `<` to the `>` closing its end tag, so any
change to the text (an attribute, a value, white space inside it) breaks the signature.

This project's form (DESIGN §4): the element's text is a base64 §6.3.4 SecurityBlock, as on
every RELOAD message: the signer's certificate chain, then a Signature {sha256, rsa} whose
input is the signed bytes ‖ SignerIdentity (§7.1's convention). The signer is a certificate
of the overlay CA with one `reload://` Node-ID (`vipr ca init` writes `signer.crt`).

Pure functions over bytes; no file or clock access (`now` is passed in).
"""

from __future__ import annotations

import base64
import binascii
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cryptography import x509

from vipr.reload.overlay_config import (
    NS,
    OverlayConfigError,
    OverlayConfiguration,
    refuse_dtd,
)
from vipr.reload.wire.codec import Reader, ReloadDecodeError
from vipr.reload.wire.envelope import HASH_SHA256, SIG_RSA, SecurityBlock, Signature
from vipr.reload.wire.security import (
    NodeCredentials,
    ReloadSecurityError,
    TrustStore,
    VerifiedSigner,
    cert_from_der,
    verify_signature,
)

SIGN_COMMAND = "vipr ca sign-overlay-doc"


class ConfigSignatureError(OverlayConfigError):
    """The document is unsigned, wrongly signed or signed by someone not allowed to."""


@dataclass
class _Element:
    start: int  # byte offset of "<"
    end: int = -1  # byte offset after the ">" of the end tag
    text: list[str] = field(default_factory=list)


@dataclass
class _KindSpan:
    kind: _Element
    signature: _Element | None = None


@dataclass
class _ConfigSpan:
    instance_name: str
    sequence: int | None
    element: _Element
    signature: _Element | None = None
    kinds: list[_KindSpan] = field(default_factory=list)


def _end_of_tag(data: bytes, at: int) -> int:
    """Offset after the `>` of the end tag (or empty-element tag) that starts at `at`."""
    if data.startswith(b"</", at):
        return data.index(b">", at) + 1
    quote = 0  # an empty-element tag: skip ">" inside attribute values
    for i in range(at, len(data)):
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
    raise OverlayConfigError("unterminated tag")


def _locate(data: bytes) -> list[_ConfigSpan]:
    """Byte ranges of every configuration, its signature, and each kind + kind-signature."""
    refuse_dtd(data)  # no DOCTYPE/ENTITY before expat expands anything (DESIGN §10)
    p = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    p.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[tuple[str, _Element]] = []
    confs: list[_ConfigSpan] = []
    block: list[_KindSpan | None] = [None]

    def local(name: str) -> str:
        ns, _, tag = name.rpartition(" ")
        return tag if ns == NS else ""

    def start(name: str, attrs: dict[str, str]) -> None:
        el = _Element(p.CurrentByteIndex)
        tag, depth = local(name), len(stack)
        if depth == 1 and tag == "configuration":
            seq = attrs.get("sequence")
            confs.append(_ConfigSpan(attrs.get("instance-name", ""),
                                     int(seq) if seq and seq.isdigit() else None, el))
        elif depth == 1 and tag == "signature" and confs and confs[-1].signature is None:
            confs[-1].signature = el
        elif tag == "kind" and stack and local(stack[-1][0]) == "kind-block" and confs:
            span = _KindSpan(el)
            block[0] = span
            confs[-1].kinds.append(span)
        elif (tag == "kind-signature" and stack and local(stack[-1][0]) == "kind-block"
              and block[0] is not None and block[0].signature is None):
            block[0].signature = el
        stack.append((name, el))

    def end(name: str) -> None:
        _, el = stack.pop()
        el.end = _end_of_tag(data, p.CurrentByteIndex)
        if local(name) == "kind-block":
            block[0] = None

    def chars(text: str) -> None:
        if stack:
            stack[-1][1].text.append(text)

    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = chars
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise OverlayConfigError(f"not well-formed XML: {e}") from None
    return confs


# ------------------------------------------------------------------ signing


def _security_block(signer: NodeCredentials, signed: bytes) -> str:
    sig = Signature(HASH_SHA256, SIG_RSA, signer.identity,
                    signer.sign(signed + signer.identity_bytes))
    return base64.b64encode(SecurityBlock(signer.generic_certificates(), sig).encode()).decode()


def _prefix(data: bytes, el: _Element) -> str:
    """`p2pcf:` when the element is written with a prefix, else "" (the same namespace)."""
    name = data[el.start + 1 : el.start + 64].split(b">")[0].split()[0].rstrip(b"/")
    return name.decode().rpartition(":")[0] + ":" if b":" in name else ""


def _indent(data: bytes, at: int) -> str:
    line = data.rfind(b"\n", 0, at) + 1
    lead = data[line:at]
    return lead.decode() if not lead.strip() else ""


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for a, b, new in sorted(edits, reverse=True):
        out[a:b] = new
    return bytes(out)


def strip_signatures(data: bytes) -> bytes:
    """The document without its `<signature>` and `<kind-signature>` elements."""
    edits: list[tuple[int, int, bytes]] = []
    for c in _locate(data):
        spans = [c.signature] + [k.signature for k in c.kinds]
        for el in spans:
            if el is not None:
                a = el.start - len(_indent(data, el.start))
                if a > 0 and data[a - 1 : a] == b"\n":
                    a -= 1
                edits.append((a, el.end, b""))
    return _splice(data, edits)


def sign_document(data: bytes, signer: NodeCredentials) -> bytes:
    """Sign every kind (`<kind-signature>`) and then every configuration (`<signature>`)."""
    data = strip_signatures(data)
    edits: list[tuple[int, int, bytes]] = []
    for c in _locate(data):
        for k in c.kinds:
            value = _security_block(signer, data[k.kind.start : k.kind.end])
            tag = f"{_prefix(data, k.kind)}kind-signature"
            edits.append((k.kind.end, k.kind.end,
                          f"\n{_indent(data, k.kind.start)}<{tag}>{value}</{tag}>".encode()))
    data = _splice(data, edits)
    edits = []
    for c in _locate(data):
        el = c.element
        value = _security_block(signer, data[el.start : el.end])
        tag = f"{_prefix(data, el)}signature"
        edits.append((el.end, el.end,
                      f"\n{_indent(data, el.start)}<{tag}>{value}</{tag}>".encode()))
    return _splice(data, edits)


def with_signers(conf: OverlayConfiguration, signer: NodeCredentials) -> OverlayConfiguration:
    """`conf` naming `signer`'s Node-ID as its configuration signer and kind signer."""
    def add(ids: tuple[bytes, ...]) -> tuple[bytes, ...]:
        return ids if signer.node_id in ids else (*ids, signer.node_id)

    return replace(conf, configuration_signers=add(conf.configuration_signers),
                   kind_signers=add(conf.kind_signers))


# ------------------------------------------------------------------ verifying


def _verify(what: str, data: bytes, el: _Element, sig_el: _Element | None,
            trust: TrustStore, allowed: Sequence[bytes], role: str,
            now: float | None) -> VerifiedSigner:
    if sig_el is None:
        raise ConfigSignatureError(f"{what} is not signed (RFC 6940 §11.1)")
    try:
        raw = base64.b64decode("".join("".join(sig_el.text).split()), validate=True)
        r = Reader(raw)
        block = SecurityBlock.decode(r)
        if r.remaining():
            raise ReloadDecodeError("trailing bytes")
        certs = [cert_from_der(c.certificate) for c in block.certificates]
    except (binascii.Error, ValueError, ReloadDecodeError, ReloadSecurityError) as e:
        raise ConfigSignatureError(f"{what}: the signature is not a base64 SecurityBlock "
                                   f"({e})") from None
    try:
        signer = verify_signature(block.signature, data[el.start : el.end], trust, certs, now)
    except ReloadSecurityError as e:
        raise ConfigSignatureError(f"{what}: signature refused: {e}") from None
    if signer.node_id not in allowed:
        raise ConfigSignatureError(f"{what}: signed by Node-ID {signer.node_id.hex()}, which is "
                                   f"not a {role} of the configuration")
    return signer


def verify_document(data: bytes, conf: OverlayConfiguration,
                    anchors: Sequence[x509.Certificate], *,
                    now: float | None = None) -> VerifiedSigner:
    """Check `conf`'s `<signature>` and every `<kind-signature>` in `data` (RFC 6940 §11.1).

    Each signer's certificate must chain to one of `anchors` (the overlay CA the node's own
    certificate chains to: never only the document's own root-certs, which whoever rewrote
    the document could have replaced) and be named by `<configuration-signer>` /
    `<kind-signer>`. Raises `ConfigSignatureError`; returns the configuration's signer."""
    spans = [c for c in _locate(data)
             if c.instance_name == conf.instance_name and c.sequence == conf.sequence]
    if len(spans) != 1:
        raise ConfigSignatureError(f"{len(spans)} configurations for {conf.instance_name!r} "
                                   f"sequence {conf.sequence}: expected exactly one")
    span = spans[0]
    trust = TrustStore(anchors, overlay=conf.instance_name, bad_nodes=conf.bad_nodes)
    what = f"configuration {conf.instance_name!r} (sequence {conf.sequence})"
    signer = _verify(what, data, span.element, span.signature, trust,
                     conf.configuration_signers, "configuration-signer", now)
    if len(span.kinds) != len(conf.kinds):
        raise ConfigSignatureError(f"{what}: kind-blocks do not match the parsed kinds")
    for k, kind in zip(span.kinds, conf.kinds, strict=True):
        _verify(f"{what}: kind {kind.id:#x}", data, k.kind, k.signature, trust,
                conf.kind_signers, "kind-signer", now)
    return signer


def _issued_through(cert: x509.Certificate, chain: Sequence[x509.Certificate],
                    root: x509.Certificate) -> bool:
    """`cert` was signed by `root`, directly or through CA certificates of `chain`."""
    issued_by = TrustStore._issued_by  # the same signature check, without the clock
    current = cert
    for _depth in range(5):
        if issued_by(current, root):
            return True
        nxt = next((c for c in chain if c != current and issued_by(current, c)), None)
        if nxt is None:
            return False
        current = nxt
    return False


def member_anchors(conf: OverlayConfiguration, member: x509.Certificate,
                   chain: Sequence[x509.Certificate] = ()) -> list[x509.Certificate]:
    """The document's root-certs that issued `member` (this node's certificate, through
    `chain`). Issuance only: whether the certificate is still valid is checked where it is
    used (TLS, message signatures). A §13.4 self-signed member in an overlay that permits
    them has no CA to anchor on: the document's root-certs are used."""
    roots = conf.root_certificates()
    out = [root for root in roots if _issued_through(member, chain, root)]
    if not out and conf.self_signed_permitted and member.issuer == member.subject:
        return roots
    if not out:
        raise ConfigSignatureError("no root-cert of the document issued this node's "
                                   "certificate: the document is not this overlay's")
    return out


__all__ = ["SIGN_COMMAND", "ConfigSignatureError", "member_anchors", "sign_document",
           "strip_signatures", "verify_document", "with_signers"]
