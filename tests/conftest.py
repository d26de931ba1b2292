"""Shared test helpers: outside tools that may be missing skip their tests, saying why."""

from __future__ import annotations

import shutil

import pytest

DEBIAN_PACKAGE = {
    "sipp": "sip-tester",
    "tshark": "tshark",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
    "systemd-analyze": "systemd",
}


def requires_tool(cmd: str) -> pytest.MarkDecorator:
    """Skip unless `cmd` is on PATH; the reason names the Debian package to install."""
    pkg = DEBIAN_PACKAGE.get(cmd, cmd)
    return pytest.mark.skipif(
        shutil.which(cmd) is None,
        reason=f"{cmd} not installed (Debian package {pkg}; `make test` installs it as root)",
    )
