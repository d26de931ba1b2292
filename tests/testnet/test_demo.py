"""Acceptance: `vipr demo --json` plays all five steps of the story and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vipr.testnet.workdir import pick_base_port

pytestmark = pytest.mark.slow


@pytest.mark.timeout(420)
def test_demo_all_five_steps_pass(tmp_path: Path) -> None:
    # --base-port (issue 16): the network takes the 400 ports from there (a block free now,
    # in the 20000-32000 range the demo itself picks from, which tests/ports.py never leases)
    base = pick_base_port()
    # the event is the demo's exit, bounded generously (how long it takes is bench material)
    out = subprocess.run([sys.executable, "-m", "vipr", "demo", "--json", "--base-port",
                          str(base), "--workdir", str(tmp_path / "wd")], capture_output=True,
                         text=True, timeout=400)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON on stdout; stderr: {out.stderr[-2000:]}"
    result = json.loads(lines[-1])
    failed = {s["step"]: s["problems"] for s in result["steps"] if not s["passed"]}
    assert result["ok"] and not failed, json.dumps(
        {"failed": failed, "not_running": result.get("not_running"),
         "error": result.get("error")}, indent=1)
    assert [s["step"] for s in result["steps"]] == [1, 2, 3, 4, 5]
    assert out.returncode == 0
    assert f"127.0.0.1:{base + 380}" in (tmp_path / "wd" / "pstn.yaml").read_text()


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.mark.timeout(120)
def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    wd = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-u", "-m", "vipr", "demo", "--workdir", str(wd)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:             # bounded by the test timeout
            seen.append(line)
            if "processes ready" in line:
                break
        assert _processes_mentioning(str(wd)), "".join(seen)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, rest          # interrupted: not a success
    assert "stopping every process" in rest
    assert _processes_mentioning(str(wd)) == []
