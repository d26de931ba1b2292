"""`vipr check-config FILE`: exit 0 with a summary, or 2 with one line per problem."""

from __future__ import annotations

from pathlib import Path

import click

from vipr.cliutil import EXIT_CONFIG, json_option, print_json
from vipr.config import ConfigError, Interface, ProviderConfig, load_config
from vipr.config.files import ROLES as FILE_ROLES


def _iface(name: str, iface: Interface) -> str:
    text = f"{name} {iface.transport} {iface.listen}"
    if iface.target is not None:
        text += f" → {iface.target}"
    if iface.gateway is not None:
        text += f" → gateway {iface.gateway}"
    return text


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(cfg: ProviderConfig) -> list[tuple[str, str]]:
    """(topic, text) lines describing what the config sets up."""
    ifs = cfg.proxy.interfaces
    proxy = [_iface("internal", ifs.internal), _iface("pstn", ifs.pstn)]
    if ifs.federation is not None:
        proxy.append(_iface("federation", ifs.federation))
    p = cfg.provider
    metrics = [f"{role} {getattr(cfg, role).metrics.listen}"
               for role in ("overlay", "pvp", "proxy")
               if getattr(cfg, role).metrics.listen is not None]
    lines = [
        ("provider", f"{p.name} (domain {p.domain}, vservice {p.vservice})"),
        (
            "numbers",
            f"{len(cfg.numbers)} in {_plural(len(cfg.numbers.entries), 'entry', 'entries')}",
        ),
        ("database", str(cfg.database)),
        ("runtime", str(cfg.runtime_dir)),
        (
            "overlay",
            f"{cfg.overlay_node_count()} node(s) from {cfg.overlay.listen}"
            + (", creates the overlay" if cfg.overlay.create else ""),
        ),
        ("pvp", f"listen {cfg.pvp.listen}"),
        ("proxy", "; ".join(proxy)),
    ]
    if metrics:   # DESIGN §13: GET /metrics per role
        lines.append(("metrics", "; ".join(metrics)))
    return lines


def missing_files(cfg: ProviderConfig) -> list[tuple[str, Path]]:
    """(key path, file) for configured files that do not exist (yet)."""
    files: list[tuple[str, Path | None]] = [
        ("overlay.configuration", cfg.overlay.configuration),
        ("overlay.cert", cfg.overlay.cert),
        ("overlay.key", cfg.overlay.key),
    ]
    for name in ("internal", "pstn", "federation"):
        iface: Interface | None = getattr(cfg.proxy.interfaces, name)
        if iface is not None and iface.tls is not None:
            for key in ("cert", "key", "ca"):
                files.append((f"proxy.interfaces.{name}.tls.{key}", getattr(iface.tls, key)))
    return [(k, f) for k, f in files if f is not None and not f.exists()]


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--allow-missing-files", is_flag=True,
              help="Certificates, keys and the overlay document may not exist yet (warnings); "
                   "the files that exist are still checked.")
@json_option
def check_config(file: Path, allow_missing_files: bool, as_json: bool) -> None:
    """Check a provider config and the files it names, as the daemons will load them: exit 0
    with a summary, or 2 with every problem found (FILE:LINE: key: what is wrong).

    Certificates must parse and match their keys, the overlay document must parse, and a
    provider that does not create the overlay needs a bootstrap node other than itself."""
    try:
        cfg = load_config(file, files_of=FILE_ROLES, allow_missing=allow_missing_files)
    except ConfigError as exc:
        if as_json:
            print_json({"ok": False, "errors": exc.messages})
        else:
            for line in exc.messages:
                click.echo(line, err=True)
            n = len(exc.messages)
            click.echo(f"{file}: {_plural(n, 'problem', 'problems')}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    missing = missing_files(cfg)
    if as_json:
        print_json(
            {
                "ok": True,
                "summary": dict(summary(cfg)),
                "warnings": [f"{k}: file not found: {f}" for k, f in missing],
            }
        )
        return
    click.echo(f"{file}: ok")
    for topic, text in summary(cfg):
        click.echo(f"  {topic:<9} {text}")
    for key, path in missing:
        click.echo(f"warning: {key}: file not found (yet): {path}", err=True)


@click.command("init-provider")
@click.option("--name", required=True, help="Provider name (also the node certificate's "
              "file stem: `vipr ca issue --name NAME`).")
@click.option("--domain", required=True, help="SIP domain (the federation certificate's "
              "dNSName: `vipr tls issue --domain DOMAIN`).")
@click.option("--number", "numbers", multiple=True, required=True, metavar="E164",
              help="A number or block (\"+1408555[0000-0999]\") this provider serves; "
                   "repeatable.")
@click.option("--create", is_flag=True,
              help="This provider's node creates a new overlay (the first one; "
                   "overlay.create: true); without it the node joins through the bootstrap "
                   "nodes of overlay.xml.")
@click.option("--vservice", default=None, help="16 hex digits (default: random).")
@click.option("--runtime-dir", default=None, metavar="DIR",
              help="runtime_dir (default: run/NAME beside the file; systemd: /run/vipr/NAME).")
@click.option("--database", default=None, metavar="FILE",
              help="database (default: state/NAME/vipr.db beside the file; systemd: "
                   "/var/lib/vipr/NAME/vipr.db).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file to write (default: NAME.yaml); never overwritten.")
def init_provider(name: str, domain: str, numbers: tuple[str, ...], create: bool,
                  vservice: str | None, runtime_dir: str | None, database: str | None,
                  out: Path | None) -> None:
    """Write a commented provider configuration naming the files the README's `vipr ca` and
    `vipr tls` commands write (overlay/NAME.crt, tls/DOMAIN.pem, fed/ca.pem, …)."""
    from vipr.config.example import render_example

    out = out if out is not None else Path(f"{name}.yaml")
    text = render_example(name, domain, list(numbers), create=create, vservice=vservice,
                          runtime_dir=runtime_dir, database=database)
    if out.exists() or out.is_symlink():
        raise click.ClickException(f"{out} exists; refusing to overwrite")
    tmp = out.with_name(f".{out.name}.new")
    tmp.write_text(text)
    try:        # the operator's values must make a valid config, else nothing is left behind
        cfg = load_config(tmp, allow_missing=True)
    except ConfigError as exc:
        tmp.unlink()
        for line in exc.messages:
            click.echo(line.replace(str(tmp), "init-provider"), err=True)
        raise SystemExit(EXIT_CONFIG) from None
    tmp.rename(out)
    click.echo(f"wrote {out}: {cfg.provider.name}, {_plural(len(cfg.numbers), 'number', 'numbers')}"
               f", overlay.create {'true' if create else 'false'}")
    for key, path in missing_files(load_config(out, allow_missing=True)):
        click.echo(f"  still to make: {key}: {path}")


def register(group: click.Group) -> None:
    group.add_command(check_config)
    group.add_command(init_provider)
