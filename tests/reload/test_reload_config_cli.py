"""Overlay configuration document and the `vipr ca` / `vipr reload` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from reload_pki import OVERLAY, Pki

from vipr.cli import main
from vipr.reload.ca import configuration_signer
from vipr.reload.config_signature import sign_document, with_signers
from vipr.reload.overlay_config import (
    BootstrapNode,
    OverlayConfigError,
    OverlayConfiguration,
    load_overlay_config,
    parse_overlay_document,
    vipr_overlay_configuration,
    write_overlay_document,
)
from vipr.reload.wire import bodies as m
from vipr.reload.wire.forwarding import NodeDestination
from vipr.reload.wire.security import NodeCredentials, load_certificate
from vipr.reload.wire.storage_bodies import KIND_VIPR, DataModel

RFC_STYLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base"
         xmlns:chord="urn:ietf:params:xml:ns:p2p:config-chord">
  <configuration instance-name="overlay.example.org" sequence="22"
                 expiration="2027-12-31T23:59:59Z">
    <topology-plugin>CHORD-RELOAD</topology-plugin>
    <self-signed-permitted digest="sha1">true</self-signed-permitted>
    <bootstrap-node address="192.0.0.1" port="6084"/>
    <bootstrap-node address="192.0.2.2"/>
    <chord:chord-update-interval>400</chord:chord-update-interval>
    <max-message-size>4000</max-message-size>
    <overlay-reliability-timer>2500</overlay-reliability-timer>
    <required-kinds>
      <kind-block>
        <kind name="SIP-REGISTRATION">
          <data-model>SINGLE</data-model>
          <access-control>USER-MATCH</access-control>
          <max-count>1</max-count>
          <max-size>100</max-size>
        </kind>
      </kind-block>
      <kind-block>
        <kind id="4026532097">
          <data-model>DICTIONARY</data-model>
          <access-control>VIPR-NODE-PREFIX</access-control>
          <max-count>32</max-count>
          <max-size>256</max-size>
        </kind>
      </kind-block>
    </required-kinds>
  </configuration>
</overlay>
"""


def test_parse_rfc_style_document_with_defaults() -> None:
    (c,) = parse_overlay_document(RFC_STYLE)
    assert c.instance_name == "overlay.example.org" and c.sequence == 22
    assert c.self_signed_permitted and c.self_signed_digest == "sha1"
    assert c.bootstrap_nodes == (BootstrapNode("192.0.0.1", 6084), BootstrapNode("192.0.2.2"))
    assert c.chord_update_interval == 400 and c.max_message_size == 4000
    assert c.overlay_reliability_timer == 2.5
    # defaults (§11.1)
    assert c.node_id_length == 16 and c.initial_ttl == 100 and c.no_ice is False
    assert c.chord_ping_interval == 3600 and c.chord_reactive and c.turn_density == 1
    assert c.overlay_link_protocols == ("TLS",)
    assert c.models() == {1: DataModel.SINGLE, KIND_VIPR: DataModel.DICTIONARY}


@pytest.mark.parametrize("bad", [
    b"<overlay/>",
    b"not xml",
    RFC_STYLE.replace(b"<max-count>32", b"<max-count>lots"),
    RFC_STYLE.replace(b"DICTIONARY", b"TREE"),
    RFC_STYLE.replace(b'instance-name="overlay.example.org" ', b""),
])
def test_bad_documents_raise(bad: bytes) -> None:
    with pytest.raises(OverlayConfigError):
        parse_overlay_document(bad)


def test_write_parse_roundtrip(pki: Pki, tmp_path: Path) -> None:
    signer = configuration_signer(pki.ca_cert, pki.ca_key, OVERLAY)
    conf = with_signers(vipr_overlay_configuration(OVERLAY, [pki.ca_cert],
                                                   [BootstrapNode("::1", 7000)]), signer)
    p = tmp_path / "overlay.xml"
    p.write_bytes(sign_document(write_overlay_document([conf]), signer))
    back = load_overlay_config(p)
    assert back == conf
    assert back.no_ice and back.kind(KIND_VIPR) is not None
    assert back.trust_store().validate(pki.node_a.cert) == (pki.node_a.node_id,)
    full = OverlayConfiguration("x.example", shared_secret="s", bad_nodes=(b"\1" * 16,),
                                kind_signers=(b"\2" * 16,), mandatory_extensions=("urn:x",))
    assert parse_overlay_document(write_overlay_document([full])) == [full]


def test_ca_init_issue_and_use(tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(main, ["ca", "init", "--overlay", "cli.example.org", "--out",
                          str(tmp_path / "ca"), "--bootstrap", "127.0.0.1:7001"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o077 == 0
    conf = load_overlay_config(tmp_path / "ca" / "overlay.xml")
    assert conf.bootstrap_nodes == (BootstrapNode("127.0.0.1", 7001),)
    res = r.invoke(main, ["ca", "issue", "--config", str(tmp_path / "ca" / "overlay.xml"),
                          "--out", str(tmp_path / "n1"), "--user", "n1@p.example",
                          "--node-ids", "2", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert len(info["node_ids"]) == 2
    creds = NodeCredentials.load(Path(info["cert"]), Path(info["key"]))
    assert creds.node_id.hex() == info["node_ids"][0]
    root = load_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    assert conf.root_certificates() == [root]
    assert conf.trust_store().validate(creds.cert) == tuple(bytes.fromhex(h)
                                                           for h in info["node_ids"])


def test_reload_decode_cli(pki: Pki, tmp_path: Path) -> None:
    ctx = pki.context(pki.node_a)
    _, data = ctx.request(m.PingReq(b"z"), (NodeDestination(pki.node_b.node_id),))
    r = CliRunner()
    res = r.invoke(main, ["reload", "decode", data.hex()])
    assert res.exit_code == 0, res.output
    j = json.loads(res.output)
    assert j["message"] == "ping_req" and j["body"]["padding"] == "7a"
    f = tmp_path / "framed.bin"
    f.write_bytes(b"\x80\0\0\0\1" + len(data).to_bytes(3, "big") + data)
    res = r.invoke(main, ["reload", "decode", f"@{f}"])
    assert res.exit_code == 0 and json.loads(res.output)["message"] == "ping_req"
    res = r.invoke(main, ["reload", "decode", data[:-1].hex()])
    assert res.exit_code == 1 and "error:" in res.output
    res = r.invoke(main, ["reload", "decode", "xyz"])
    assert res.exit_code == 1
