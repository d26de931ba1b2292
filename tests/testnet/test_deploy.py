"""Deployment files: docker-compose.yml, the Dockerfile and the systemd units."""

from __future__ import annotations

import os
import re
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
        assert hc, f"{name}: no healthcheck"
        assert hc["test"][0] == "CMD-SHELL"    # podman-compose 1.0.3 mangles the CMD form
        words = hc["test"][1].split()
        if words[0] == "vipr":
            cmd = _cli_path(words[1:])
            assert cmd.name == "health"
            for word in words[1:]:
                if word.startswith("--"):
                    assert word in _options(cmd), f"{name}: healthcheck: no {word}"


def test_compose_configs_pass_check_config(tmp_path: Path) -> None:
    """Run the init service's command into a temporary /data, then check every config the
    services name (the paths under /data map to that directory)."""
    services = _compose()["services"]
    assert isinstance(services, dict)
    init = services["init"]["command"]
    word = init[init.index("--base-port") + 1]       # "${VIPR_BASE_PORT:-20000}"
    m = re.fullmatch(r"\$\{VIPR_BASE_PORT:-(\d+)\}", word)
    assert m, word
    base = int(m.group(1))
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
                     f"ExecStart=/opt/vipr/bin/vipr {role} --config /etc/vipr/%i.yaml"):
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
        text = unit.read_text().replace("/opt/vipr/bin/vipr", vipr)
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
    text = (UNITS / unit).read_text().replace("/opt/vipr/bin/vipr", vipr)
    bad = tmp_path / unit.replace("@.", "@x.")
    bad.write_text(text.replace("Type=notify", "Type=notifyy"))
    out = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 or out.stderr.strip()


# ------------------------------------------------------------ the documented install, verbatim

DEPLOY_MARKER = "<!-- deploy-walkthrough: install -->"
# what the documented steps write to; each becomes a copy-on-write view (overlayfs) inside a
# mount namespace of the test's own, so the machine itself is never changed
INSTALL_DIRS = ("/etc", "/opt", "/usr/local/bin", "/usr/lib/sysusers.d")


def deploy_steps() -> str:
    """The shell block of deploy/systemd/README.md after the marker, as written."""
    text = (UNITS / "README.md").read_text()
    assert DEPLOY_MARKER in text, "deploy/systemd/README.md lost its walkthrough marker"
    m = re.search(re.escape(DEPLOY_MARKER) + r"\s*```sh\n(.*?)\n```", text, re.S)
    assert m, "no ```sh block right after the marker"
    return m.group(1)


def _install_sandbox_reason() -> str | None:
    for tool in ("systemd-analyze", "systemd-sysusers", "unshare", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages systemd, util-linux)"
    if os.geteuid() != 0:
        return "the install steps run as root (chown, systemd-sysusers): run as root (CI does)"
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 (the steps make the virtualenv from it)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return f"cannot make a mount namespace here: {probe.stderr.strip()}"
    return None


@pytest.mark.timeout(300)
def test_documented_install_then_systemd_analyze_verify(tmp_path: Path) -> None:
    """deploy/systemd/README.md's install block runs verbatim as root (in a mount namespace,
    over copy-on-write views of /etc, /opt, /usr/local/bin, /usr/lib/sysusers.d); then every
    unit as installed verifies with no complaint, its Documentation= files exist, the keys
    are 0640 root:vipr (CA keys 0600) and the user `vipr` can load the config and its keys."""
    why = _install_sandbox_reason()
    if why:
        pytest.skip(why)
    mounts = []
    for i, d in enumerate(INSTALL_DIRS):
        up, work = tmp_path / f"up{i}", tmp_path / f"work{i}"
        up.mkdir()
        work.mkdir()
        mounts.append(f"mount -t overlay overlay -o lowerdir={d},upperdir={up},workdir={work} "
                      f"{d}")
    inst = tmp_path / "instances"
    inst.mkdir()
    script = "\n".join([
        "set -euo pipefail",
        *mounts,
        f"cd {ROOT}",
        "(",                                   # the README's block, as written
        deploy_steps(),
        ")",
        "echo INSTALL-DONE",
        "for u in /etc/systemd/system/vipr*@.*; do",
        f"  b=$(basename \"$u\"); cp \"$u\" {inst}/\"${{b/@./@provider-a.}}\"",
        "done",
        f"systemd-analyze verify {inst}/* 2>&1 && echo VERIFY-RC=0 || echo VERIFY-RC=$?",
        "grep -h '^Documentation=' /etc/systemd/system/vipr*@.* | tr ' ' '\\n' | "
        "sed -n 's|^.*file:||p' | sort -u | while read -r f; do",
        "  test -s \"$f\" && echo \"DOC-OK $f\" || echo \"DOC-MISSING $f\"",
        "done",
        "stat -c 'MODE %a %U:%G %n' /etc/vipr/overlay/provider-a.key "
        "/etc/vipr/tls/a.example.net.key /etc/vipr/overlay/ca.key /etc/vipr/fed/ca.key",
        "runuser -u vipr -- /opt/vipr/bin/vipr check-config /etc/vipr/provider-a.yaml "
        "&& echo AS-VIPR-OK",
        "grep -h '^ExecStart=' /etc/systemd/system/vipr*@.service | sed 's/^/EXEC /'",
    ])
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                       capture_output=True, text=True, timeout=280, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "INSTALL-DONE" in r.stdout, out[-4000:]
    verify = r.stdout[r.stdout.index("INSTALL-DONE"):r.stdout.index("VERIFY-RC=")]
    assert "VERIFY-RC=0" in r.stdout and verify.strip() == "INSTALL-DONE", out[-4000:]
    assert "DOC-MISSING" not in r.stdout and r.stdout.count("DOC-OK") == 2, r.stdout
    modes = {ln.split()[3]: " ".join(ln.split()[1:3])     # path -> "mode owner"
             for ln in r.stdout.splitlines() if ln.startswith("MODE ")}
    assert modes == {"/etc/vipr/overlay/provider-a.key": "640 root:vipr",
                     "/etc/vipr/tls/a.example.net.key": "640 root:vipr",
                     "/etc/vipr/overlay/ca.key": "600 root:vipr",
                     "/etc/vipr/fed/ca.key": "600 root:vipr"}, r.stdout
    assert "AS-VIPR-OK" in r.stdout, out[-3000:]
    execs = [ln for ln in r.stdout.splitlines() if ln.startswith("EXEC ")]
    assert len(execs) == 3 and all("ExecStart=/opt/vipr/bin/vipr " in e for e in execs)
