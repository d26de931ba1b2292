"""Operator errors are one line on stderr and an exit code, never a traceback (issue 13 #9).

Each case runs the real `vipr` command (in a subprocess: a traceback printed by Python itself
would not show in click's CliRunner) and checks the exit code, the absence of "Traceback" and
that the message names the file or the option at fault.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vipr.testnet.workdir import Layout, make_workdir

VIPR = [sys.executable, "-m", "vipr"]


def run(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIPR, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    out = p.stdout + p.stderr
    assert p.returncode == code, out
    assert "Traceback" not in out, out
    for name in names:
        assert name in p.stderr, out
    return p.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_workdir(tmp_path_factory.mktemp("net"))


def test_deeply_nested_yaml(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("provider: " + "[" * 5000 + "]" * 5000 + "\n")
    block = tmp_path / "block.yaml"
    block.write_text("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 5001)))
    for f in (flow, block):
        err = one_line_error(run("check-config", f), 2, f"{f}:")
        assert "nest" in err


def test_limit_beyond_64_bits(tmp_path: Path) -> None:
    for cmd in ("validations", "vcrs"):
        p = run(cmd, "list", "--limit", "99999999999999999999", "--db", tmp_path / "x.db")
        one_line_error(p, 2, "--limit")


@pytest.mark.parametrize("argv", [
    ("ca", "init", "--overlay", "o.example.net", "--out"),
    ("tls", "ca", "--out"),
    ("testnet", "init", "--out"),
])
def test_out_directory_that_cannot_be_created(argv: tuple[str, ...]) -> None:
    one_line_error(run(*argv, "/proc/x"), 1, "/proc/x")


def test_ca_issue_without_ca_files(workdir: Layout, tmp_path: Path) -> None:
    conf = workdir.root / "overlay" / "overlay.xml"
    p = run("ca", "issue", "--config", conf, "--ca-dir", tmp_path, "--out", tmp_path / "o",
            "--user", "n@a.example.net")
    one_line_error(p, 1, "--ca-dir", str(tmp_path), "ca.crt")


def test_pstn_with_a_binary_config(tmp_path: Path) -> None:
    binary = tmp_path / "pstn.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    one_line_error(run("pstn", "--config", binary), 2, str(binary))


def test_up_with_a_missing_federation_cert(workdir: Layout, tmp_path: Path) -> None:
    root = tmp_path / "w"
    shutil.copytree(workdir.root, root)
    cfg = root / workdir.configs["a"].name
    cert = next((root / "tls").glob("a.*.pem"))
    cert.unlink()
    p = run("up", "--config", cfg, "--ready-timeout", "20")
    assert p.returncode == 2, p.stdout + p.stderr   # a config error, found before any role
    assert "Traceback" not in p.stdout + p.stderr, p.stdout + p.stderr
    assert str(cert) in p.stdout + p.stderr


def test_vipr_debug_shows_the_traceback() -> None:
    p = subprocess.run([*VIPR, "tls", "ca", "--out", "/proc/x"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "VIPR_DEBUG": "1"})
    assert p.returncode == 1 and "Traceback" in p.stderr
