"""`vipr tls ca` / `vipr tls issue`: federation TLS certificates (test networks, demos)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vipr.cliutil import json_option, print_json


def _report(info: dict[str, str], as_json: bool) -> None:
    """What a `tls` command wrote: "key: value" lines, or JSON with --json (like `vipr ca`)."""
    if as_json:
        print_json(info)
        return
    for k, v in info.items():
        click.echo(f"{k.replace('_', ' ')}: {v}")


def register(group: click.Group) -> None:
    """Add the `tls` command group."""

    @group.group("tls")
    def tls() -> None:
        """Federation TLS certificates (a private CA for test networks)."""

    @tls.command("ca")
    @click.option("--out", "out", required=True, type=click.Path(path_type=Path),
                  help="Directory for ca.pem and ca.key.")
    @click.option("--name", default="VIPR federation CA", show_default=True)
    @json_option
    def ca_cmd(out: Path, name: str, as_json: bool) -> None:
        """Create a federation CA (OUT/ca.pem, OUT/ca.key 0600); prints the paths.

        Refuses to replace an existing CA (every certificate it issued would stop verifying),
        like `vipr ca init`."""
        from vipr.proxy.federation_tls import (  # lazy: CLI start-up
            CA_CERT_NAME,
            CA_KEY_NAME,
            create_federation_ca,
        )

        for existing in (out / CA_KEY_NAME, out / CA_CERT_NAME):
            if existing.exists() or existing.is_symlink():
                raise click.ClickException(f"{existing} exists; refusing to overwrite")
        cert, key = create_federation_ca(out, name)
        _report({"ca_cert": str(cert), "ca_key": str(key)}, as_json)

    @tls.command("issue")
    @click.option("--ca-dir", required=True, type=click.Path(path_type=Path),
                  help="Directory holding ca.pem and ca.key (from `vipr tls ca`).")
    @click.option("--domain", required=True, help="The provider's SIP domain (dNSName).")
    @click.option("--out", "out", required=True, type=click.Path(path_type=Path))
    @json_option
    def issue_cmd(ca_dir: Path, domain: str, out: Path, as_json: bool) -> None:
        """Issue a leaf certificate for DOMAIN (OUT/DOMAIN.pem, OUT/DOMAIN.key 0600); prints
        the paths."""
        from vipr.proxy.federation_tls import (
            CA_CERT_NAME,
            CA_KEY_NAME,
            FederationTlsError,
            issue_federation_cert,
        )

        try:
            cert, key = issue_federation_cert(ca_dir / CA_CERT_NAME, ca_dir / CA_KEY_NAME,
                                              domain, out)
        except FederationTlsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        _report({"cert": str(cert), "key": str(key), "domain": domain}, as_json)
