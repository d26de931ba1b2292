"""Acceptance (issue 16): README "Running one provider" works verbatim on a fresh directory.

The steps are taken literally from README.md (the fenced block after the marker comment) and
run by bash in an empty directory, up to a provider whose `vipr overlay status` answers with
every node joined. The README uses the example's fixed ports (6084, 7061, 5060-5062), so the
script runs in a network namespace of its own (`unshare --net`, only its own loopback):
nothing else on the machine can hold those ports, and nothing of it is seen outside.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- readme-walkthrough: one provider -->"
READY_TIMEOUT = 60   # seconds of polling `vipr overlay status` (the loop is bounded)


def readme_steps() -> list[str]:
    """The README's shell commands of the walkthrough block: comments dropped, `\\` joined."""
    text = (REPO / "README.md").read_text()
    assert MARKER in text, "README.md lost its walkthrough marker"
    m = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)\n```", text, re.S)
    assert m, "no ```sh block right after the walkthrough marker"
    joined = m.group(1).replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def netns_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) not installed")
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--net"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    return prefix


def test_readme_steps_parse_into_the_expected_commands() -> None:
    steps = readme_steps()
    assert steps[0].startswith("vipr ca init")
    assert any(s.startswith("vipr init-provider") and "--create" in s for s in steps)
    assert steps[-2].startswith("vipr up ") and steps[-2].endswith("&")
    assert steps[-1].startswith("vipr overlay status")


@pytest.mark.timeout(150)
def test_readme_walkthrough_runs_verbatim_to_a_ready_provider(tmp_path: Path) -> None:
    prefix = netns_prefix()
    steps = readme_steps()
    *setup, status = steps
    work = tmp_path / "fresh"
    work.mkdir()
    script = "\n".join([
        "set -euo pipefail",
        "ip link set lo up 2>/dev/null || true",
        *setup,                                          # the README's lines, as written
        "up_pid=$!",
        "trap 'kill -TERM $up_pid 2>/dev/null; wait $up_pid || true' EXIT",
        f"for _ in $(seq 1 {READY_TIMEOUT * 4}); do",
        f"  if out=$({status} 2>&1) && ! grep -q joining <<<\"$out\" &&",
        "     health=$(vipr health --config provider-a.yaml 2>&1); then",
        "    printf '%s\\n%s\\n' \"$out\" \"$health\"; echo WALKTHROUGH-READY; exit 0",
        "  fi",
        "  kill -0 $up_pid 2>/dev/null || { echo 'vipr up exited'; exit 1; }",
        "  sleep 0.25",
        "done",
        "printf '%s\\n' \"$out\"; echo 'not ready in time'; exit 1",
    ])
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("VIPR_CONFIG", None)
    r = subprocess.run([*prefix, "bash", "-c", script], cwd=work, env=env, capture_output=True,
                       text=True, timeout=140)
    assert r.returncode == 0 and "WALKTHROUGH-READY" in r.stdout, \
        f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "1 RELOAD nodes" in r.stdout, r.stdout          # the status table's title
    for role in ("overlay", "pvp", "proxy"):                # `vipr health`: every role answers
        assert f"{role}: ok" in r.stdout, r.stdout
    # exactly the files the generated config names, keys owner-only
    for key in ("overlay/provider-a.key", "tls/a.example.net.key", "fed/ca.key",
                "overlay/ca.key"):
        mode = stat.S_IMODE((work / key).stat().st_mode)
        assert mode == 0o600, f"{key}: {mode:o}"
    for name in ("overlay/provider-a.crt", "tls/a.example.net.pem", "fed/ca.pem",
                 "overlay/overlay.xml", "provider-a.yaml"):
        assert (work / name).is_file(), name
    assert "create: true" in (work / "provider-a.yaml").read_text()


def test_example_config_is_what_init_provider_writes(tmp_path: Path) -> None:
    """config/provider-a.yaml is `vipr init-provider`'s output for provider A (kept in step)."""
    from click.testing import CliRunner

    from vipr.cli import main

    out = tmp_path / "provider-a.yaml"
    r = CliRunner().invoke(main, [
        "init-provider", "--name", "provider-a", "--domain", "a.example.net",
        "--number", "+14085551234", "--number", "+1408555[0000-0999]",
        "--vservice", "0000000000000001", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == (REPO / "config" / "provider-a.yaml").read_text()
    again = CliRunner().invoke(main, ["init-provider", "--name", "x", "--domain", "x.example",
                                      "--number", "+1", "--out", str(out)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output
    bad = CliRunner().invoke(main, ["init-provider", "--name", "bad name", "--domain",
                                    "x.example", "--number", "+14085551234", "--out",
                                    str(tmp_path / "b.yaml")])
    assert bad.exit_code == 2 and "provider.name" in bad.output
    assert not list(tmp_path.glob("*b.yaml*"))
