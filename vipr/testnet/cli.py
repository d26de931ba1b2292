"""`vipr pstn` (PSTN simulator) and `vipr demo` (the whole test network and its story)."""

from __future__ import annotations

from pathlib import Path

import click

from vipr.cliutil import EXIT_CONFIG, fail


@click.command("pstn")
@click.option("--config", "-c", "config", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="PSTN simulator config (YAML: listen, providers, skew).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def pstn_cmd(config: Path, log_level: str) -> None:
    """Run the PSTN simulator: routes calls between providers' PSTN trunks by number plan,
    narrowband audio only (PCMU/PCMA, no video)."""
    from vipr.testnet.numberplan import PstnConfigError, load_pstn_config
    from vipr.testnet.pstn import run_pstn

    try:
        cfg = load_pstn_config(config)
    except PstnConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    run_pstn(cfg, log_level)


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where certificates, configs, databases and logs go "
                   "(default: a fresh temporary directory, removed afterwards).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object with each step's outcome (no timeline).")
@click.option("--keep", is_flag=True, help="Keep the temporary workdir (logs) afterwards.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="First loopback port (default: a free block); the network uses 400, "
                   "as `vipr testnet init --base-port`.")
def demo_cmd(workdir: Path | None, as_json: bool, keep: bool, base_port: int | None) -> None:
    """Run the whole VIPR test network on loopback and play the five-step story.

    Exit 0 only if every step behaved as stated."""
    from vipr.testnet.demo import run_demo

    raise SystemExit(run_demo(workdir, as_json=as_json, keep=keep, base_port=base_port))


@click.group("testnet")
def testnet_group() -> None:
    """The local test network (what `vipr demo` runs)."""


@testnet_group.command("init")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for certificates, configs (provider-*.yaml, pstn.yaml), state.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="First loopback port (default: a free block); the network uses 400.")
def testnet_init(out: Path, base_port: int | None) -> None:
    """Write the demo network's overlay CA, certificates and configs (A, B, C, PSTN)."""
    from vipr.testnet.workdir import make_workdir

    layout = make_workdir(out, base_port=base_port)
    for p in layout.providers:
        click.echo(f"{p.name}: {layout.configs[p.key]}")
    click.echo(f"pstn: {layout.pstn_config}")


def register(group: click.Group) -> None:
    group.add_command(pstn_cmd)
    group.add_command(demo_cmd)
    group.add_command(testnet_group)
