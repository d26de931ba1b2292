"""The `vipr` command: one click group; each area adds its commands from its own module."""

from __future__ import annotations

import importlib

import click

from vipr import __version__
from vipr.parent_death import die_with_parent

# Each module exposes `register(group: click.Group) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "vipr.config_cli",
    "vipr.store.cli",
    "vipr.reload.cli",
    "vipr.proxy.sip.cli",
    "vipr.testnet.cli",
    "vipr.supervisor",
    "vipr.proxy.tls_cli",
    "vipr.proxy.tickets_cli",
    "vipr.proxy.cli",
    "vipr.reload.overlay_cli",
    "vipr.pvp.cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vipr")
def main() -> None:
    """VIPR: learn direct SIP routes between VoIP providers, proven by PSTN calls."""
    die_with_parent()   # a role started by `vipr up` never outlives it


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
