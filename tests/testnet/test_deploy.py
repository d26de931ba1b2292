"""Deployment files: docker-compose.yml, the Dockerfile and the systemd units."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from tests.conftest import requires_tool
from vipr.cli import main as cli_main
from vipr.config import load_config
from vipr.config_cli import missing_files
from vipr.testnet.numberplan import load_pstn_config
from vipr.testnet.workdir import make_workdir

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"


def _compose() -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _cli_path(argv: list[str]) -> click.Command:
    """The click command the words of `argv` name (options end the command path)."""
    cmd: click.Command = cli_main
    for word in argv:
        if word.startswith("-") or not isinstance(cmd, click.Group):
            break
        sub = cmd.get_command(click.Context(cmd), word)
        assert sub is not None, f"`vipr {' '.join(argv)}`: no command {word!r}"
        cmd = sub
    return cmd


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", [])}


def test_compose_parses_and_every_command_exists() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    roles = {"pstn", *(f"{r}-{p}" for r in ("overlay", "pvp", "proxy") for p in "abc")}
    assert roles <= set(services)
    for name, svc in services.items():
        argv = svc["command"]
        assert isinstance(argv, list) and argv, name
        cmd = _cli_path(argv)
        for word in argv:
            if word.startswith("--"):
                assert word in _options(cmd), f"{name}: `vipr {' '.join(argv)}`: no {word}"
        hc = svc.get("healthcheck")
        if hc:
            assert hc["test"][:2] == ["CMD", "vipr"]
            _cli_path(hc["test"][2:])


def test_compose_configs_pass_check_config(tmp_path: Path) -> None:
    """Run the init service's command into a temporary /data, then check every config the
    services name (the paths under /data map to that directory)."""
    services = _compose()["services"]
    assert isinstance(services, dict)
    init = services["init"]["command"]
    base = int(init[init.index("--base-port") + 1])
    make_workdir(tmp_path, base_port=base)
    checked = 0
    for name, svc in services.items():
        argv = svc["command"]
        if "--config" not in argv:
            continue
        path = tmp_path / Path(argv[argv.index("--config") + 1]).relative_to("/data")
        if name == "pstn":
            assert load_pstn_config(path).plan.providers
        else:
            cfg = load_config(path)
            assert missing_files(cfg) == [], name
            out = subprocess.run([sys.executable, "-m", "vipr", "check-config", str(path)],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert "warning" not in out.stderr, out.stderr
        checked += 1
    assert checked == 10


def test_dockerfile_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["vipr"]' in text
    assert "USER vipr" in text
    assert (ROOT / "docker-compose.yml").read_text().count("build: .") >= 1


def test_units_are_hardened_notify_services() -> None:
    for role in ("overlay", "pvp", "proxy"):
        text = (UNITS / f"vipr-{role}@.service").read_text()
        for line in ("Type=notify", "Restart=on-failure", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "User=vipr", "StateDirectory=vipr/%i",
                     "RuntimeDirectory=vipr/%i",
                     f"ExecStart=/usr/bin/vipr {role} --config /etc/vipr/%i.yaml"):
            assert line in text.splitlines(), f"{role}: {line}"
        _cli_path([role])
    target = (UNITS / "vipr@.target").read_text()
    for role in ("overlay", "pvp", "proxy"):
        assert f"vipr-{role}@%i.service" in target


@requires_tool("systemd-analyze")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """Instances of every template (ExecStart pointed at this installation's vipr) verify
    without any complaint: systemd-analyze exits 0 on mere warnings, so stderr must be
    empty too."""
    vipr = shutil.which("vipr") or str(Path(sys.executable).parent / "vipr")
    assert Path(vipr).exists()
    instances = []
    for unit in sorted(UNITS.glob("*@.*")):
        text = unit.read_text().replace("/usr/bin/vipr", vipr)
        (tmp_path / unit.name).write_text(text)
        inst = tmp_path / unit.name.replace("@.", "@provider-a.")
        inst.write_text(text)
        instances.append(str(inst))
    assert len(instances) == 4
    out = subprocess.run(["systemd-analyze", "verify", *instances], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr


@pytest.mark.parametrize("unit", ["vipr-overlay@.service", "vipr-pvp@.service",
                                  "vipr-proxy@.service"])
def test_a_broken_unit_is_noticed(tmp_path: Path, unit: str) -> None:
    """The verify test above would catch a typo (guards against a vacuous check)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    vipr = str(Path(sys.executable).parent / "vipr")
    text = (UNITS / unit).read_text().replace("/usr/bin/vipr", vipr)
    bad = tmp_path / unit.replace("@.", "@x.")
    bad.write_text(text.replace("Type=notify", "Type=notifyy"))
    out = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 or out.stderr.strip()
