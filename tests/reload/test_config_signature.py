"""The overlay configuration document is signed (RFC 6940 §11.1) and checked on load (issue 16
item 7): unit tests of the signature check, the `vipr ca` commands, and a real `vipr overlay`
process refusing a tampered document with exit code 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from overlay_net import make_overlay
from reload_pki import OVERLAY, Pki

from vipr.cli import main
from vipr.reload import ca
from vipr.reload.config_signature import (
    ConfigSignatureError,
    sign_document,
    strip_signatures,
    verify_document,
    with_signers,
)
from vipr.reload.overlay_config import (
    BootstrapNode,
    load_overlay_config,
    parse_overlay_document,
    vipr_overlay_configuration,
    write_overlay_document,
)
from vipr.reload.wire.security import NodeCredentials


@pytest.fixture(scope="module")
def signer(pki: Pki) -> NodeCredentials:
    return ca.configuration_signer(pki.ca_cert, pki.ca_key, OVERLAY)


def _signed(pki: Pki, signer: NodeCredentials, **changes: object) -> bytes:
    conf = vipr_overlay_configuration(OVERLAY, [pki.ca_cert], [BootstrapNode("127.0.0.1", 7000)])
    conf = dataclasses.replace(with_signers(conf, signer), **changes)  # type: ignore[arg-type]
    return sign_document(write_overlay_document([conf]), signer)


def _load(tmp_path: Path, data: bytes, pki: Pki) -> object:
    p = tmp_path / "overlay.xml"
    p.write_bytes(data)
    return load_overlay_config(p, member=pki.node_a.cert)


def test_signed_document_is_accepted(pki: Pki, signer: NodeCredentials, tmp_path: Path) -> None:
    data = _signed(pki, signer)
    assert data.count(b"<kind-signature>") == 1 and data.count(b"<signature>") == 1
    conf = _load(tmp_path, data, pki)
    (parsed,) = parse_overlay_document(data)
    assert conf == parsed and parsed.configuration_signers == (signer.node_id,)
    assert verify_document(data, parsed, [pki.ca_cert]).node_id == signer.node_id


@pytest.mark.parametrize("old,new", [
    (b'sequence="1"', b'sequence="2"'),                      # an attribute of <configuration>
    (b'port="7000"', b'port="7001"'),                        # an attribute inside it
    (b"<max-count>32</max-count>", b"<max-count>99</max-count>"),  # inside a kind
    (b"<initial-ttl>100</initial-ttl>", b"<initial-ttl>100</initial-ttl> "),  # white space
])
def test_tampered_document_is_refused(pki: Pki, signer: NodeCredentials, tmp_path: Path,
                                      old: bytes, new: bytes) -> None:
    data = _signed(pki, signer)
    assert old in data
    with pytest.raises(ConfigSignatureError, match="bad signature"):
        _load(tmp_path, data.replace(old, new, 1), pki)


def test_unsigned_document_names_the_command(pki: Pki, signer: NodeCredentials,
                                             tmp_path: Path) -> None:
    data = strip_signatures(_signed(pki, signer))
    assert b"signature>" not in data
    with pytest.raises(ConfigSignatureError, match="is not signed") as e:
        _load(tmp_path, data, pki)
    assert "vipr ca sign-overlay-doc --config overlay.xml" in str(e.value)
    assert "\n" not in str(e.value)


def test_signer_must_be_named(pki: Pki, signer: NodeCredentials, tmp_path: Path) -> None:
    data = _signed(pki, signer, configuration_signers=(b"\1" * 16,))
    with pytest.raises(ConfigSignatureError, match="not a configuration-signer"):
        _load(tmp_path, data, pki)
    data = _signed(pki, signer, kind_signers=(b"\1" * 16,))
    with pytest.raises(ConfigSignatureError, match=r"kind 0xf0000101.*not a kind-signer"):
        _load(tmp_path, data, pki)


def test_kind_signature_is_checked_on_its_own(pki: Pki, signer: NodeCredentials,
                                             tmp_path: Path) -> None:
    """A kind-signature copied from another document (another <kind>) fails even when the
    configuration signature is made over the result."""
    other = _signed(pki, signer, kinds=(ca_kind(64),))
    data = _signed(pki, signer)

    def kind_sig(d: bytes) -> bytes:
        a = d.index(b"<kind-signature>")
        return d[a : d.index(b"</kind-signature>") + 17]

    mixed = data.replace(kind_sig(data), kind_sig(other))
    # re-sign only the configuration: strip its <signature>, sign it again by hand
    from vipr.reload.config_signature import _locate, _security_block

    span = _locate(mixed)[0]
    assert span.signature is not None
    body = mixed[: span.signature.start]
    el = span.element
    mixed = (body + f"<signature>{_security_block(signer, body[el.start:el.end])}"
             "</signature>\n</overlay>\n".encode())
    with pytest.raises(ConfigSignatureError, match="kind 0xf0000101: signature refused"):
        _load(tmp_path, mixed, pki)


def ca_kind(max_count: int) -> object:
    from vipr.reload.overlay_config import vipr_kind

    return vipr_kind(max_count=max_count)


def test_signer_of_another_ca_is_refused(pki: Pki, tmp_path: Path) -> None:
    other_key = ca.generate_key()
    other_ca, _ = ca.create_ca(OVERLAY, key=other_key)
    rogue = ca.configuration_signer(other_ca, other_key, OVERLAY)
    data = _signed(pki, rogue)  # names rogue as signer, root-cert is still our CA
    with pytest.raises(ConfigSignatureError, match="does not chain"):
        _load(tmp_path, data, pki)


def test_replaced_root_cert_is_refused(pki: Pki, tmp_path: Path) -> None:
    """Whoever rewrites the document can put in their own CA and signer: the node anchors on
    the CA of its own certificate, not on the document's root-cert."""
    key = ca.generate_key()
    their_ca, _ = ca.create_ca(OVERLAY, key=key)
    theirs = ca.configuration_signer(their_ca, key, OVERLAY)
    conf = with_signers(vipr_overlay_configuration(OVERLAY, [their_ca]), theirs)
    data = sign_document(write_overlay_document([conf]), theirs)
    p = tmp_path / "overlay.xml"
    p.write_bytes(data)
    load_overlay_config(p)  # consistent in itself
    with pytest.raises(ConfigSignatureError, match="no root-cert of the document issued"):
        load_overlay_config(p, member=pki.node_a.cert)


