"""RFC 6940 overlay configuration document (§11.1, `application/p2p-overlay+xml`): parse + write."""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from vipr.reload.errors import ReloadError
from vipr.reload.wire.security import TrustStore, cert_der
from vipr.reload.wire.storage_bodies import KIND_VIPR, DataModel

NS = "urn:ietf:params:xml:ns:p2p:config-base"
NS_CHORD = "urn:ietf:params:xml:ns:p2p:config-chord"
MIME_TYPE = "application/p2p-overlay+xml"
DEFAULT_PORT = 6084  # §11.1 bootstrap-node port default
DEFAULT_MAX_MESSAGE_SIZE = 5000  # §11.1 max-message-size default
VIPR_POLICY = "VIPR-NODE-PREFIX"  # DESIGN §4
MAX_DOCUMENT_SIZE = 1 << 20  # a real document is a few KB (root certs, kinds)
MAX_SEQUENCE = 65534  # §11.1: configuration_sequence is a uint16; 65535 is reserved

KIND_NAMES = {
    "SIP-REGISTRATION": 0x1,
    "TURN-SERVICE": 0x2,
    "CERTIFICATE_BY_NODE": 0x3,
    "CERTIFICATE_BY_USER": 0x10,
}


class OverlayConfigError(ReloadError, ValueError):
    """The overlay configuration document is malformed or inconsistent."""


@dataclass(frozen=True)
class KindDef:
    """One `<kind>` of `<required-kinds>` (§11.1)."""

    id: int
    data_model: DataModel
    access_control: str
    max_count: int
    max_size: int
    name: str | None = None
    max_node_multiple: int | None = None


@dataclass(frozen=True)
class BootstrapNode:
    address: str
    port: int = DEFAULT_PORT


# Budgets for what the overlay document does not bound (DESIGN §4 "a full resource fits in one
# answer"): a signature value (RSA-4096), a certificate (ours are ~1.1 KB), the forwarding
# header with a long return path, and a dictionary key of a Kind other than VIPR.
SIGNATURE_BUDGET = 2 + 1 + 2 + 1 + 1 + 64 + 2 + 512  # algorithm, SignerIdentity, value
CERTIFICATE_BUDGET = 1 + 2 + 2048  # GenericCertificate: type, length, DER
HEADER_BUDGET = 1024
VIPR_KEY_LENGTH = 49  # `<32 hex Node-ID>+<16 hex VServiceID>`
OTHER_KEY_BUDGET = 64


def full_answer_size(kind: KindDef) -> int:
    """Upper bound of a FetchAns message carrying `max-count` values of `max-size` bytes of
    `kind`, each signed by a different certificate that travels in the security block."""
    value = 1 + 4 + kind.max_size  # DataValue: exists, opaque<0..2^32-1>
    if kind.data_model == DataModel.DICTIONARY:
        key = VIPR_KEY_LENGTH if kind.access_control.upper() == VIPR_POLICY else OTHER_KEY_BUDGET
        value += 2 + key
    elif kind.data_model == DataModel.ARRAY:
        value += 4
    stored = 4 + 8 + 4 + value + SIGNATURE_BUDGET  # StoredData (§7.2)
    body = 4 + (4 + 8 + 4) + kind.max_count * stored  # FetchAns with one FetchKindResponse
    contents = 2 + 4 + body + 4  # MessageContents: code, body, extensions
    security = 2 + (1 + kind.max_count) * CERTIFICATE_BUDGET + SIGNATURE_BUDGET
    return HEADER_BUDGET + contents + security


