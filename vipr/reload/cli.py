"""`vipr reload …` (debug) and `vipr ca …` (overlay CA, node certificates) commands."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vipr.cliutil import json_option, print_json
from vipr.private_files import write_private
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.storage_bodies import DEFAULT_MODELS, DataModel

_HEX_RE = re.compile(rb"^[0-9a-fA-F\s]+$")


def _read_input(arg: str) -> bytes:
    if arg.startswith("@"):
        raw = Path(arg[1:]).read_bytes()
        if raw and _HEX_RE.match(raw):
            return bytes.fromhex(raw.decode())
        return raw
    try:
        return bytes.fromhex(arg)
    except ValueError as e:
        raise ReloadDecodeError(f"not hex: {e}") from e


def _unframe(data: bytes) -> bytes:
    """Strip a framing header (§6.6.2 data frame) if the input carries one."""
    if len(data) >= 8 and data[0] == 0x80 and int.from_bytes(data[5:8], "big") == len(data) - 8:
        return data[8:]
    return data


@click.group("reload")
def reload_group() -> None:
    """RELOAD (RFC 6940) debugging tools."""


@reload_group.command("decode")
@click.argument("message")
@click.option("--kind", "kinds", multiple=True, metavar="ID=MODEL",
              help="Data model of a Kind (e.g. 0xf0000001=DICTIONARY); repeatable.")
def decode_cmd(message: str, kinds: tuple[str, ...]) -> None:
    """Decode a RELOAD message (HEX or @FILE, optionally framed) and print it as JSON."""
    from vipr.reload.tools.jsonview import decode_to_json

    models = dict(DEFAULT_MODELS)
    try:
        for spec in kinds:
            kid, _, model = spec.partition("=")
            models[int(kid, 0)] = DataModel.parse(model)
    except (ValueError, KeyError) as e:
        raise click.UsageError(f"--kind: {e}") from e
    try:
        data = _unframe(_read_input(message))
        out = decode_to_json(data, models)
    except (ReloadDecodeError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    click.echo(json.dumps(out, indent=2))


@reload_group.command("pcap")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def pcap_cmd(out: Path) -> None:
    """Write a pcap with one framed instance of every message type this code emits."""
    from vipr.reload.tools.pcap import write_sample_pcap

    n = write_sample_pcap(out)
    click.echo(f"wrote {n} frames to {out}")


@click.group("ca")
def ca_group() -> None:
    """Overlay certificate authority (RFC 6940 §11.3 certificates)."""


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _hostport(s: str) -> tuple[str, int]:
    m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", s) or re.match(r"^([^:]+)(?::(\d+))?$", s)
    if not m:
        raise click.BadParameter(f"bootstrap address {s!r}: expected HOST[:PORT]")
    return m.group(1), int(m.group(2) or 6084)


@ca_group.command("init")
@click.option("--overlay", required=True, help="Overlay instance name (a DNS name).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--bootstrap", multiple=True, help="Bootstrap node HOST[:PORT]; repeatable.")
@click.option("--self-signed-permitted", is_flag=True, help="Allow §13.4 self-signed nodes.")
@click.option("--days", default=3650, show_default=True, help="CA validity in days.")
@json_option
def ca_init(overlay: str, out: Path, bootstrap: tuple[str, ...], self_signed_permitted: bool,
            days: int, as_json: bool) -> None:
    """Create an overlay CA and the RFC 6940 XML overlay configuration document; prints the
    paths (JSON with --json)."""
    from vipr.reload.ca import configuration_signer, create_ca
    from vipr.reload.config_signature import sign_document, with_signers
    from vipr.reload.overlay_config import (
        BootstrapNode,
        vipr_overlay_configuration,
        write_overlay_document,
    )

    boots = [BootstrapNode(*_hostport(b)) for b in bootstrap]
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.key").exists():
        raise click.ClickException(f"{out / 'ca.key'} exists; refusing to overwrite")
    cert, key = create_ca(overlay, days=days)
    (out / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca.key", key)
    signer = configuration_signer(cert, key, overlay, days=days)
    signer.write(out, "signer")
    conf = with_signers(vipr_overlay_configuration(overlay, [cert], boots,
                                                   self_signed_permitted=self_signed_permitted),
                        signer)
    # RFC 6940 §11.1: every kind-block and the configuration signed by the signer
    (out / "overlay.xml").write_bytes(sign_document(write_overlay_document([conf]), signer))
    _report({"ca_cert": str(out / "ca.crt"), "ca_key": str(out / "ca.key"),
             "signer_cert": str(out / "signer.crt"), "signer_key": str(out / "signer.key"),
             "configuration": str(out / "overlay.xml")}, as_json)


@ca_group.command("sign-overlay-doc")
@click.option("--config", "config", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Overlay configuration document to sign (rewritten in place).")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory with ca.crt/ca.key (default: the configuration's directory); "
                   "signer.crt/signer.key there are used, or created when missing.")
@json_option
def ca_sign_overlay_doc(config: Path, ca_dir: Path | None, as_json: bool) -> None:
    """Sign (or re-sign) an overlay configuration document: names the signer as
    configuration-signer and kind-signer and writes the RFC 6940 §11.1 signatures. The
    sequence is kept; copy the result to every node of the overlay."""
    from vipr.reload.ca import configuration_signer
    from vipr.reload.config_signature import sign_document, strip_signatures, with_signers
    from vipr.reload.overlay_config import (
        OverlayConfigError,
        parse_overlay_document,
        write_overlay_document,
    )
    from vipr.reload.wire.security import (
        NodeCredentials,
        ReloadSecurityError,
        TrustStore,
        cert_der,
    )

    ca_cert, ca_key, d = _load_ca(config, ca_dir)
    try:
        confs = parse_overlay_document(strip_signatures(config.read_bytes()))
    except (OSError, OverlayConfigError) as e:
        raise click.ClickException(f"{config}: {e}") from None
    overlay = confs[0].instance_name
    if (d / "signer.crt").exists():
        try:
            signer = NodeCredentials.load(d / "signer.crt", d / "signer.key", overlay=overlay)
            TrustStore([ca_cert], overlay=overlay).validate(signer.cert, intermediates=signer.chain)
        except (OSError, ValueError, ReloadSecurityError) as e:
            raise click.ClickException(f"{d / 'signer.crt'}: not a signer of this CA: {e}"
                                       ) from None
    else:
        signer = configuration_signer(ca_cert, ca_key, overlay)
        signer.write(d, "signer")
    for c in confs:
        if cert_der(ca_cert) not in c.root_certs:
            raise click.ClickException(f"{config}: configuration {c.instance_name!r} does not "
                                       f"list the CA of {d} as a root-cert")
    signed = sign_document(write_overlay_document([with_signers(c, signer) for c in confs]),
                           signer)
    config.write_bytes(signed)
    _report({"configuration": str(config), "signer_cert": str(d / "signer.crt"),
             "signer_node_id": signer.node_id.hex()}, as_json)


def _report(info: dict[str, object], as_json: bool) -> None:
    """What a `ca` command wrote: "key: value" lines, or one JSON object with --json (the
    same as the `tls` commands)."""
    if as_json:
        print_json(info)
        return
    for k, v in info.items():
        shown = ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)
        click.echo(f"{k.replace('_', ' ')}: {shown}")


def _load_ca(config: Path, ca_dir: Path | None
             ) -> tuple[x509.Certificate, rsa.RSAPrivateKey, Path]:
    """ca.crt/ca.key from --ca-dir or the configuration's directory (one-line errors)."""
    from vipr.cliutil import one_line_error
    from vipr.reload.wire.security import ReloadSecurityError, load_certificate

    d = ca_dir or config.parent
    where = "--ca-dir" if ca_dir is not None else "the configuration's directory"
    try:
        ca_cert = load_certificate((d / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    except FileNotFoundError as e:
        raise click.ClickException(
            f"{where} {d}: no {Path(str(e.filename)).name} (the files of `vipr ca init`)"
        ) from None
    except (OSError, ReloadSecurityError, ValueError, TypeError) as e:
        raise click.ClickException(f"{where} {d}: cannot load the CA: {one_line_error(e)}"
                                   ) from None
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise click.ClickException(f"{d / 'ca.key'}: the overlay CA key is not RSA")
    return ca_cert, ca_key, d


@ca_group.command("issue")
@click.option("--config", "config", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Overlay configuration document (overlay.xml from `vipr ca init`).")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory with ca.crt/ca.key (default: the configuration's directory).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--user", required=True, help="User name (rfc822Name), e.g. node@provider.")
@click.option("--node-ids", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--name", default="node", show_default=True, help="Output file stem.")
@click.option("--days", default=365, show_default=True)
@click.option("--per-node", is_flag=True,
              help="With --node-ids N: N certificates of one Node-ID each (one key): NAME.crt, "
                   "NAME-1.crt … (what `vipr overlay` uses for node i when present).")
@json_option
def ca_issue(config: Path, ca_dir: Path | None, out: Path, user: str, node_ids: int, name: str,
             days: int, per_node: bool, as_json: bool) -> None:
    """Issue an RSA-2048 node certificate with reload:// URIs for N random Node-IDs: writes
    OUT/NAME.crt and OUT/NAME.key (0600) and prints them (JSON with --json)."""
    from vipr.reload.ca import issue_node_cert
    from vipr.reload.overlay_config import OverlayConfigError, load_overlay_config
    from vipr.reload.wire.security import cert_node_ids

    try:
        conf = load_overlay_config(config)
    except OverlayConfigError as e:
        raise click.ClickException(f"{config}: {e}") from e
    ca_cert, ca_key, _ = _load_ca(config, ca_dir)
    if per_node:
        first = issue_node_cert(ca_cert, ca_key, conf.instance_name, user, 1, days=days)
        cp, kp = first.write(out, name)
        ids = [first.node_id]
        for i in range(1, node_ids):
            c = issue_node_cert(ca_cert, ca_key, conf.instance_name, user, 1, key=first.key,
                                days=days)
            (out / f"{name}-{i}.crt").write_bytes(c.cert_pem())
            ids.append(c.node_id)
        _report({"cert": str(cp), "key": str(kp), "user": user,
                 "node_ids": [n.hex() for n in ids]}, as_json)
        return
    creds = issue_node_cert(ca_cert, ca_key, conf.instance_name, user, node_ids, days=days)
    cp, kp = creds.write(out, name)
    _report({"cert": str(cp), "key": str(kp), "user": user,
             "node_ids": [n.hex() for n in cert_node_ids(creds.cert)]}, as_json)


def register(group: click.Group) -> None:
    group.add_command(reload_group)
    group.add_command(ca_group)
