"""Three real `vipr overlay` processes (configs by `vipr ca`): publish from one, `vipr lookup`
from another; SIGTERM leaves cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from overlay_net import make_overlay

from vipr.config import load_config

VIPR = [str(Path(sys.executable).parent / "vipr")]
READY_TIMEOUT = 90.0


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([*VIPR, "overlay", "--config", str(cfg)], cwd=cfg.parent,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def wait_socket(sock: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the daemon answers `status` with state "running" (its nodes joined)."""
    from vipr.ipc import IpcError, ipc_call

    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        assert proc.poll() is None, log.read_text()
        if sock.exists():
            try:
                if asyncio.run(ipc_call(sock, "status", {}, timeout=10))["state"] == "running":
                    return
            except (IpcError, OSError):
                pass
        assert time.monotonic() < deadline, f"not running after {READY_TIMEOUT}s\n{log.read_text()}"
        time.sleep(0.1)


def vipr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIPR, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_three_overlay_processes(tmp_path: Path) -> None:
    nums = {"pa": ["+14085551234", "+14085551235"], "pb": ["+442071234567"],
            "pc": ["+33142685300", "+14085551234"]}
    paths = make_overlay(tmp_path, [(name, n, 2 if name == "pa" else 1)
                                    for name, n in nums.items()])
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"{p.stem}.log" for p in paths]
    try:
        for p, log in zip(paths, logs, strict=True):
            proc = start(p, log)
            procs.append(proc)
            wait_socket(tmp_path / "run" / p.stem / "overlay.sock", proc, log)
        for p in paths:
            r = vipr("overlay", "status", "--config", str(p), "--json", cwd=tmp_path)
            assert r.returncode == 0, r.stderr
        # publish now from pa and pc (the daemons also publish at start)
        for p in (paths[0], paths[2]):
            out = subprocess.run([sys.executable, "-c", (
                "import asyncio,sys;from vipr.ipc import ipc_call;"
                "print(asyncio.run(ipc_call(sys.argv[1],'publish',{},timeout=60)))"),
                str(tmp_path / "run" / p.stem / "overlay.sock")],
                capture_output=True, text=True, timeout=90)
            assert out.returncode == 0, out.stderr
        r = vipr("lookup", "+1 408 555 1234", "--config", str(paths[1]), "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        ans = json.loads(r.stdout)
        assert ans["number"] == "+14085551234"
        assert {c["vservice"] for c in ans["claims"]} == {f"{1:016x}", f"{3:016x}"}, ans
        # AppAttach (Application-ID 61441) from pb to pa's claim: pa's PVP address
        claim_a = next(c for c in ans["claims"] if c["vservice"] == f"{1:016x}")
        out = subprocess.run([sys.executable, "-c", (
            "import asyncio,json,sys;from vipr.ipc import ipc_call;print(json.dumps(asyncio.run("
            "ipc_call(sys.argv[1],'attach',{'peer_id':sys.argv[2],'application':61441},"
            "timeout=30))))"), str(tmp_path / "run" / "pb" / "overlay.sock"), claim_a["peer_id"]],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        pvp = load_config(paths[0]).pvp.listen
        assert json.loads(out.stdout) == {"host": pvp.host, "port": pvp.port}
        r = vipr("lookup", "+33142685300", "--config", str(paths[0]), cwd=tmp_path)
        assert r.returncode == 0 and f"{3:016x}" in r.stdout, r.stdout + r.stderr
        r = vipr("lookup", "+15550001111", "--config", str(paths[0]), "--json", cwd=tmp_path)
        assert json.loads(r.stdout)["claims"] == []
        st = json.loads(vipr("overlay", "status", "--config", str(paths[0]), "--json",
                             cwd=tmp_path).stdout)
        assert len(st["nodes"]) == 2 and st["published"] == 2
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in reversed(procs):
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
    assert codes == [0, 0, 0], "\n".join(log.read_text() for log in logs)