def required_message_size(kinds: Sequence[KindDef]) -> int:
    """The smallest max-message-size with which every Kind's full answer fits (§6.6: larger
    messages are refused on the link), rounded up to 4 KiB."""
    need = max((full_answer_size(k) for k in kinds), default=DEFAULT_MAX_MESSAGE_SIZE)
    return max(DEFAULT_MAX_MESSAGE_SIZE, -(-need // 4096) * 4096)


def check_answers_fit(conf: OverlayConfiguration) -> None:
    """Refuse a document whose max-message-size cannot carry a full resource of some Kind: a
    member could then hide every other claim by storing up to max-count (DESIGN §4)."""
    for k in conf.kinds:
        need = full_answer_size(k)
        if need > conf.max_message_size:
            raise OverlayConfigError(
                f"max-message-size {conf.max_message_size} cannot carry a full answer of kind "
                f"{k.id:#x} (max-count {k.max_count}, max-size {k.max_size} need up to {need} "
                f"bytes): set max-message-size to at least {required_message_size([k])}")


def vipr_kind(max_count: int = 32, max_size: int = 256) -> KindDef:
    """The VIPR Kind of DESIGN §4: 0xF0000101, DICTIONARY, VIPR-NODE-PREFIX."""
    return KindDef(KIND_VIPR, DataModel.DICTIONARY, VIPR_POLICY, max_count, max_size)


@dataclass(frozen=True)
class OverlayConfiguration:
    """One `<configuration>` element; defaults follow RFC 6940 §11.1 (digest A.7)."""

    instance_name: str
    sequence: int = 0
    expiration: _dt.datetime | None = None
    topology_plugin: str = "CHORD-RELOAD"
    node_id_length: int = 16
    root_certs: tuple[bytes, ...] = ()  # DER
    enrollment_servers: tuple[str, ...] = ()
    self_signed_permitted: bool = False
    self_signed_digest: str = "sha1"
    bootstrap_nodes: tuple[BootstrapNode, ...] = ()
    turn_density: int = 1
    clients_permitted: bool = True
    no_ice: bool = False
    chord_update_interval: float = 600.0
    chord_ping_interval: float = 3600.0
    chord_reactive: bool = True
    shared_secret: str | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    initial_ttl: int = 100
    overlay_reliability_timer: float = 3.0  # seconds (the document holds milliseconds)
    overlay_link_protocols: tuple[str, ...] = ("TLS",)
    configuration_signers: tuple[bytes, ...] = ()
    kind_signers: tuple[bytes, ...] = ()
    bad_nodes: tuple[bytes, ...] = ()
    mandatory_extensions: tuple[str, ...] = ()
    kinds: tuple[KindDef, ...] = field(default_factory=tuple)

    def models(self) -> dict[int, DataModel]:
        return {k.id: k.data_model for k in self.kinds}

    def kind(self, kind_id: int) -> KindDef | None:
        return next((k for k in self.kinds if k.id == kind_id), None)

    def root_certificates(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(d) for d in self.root_certs]

    def trust_store(self) -> TrustStore:
        return TrustStore(
            self.root_certificates(),
            overlay=self.instance_name,
            self_signed_permitted=self.self_signed_permitted,
            self_signed_digest=self.self_signed_digest,
            bad_nodes=self.bad_nodes,
        )


def _q(tag: str, ns: str = NS) -> str:
    return f"{{{ns}}}{tag}"


def _text(el: ET.Element, what: str) -> str:
    return (el.text or "").strip()


def _int(el: ET.Element, what: str, lo: int = 0, hi: int = 2**64) -> int:
    t = _text(el, what)
    try:
        v = int(t, 16) if t.lower().startswith("0x") else int(t)
    except ValueError as e:
        raise OverlayConfigError(f"{what}: not an integer: {t!r}") from e
    if not lo <= v <= hi:
        raise OverlayConfigError(f"{what}: {v} out of range {lo}..{hi}")
    return v


def _bool(el: ET.Element, what: str) -> bool:
    t = _text(el, what).lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise OverlayConfigError(f"{what}: not a boolean: {t!r}")


def _hex(el: ET.Element, what: str) -> bytes:
    try:
        return bytes.fromhex(_text(el, what))
    except ValueError as e:
        raise OverlayConfigError(f"{what}: not hex") from e


def _parse_kind(kb: ET.Element) -> KindDef:
    k = kb.find(_q("kind"))
    if k is None:
        raise OverlayConfigError("kind-block without <kind>")
    name = k.get("name")
    kid_s = k.get("id")
    if kid_s is not None:
        try:
            kid = int(kid_s, 16) if kid_s.lower().startswith("0x") else int(kid_s)
        except ValueError as e:
            raise OverlayConfigError(f"kind id {kid_s!r} is not an integer") from e
    elif name is not None and name.upper() in KIND_NAMES:
        kid = KIND_NAMES[name.upper()]
    else:
        raise OverlayConfigError(f"kind {name!r} has no id and is not a known name")

    def child(tag: str) -> ET.Element:
        e = k.find(_q(tag))
        if e is None:
            raise OverlayConfigError(f"kind {kid:#x}: missing <{tag}>")
        return e

    try:
        model = DataModel.parse(_text(child("data-model"), "data-model"))
    except KeyError as e:
        raise OverlayConfigError(f"kind {kid:#x}: unknown data-model") from e
    mnm = k.find(_q("max-node-multiple"))
    return KindDef(
        id=kid,
        data_model=model,
        access_control=_text(child("access-control"), "access-control"),
        max_count=_int(child("max-count"), "max-count"),
        max_size=_int(child("max-size"), "max-size"),
        name=name,
        max_node_multiple=_int(mnm, "max-node-multiple") if mnm is not None else None,
    )


def _parse_configuration(c: ET.Element) -> OverlayConfiguration:
    name = c.get("instance-name")
    if not name:
        raise OverlayConfigError("configuration without instance-name")
    kw: dict[str, object] = {"instance_name": name}
    seq = c.get("sequence")
    if seq is not None:
        try:
            kw["sequence"] = int(seq)
        except ValueError as e:
            raise OverlayConfigError(f"sequence {seq!r} is not an integer") from e
        if not 0 <= int(seq) <= MAX_SEQUENCE:
            # §11.1 / §6.3.2: 65535 is reserved (a ConfigUpdate always accepted)
            raise OverlayConfigError(f"sequence {seq} out of range 0..{MAX_SEQUENCE}")
    exp = c.get("expiration")
    if exp:
        try:
            kw["expiration"] = _dt.datetime.fromisoformat(exp.replace("Z", "+00:00"))
        except ValueError as e:
            raise OverlayConfigError(f"expiration {exp!r} is not RFC 3339") from e
    roots: list[bytes] = []
    boots: list[BootstrapNode] = []
    lists: dict[str, list[object]] = {k: [] for k in (
        "enrollment_servers", "overlay_link_protocols", "configuration_signers",
        "kind_signers", "bad_nodes", "mandatory_extensions")}
    kinds: list[KindDef] = []
    for el in c:
        tag = el.tag
        if tag in (_q("topology-plugin"), _q("topology-plug-in")):
            kw["topology_plugin"] = _text(el, "topology-plugin")  # §11.1: grammar vs prose
        elif tag == _q("node-id-length"):
            kw["node_id_length"] = _int(el, "node-id-length", 16, 20)
        elif tag == _q("root-cert"):
            try:
                roots.append(base64.b64decode("".join(_text(el, "").split()), validate=True))
            except (binascii.Error, ValueError) as e:
                raise OverlayConfigError("root-cert: not base64") from e
        elif tag == _q("enrollment-server"):
            lists["enrollment_servers"].append(_text(el, ""))
        elif tag == _q("self-signed-permitted"):
            kw["self_signed_permitted"] = _bool(el, "self-signed-permitted")
            kw["self_signed_digest"] = el.get("digest", "sha1")
        elif tag == _q("bootstrap-node"):
            addr = el.get("address")
            if not addr:
                raise OverlayConfigError("bootstrap-node without address")
            port = el.get("port", str(DEFAULT_PORT))
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise OverlayConfigError(f"bootstrap-node port {port!r}")
            boots.append(BootstrapNode(addr, int(port)))
        elif tag == _q("turn-density"):
            kw["turn_density"] = _int(el, "turn-density", 0, 255)
        elif tag == _q("clients-permitted"):
            kw["clients_permitted"] = _bool(el, "clients-permitted")
        elif tag == _q("no-ice"):
            kw["no_ice"] = _bool(el, "no-ice")
        elif tag == _q("chord-update-interval", NS_CHORD):
            kw["chord_update_interval"] = float(_int(el, "chord-update-interval"))
        elif tag == _q("chord-ping-interval", NS_CHORD):
            kw["chord_ping_interval"] = float(_int(el, "chord-ping-interval"))
        elif tag == _q("chord-reactive", NS_CHORD):
            kw["chord_reactive"] = _bool(el, "chord-reactive")
        elif tag == _q("shared-secret"):
            kw["shared_secret"] = _text(el, "shared-secret")
        elif tag == _q("max-message-size"):
            kw["max_message_size"] = _int(el, "max-message-size", 38, 2**32 - 1)
        elif tag == _q("initial-ttl"):
            kw["initial_ttl"] = _int(el, "initial-ttl", 1, 255)
        elif tag == _q("overlay-reliability-timer"):
            # §11.1: milliseconds, minimum 200
            kw["overlay_reliability_timer"] = _int(el, "overlay-reliability-timer", 200) / 1000
        elif tag == _q("overlay-link-protocol"):
            lists["overlay_link_protocols"].append(_text(el, ""))
        elif tag == _q("configuration-signer"):
            lists["configuration_signers"].append(_hex(el, "configuration-signer"))
        elif tag == _q("kind-signer"):
            lists["kind_signers"].append(_hex(el, "kind-signer"))
        elif tag == _q("bad-node"):
            lists["bad_nodes"].append(_hex(el, "bad-node"))
        elif tag == _q("mandatory-extension"):
            lists["mandatory_extensions"].append(_text(el, ""))
        elif tag == _q("required-kinds"):
            kinds.extend(_parse_kind(kb) for kb in el.findall(_q("kind-block")))
        # Unknown elements in other namespaces are extensions: ignored unless mandatory.
    for key, vals in lists.items():
        if vals:
            kw[key] = tuple(vals)
    kw["root_certs"] = tuple(roots)
    kw["bootstrap_nodes"] = tuple(boots)
    kw["kinds"] = tuple(kinds)
    if len({k.id for k in kinds}) != len(kinds):
        raise OverlayConfigError("a Kind-ID appears twice in required-kinds")
    return OverlayConfiguration(**kw)  # type: ignore[arg-type]


def refuse_dtd(data: bytes | str) -> None:
    """Raise `OverlayConfigError` when the document is not well-formed or has a DOCTYPE.

    The document may come from elsewhere (an enrollment server, another provider): a DTD is
    where entity expansion bombs live, and RFC 6940 §11.1's grammar has none, so any DOCTYPE
    or ENTITY declaration is refused before ElementTree (which expands entities) sees it."""

    def no_dtd(*_: object) -> None:
        raise OverlayConfigError("a DOCTYPE/ENTITY declaration is not allowed "
                                 "(RFC 6940 §11.1 documents have no DTD)")

    p = xml.parsers.expat.ParserCreate()
    p.StartDoctypeDeclHandler = no_dtd
    p.EntityDeclHandler = no_dtd
    p.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise OverlayConfigError(f"not well-formed XML: {e}") from None


def parse_overlay_document(data: bytes | str) -> list[OverlayConfiguration]:
    """All `<configuration>` elements of a document (raises `OverlayConfigError`)."""
    refuse_dtd(data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise OverlayConfigError(f"not well-formed XML: {e}") from e
    if root.tag != _q("overlay"):
        raise OverlayConfigError(f"root element must be <overlay xmlns={NS!r}>")
    confs = [_parse_configuration(c) for c in root.findall(_q("configuration"))]
    if not confs:
        raise OverlayConfigError("no <configuration> element")
    return confs


def select_configuration(confs: Sequence[OverlayConfiguration],
                         instance_name: str | None = None) -> OverlayConfiguration:
    """The configuration for `instance_name` (or the first's) with the highest sequence."""
    if instance_name is not None:
        confs = [c for c in confs if c.instance_name == instance_name]
        if not confs:
            raise OverlayConfigError(f"no configuration for overlay {instance_name!r}")
    else:
        confs = [c for c in confs if c.instance_name == confs[0].instance_name]
    return max(confs, key=lambda c: c.sequence)


def load_overlay_config(path: str | Path, instance_name: str | None = None, *,
                        member: x509.Certificate | None = None,
                        chain: Sequence[x509.Certificate] = (),
                        now: float | None = None) -> OverlayConfiguration:
    """The configuration for `instance_name` (or the first) with the highest sequence, its
    signatures checked (RFC 6940 §11.1, `config_signature`): chained to the root-cert that
    issued `member` (this node's certificate) when given, else to the document's root-certs.
    An unsigned or wrongly signed document raises `ConfigSignatureError` naming the command
    that signs it."""
    from vipr.reload.config_signature import (
        SIGN_COMMAND,
        ConfigSignatureError,
        member_anchors,
        verify_document,
    )

    with open(path, "rb") as fh:
        data = fh.read(MAX_DOCUMENT_SIZE + 1)
    if len(data) > MAX_DOCUMENT_SIZE:
        raise OverlayConfigError(f"larger than {MAX_DOCUMENT_SIZE >> 20} MiB")
    conf = select_configuration(parse_overlay_document(data), instance_name)
    try:
        anchors = (member_anchors(conf, member, chain) if member is not None
                   else conf.root_certificates())
        verify_document(data, conf, anchors, now=now)
    except ConfigSignatureError as e:
        raise ConfigSignatureError(
            f"{e}; (re)sign it where the overlay CA is kept: `{SIGN_COMMAND} --config "
            f"{Path(path).name} --ca-dir CA_DIR`, then copy it to every node") from None
    return conf


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def write_overlay_document(confs: Sequence[OverlayConfiguration]) -> bytes:
    """Serialize configurations as an RFC 6940 overlay document (every field written)."""
    ET.register_namespace("", NS)
    ET.register_namespace("chord", NS_CHORD)
    root = ET.Element(_q("overlay"))
    for c in confs:
        attrs = {"instance-name": c.instance_name, "sequence": str(c.sequence)}
        if c.expiration is not None:
            attrs["expiration"] = c.expiration.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ce = ET.SubElement(root, _q("configuration"), attrs)

        def add(tag: str, text: str, ns: str = NS, parent: ET.Element = ce,
                **a: str) -> ET.Element:
            e = ET.SubElement(parent, _q(tag, ns), a)
            e.text = text
            return e

        add("topology-plugin", c.topology_plugin)
        add("node-id-length", str(c.node_id_length))
        for der in c.root_certs:
            add("root-cert", base64.b64encode(der).decode())
        for url in c.enrollment_servers:
            add("enrollment-server", url)
        add("self-signed-permitted", str(c.self_signed_permitted).lower(),
            digest=c.self_signed_digest)
        for b in c.bootstrap_nodes:
            ET.SubElement(ce, _q("bootstrap-node"), {"address": b.address, "port": str(b.port)})
        add("turn-density", str(c.turn_density))
        add("clients-permitted", str(c.clients_permitted).lower())
        add("no-ice", str(c.no_ice).lower())
        add("chord-update-interval", _fmt(c.chord_update_interval), NS_CHORD)
        add("chord-ping-interval", _fmt(c.chord_ping_interval), NS_CHORD)
        add("chord-reactive", str(c.chord_reactive).lower(), NS_CHORD)
        if c.shared_secret is not None:
            add("shared-secret", c.shared_secret)
        add("max-message-size", str(c.max_message_size))
        add("initial-ttl", str(c.initial_ttl))
        add("overlay-reliability-timer", str(round(c.overlay_reliability_timer * 1000)))
        for p in c.overlay_link_protocols:
            add("overlay-link-protocol", p)
        for n in c.configuration_signers:
            add("configuration-signer", n.hex())
        for n in c.kind_signers:
            add("kind-signer", n.hex())
        for n in c.bad_nodes:
            add("bad-node", n.hex())
        for x in c.mandatory_extensions:
            add("mandatory-extension", x)
        if c.kinds:
            rk = ET.SubElement(ce, _q("required-kinds"))
            for k in c.kinds:
                kb = ET.SubElement(rk, _q("kind-block"))
                ka = {"name": k.name} if k.name and k.name.upper() in KIND_NAMES else {
                    "id": str(k.id)}
                ke = ET.SubElement(kb, _q("kind"), ka)
                add("data-model", k.data_model.name, parent=ke)
                add("access-control", k.access_control, parent=ke)
                add("max-count", str(k.max_count), parent=ke)
                add("max-size", str(k.max_size), parent=ke)
                if k.max_node_multiple is not None:
                    add("max-node-multiple", str(k.max_node_multiple), parent=ke)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root) + b"\n"


def vipr_overlay_configuration(
    overlay: str,
    root_certs: Sequence[x509.Certificate],
    bootstrap: Sequence[BootstrapNode] = (),
    *,
    sequence: int = 1,
    self_signed_permitted: bool = False,
    days: float = 365,
) -> OverlayConfiguration:
    """The project's profile (DESIGN §4): CHORD-RELOAD, no-ice, TLS, the VIPR Kind."""
    return OverlayConfiguration(
        instance_name=overlay,
        sequence=sequence,
        expiration=_dt.datetime.now(_dt.UTC).replace(microsecond=0) + _dt.timedelta(days=days),
        root_certs=tuple(cert_der(c) for c in root_certs),
        self_signed_permitted=self_signed_permitted,
        self_signed_digest="sha256",
        bootstrap_nodes=tuple(bootstrap),
        clients_permitted=False,
        no_ice=True,
        chord_update_interval=400,
        overlay_link_protocols=("TLS",),
        max_message_size=required_message_size([vipr_kind()]),
        kinds=(vipr_kind(),),
    )