def test_prefixed_document_signs_and_verifies(pki: Pki, signer: NodeCredentials) -> None:
    plain = write_overlay_document([with_signers(
        vipr_overlay_configuration(OVERLAY, [pki.ca_cert]), signer)])
    prefixed = (plain.replace(b'xmlns="urn:ietf:params:xml:ns:p2p:config-base"',
                              b'xmlns:p="urn:ietf:params:xml:ns:p2p:config-base"')
                .replace(b"<", b"<p:").replace(b"<p:/", b"</p:").replace(b"<p:?", b"<?")
                .replace(b"<p:chord:", b"<chord:").replace(b"</p:chord:", b"</chord:"))
    signed = sign_document(prefixed, signer)
    assert b"<p:signature>" in signed and b"<p:kind-signature>" in signed
    (conf,) = parse_overlay_document(signed)
    assert verify_document(signed, conf, [pki.ca_cert]).node_id == signer.node_id
    assert strip_signatures(signed) == prefixed


def test_sign_overlay_doc_migrates_an_unsigned_document(tmp_path: Path) -> None:
    r = CliRunner()
    ov = tmp_path / "ca"
    assert r.invoke(main, ["ca", "init", "--overlay", "m.example", "--out", str(ov)]).exit_code == 0
    doc = ov / "overlay.xml"
    (signer_crt, signer_key) = (ov / "signer.crt", ov / "signer.key")
    assert signer_key.stat().st_mode & 0o077 == 0
    old = strip_signatures(doc.read_bytes())
    (conf,) = parse_overlay_document(old)
    # an overlay.xml from before signing: no signatures, no signer named, no signer files
    doc.write_bytes(write_overlay_document([dataclasses.replace(
        conf, configuration_signers=(), kind_signers=(), sequence=7)]))
    signer_crt.unlink()
    signer_key.unlink()
    res = r.invoke(main, ["ca", "issue", "--config", str(doc), "--out", str(tmp_path / "n"),
                          "--user", "n@m.example"])
    assert res.exit_code == 1 and "sign-overlay-doc" in res.output, res.output
    res = r.invoke(main, ["ca", "sign-overlay-doc", "--config", str(doc), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    signed = load_overlay_config(doc)
    assert signed.sequence == 7
    assert signed.configuration_signers == (bytes.fromhex(info["signer_node_id"]),)
    assert signer_crt.exists()
    # signing again (the signer now exists) gives a document that still verifies
    assert r.invoke(main, ["ca", "sign-overlay-doc", "--config", str(doc)]).exit_code == 0
    assert load_overlay_config(doc).configuration_signers == signed.configuration_signers


def _overlay(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vipr", "overlay", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_overlay_process_refuses_a_tampered_document(tmp_path: Path) -> None:
    """Acceptance (issue 16): a real `vipr overlay` exits 2 with one line naming the problem;
    `vipr check-config` says the same before any daemon starts."""
    (cfg,) = make_overlay(tmp_path, [("a", ["+15550001"], 1)])
    doc = tmp_path / "overlay" / "overlay.xml"
    good = doc.read_bytes()
    doc.write_bytes(good.replace(b'<max-size>256</max-size>', b'<max-size>4096</max-size>'))
    p = _overlay(cfg)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "bad signature" in lines[0] and "sign-overlay-doc" in lines[0], lines
    doc.write_bytes(strip_signatures(good))
    p = _overlay(cfg)
    assert p.returncode == 2 and "is not signed" in p.stderr, p.stderr
    chk = subprocess.run([sys.executable, "-m", "vipr", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert chk.returncode == 2 and "is not signed" in chk.stderr, chk.stdout + chk.stderr


def test_check_config_accepts_the_signed_document(tmp_path: Path) -> None:
    (cfg,) = make_overlay(tmp_path, [("a", ["+15550001"], 1)])
    chk = subprocess.run([sys.executable, "-m", "vipr", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert "overlay.configuration" not in chk.stdout + chk.stderr, chk.stdout + chk.stderr


def test_anchor_is_the_ca_that_issued_the_node(pki: Pki, signer: NodeCredentials,
                                               tmp_path: Path) -> None:
    """An expired node certificate still names its CA (its validity is checked where it is
    used); a certificate of another CA does not."""
    p = tmp_path / "overlay.xml"
    p.write_bytes(_signed(pki, signer))
    assert load_overlay_config(p, member=pki.expired.cert).sequence == 1
    with pytest.raises(ConfigSignatureError, match="no root-cert of the document issued"):
        load_overlay_config(p, member=pki.foreign.cert)


def test_signing_refuses_a_dtd_before_expanding_it(tmp_path: Path) -> None:
    from vipr.reload.overlay_config import OverlayConfigError

    bomb = (b'<?xml version="1.0"?><!DOCTYPE overlay [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base">&b;</overlay>')
    with pytest.raises(OverlayConfigError, match="DOCTYPE"):
        strip_signatures(bomb)
