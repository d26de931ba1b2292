"""The `vipr` command: one click group; each area adds its commands from its own module.

Errors for operators are one line (never a traceback): usage and config errors exit 2 (click
and `load_config_or_fail`), anything a command raises that it did not handle itself (a file it
cannot write, a certificate it cannot read) is printed as "error: …" by `ViprGroup` and exits
1. VIPR_DEBUG=1 in the environment shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from vipr import __version__
from vipr.cliutil import EXIT_RUNTIME, one_line_error
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
    "vipr.health",
)


class ViprGroup(click.Group):
    """The root group: an exception no command handled becomes one "error: …" line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("VIPR_DEBUG"):
                raise
            click.echo(f"error: {one_line_error(exc)}", err=True)
            ctx.exit(EXIT_RUNTIME)


@click.group(cls=ViprGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vipr")
def main() -> None:
    """VIPR: learn direct SIP routes between VoIP providers, proven by PSTN calls."""
    die_with_parent()   # a role started by `vipr up` never outlives it


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
