"""`vipr tls ca` never replaces an existing federation CA, like `vipr ca init` (issue 13 #12)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from vipr.cli import main


def test_tls_ca_refuses_to_replace_a_ca(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    runner = CliRunner()
    assert runner.invoke(main, ["tls", "ca", "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = runner.invoke(main, ["tls", "ca", "--out", str(out)])
    assert again.exit_code == 1, again.output
    assert f"{out / 'ca.key'} exists; refusing to overwrite" in again.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # untouched
    (out / "ca.key").unlink()                      # only the certificate left: still refused
    third = runner.invoke(main, ["tls", "ca", "--out", str(out)])
    assert third.exit_code == 1 and "ca.pem exists; refusing to overwrite" in third.output
    assert (out / "ca.pem").read_bytes() == before["ca.pem"]


def test_same_words_and_code_as_ca_init(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["ca", "init", "--overlay", "o.example.net", "--out", str(tmp_path)]
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, args)
    assert again.exit_code == 1
    assert f"{tmp_path / 'ca.key'} exists; refusing to overwrite" in again.output
