"""Acceptance: `vipr demo --json` plays all five steps of the story and exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
def test_demo_all_five_steps_pass() -> None:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "vipr", "demo", "--json"], capture_output=True,
                         text=True, timeout=140)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON on stdout; stderr: {out.stderr[-2000:]}"
    result = json.loads(lines[-1])
    failed = {s["step"]: s["problems"] for s in result["steps"] if not s["passed"]}
    assert result["ok"] and not failed, json.dumps(
        {"failed": failed, "not_running": result.get("not_running"),
         "error": result.get("error")}, indent=1)
    assert [s["step"] for s in result["steps"]] == [1, 2, 3, 4, 5]
    assert out.returncode == 0
    assert time.monotonic() - started < 140
