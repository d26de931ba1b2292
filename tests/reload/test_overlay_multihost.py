"""Two overlay daemons of one provider on two hosts (issue 15 item 5, DESIGN §12): provider
pb runs `vipr overlay` on 127.0.0.1 and on 127.0.0.2, each with a certificate of its own
(its own Node-ID, the same user name) and its own runtime_dir, both on one PostgreSQL store;
provider pa's node runs in this process. Every pb number is found, and each is stored exactly
once under pb on every resource (N, COPY1N, COPY2N); after one pb daemon is killed (SIGKILL,
no goodbye) the other publishes its numbers too, within a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from overlay_net import make_overlay

from tests.conftest import requires_postgresql
from tests.ports import free_port
from vipr.config import load_config
from vipr.ipc import IpcError, ipc_call
from vipr.reload.aio.daemon import OverlayDaemon
from vipr.reload.aio.vipr_usage import verified_values
from vipr.reload.wire.storage_bodies import DictionarySpecifier, FetchReq, StoredDataSpecifier
from vipr.reload.wire.vipr_kind import KIND_VIPR, RESOURCE_LABELS, claims_from, resource_ids

pytestmark = [requires_postgresql, pytest.mark.timeout(240)]

VIPR = str(Path(sys.executable).parent / "vipr")
B_NUMBERS = [f"+1415555{i:04d}" for i in range(10)]
READY = 90.0
TAKEOVER = 30.0   # members polled every 2 s; the killed session's lock goes with its socket


async def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return await ipc_call(sock, "status", {}, timeout=5.0)
    except (IpcError, OSError):
        return None


async def _claims_per_resource(pa: OverlayDaemon, number: str) -> dict[str, list[str]]:
    """pb's claims (their Node-IDs) on each of the number's three resources."""
    node = pa.nodes[0]
    spec = StoredDataSpecifier(KIND_VIPR, 0, DictionarySpecifier())
    out: dict[str, list[str]] = {}
    for label, res in zip(RESOURCE_LABELS, resource_ids(number), strict=True):
        try:
            ans = await node.request(res, FetchReq(res, (spec,)), timeout=5.0)
        except Exception:
            out[label] = ["?"]   # not answered now: not counted as right
            continue
        values = verified_values(ans, res, node.context.trust)
        out[label] = [c.node_id.hex() for c in claims_from(values) if c.vservice == f"{2:016x}"]
    return out


def _second_host(tmp: Path, pb_cfg: Path) -> Path:
    """pb's second host: the provider's second per-node certificate (`vipr ca issue --per-node
    --node-ids 2`: pb.crt, pb-1.crt; one key, the same user), its own address and runtime_dir."""
    cfg = load_config(pb_cfg)
    assert cfg.overlay.cert is not None
    second = cfg.overlay.cert.with_name(f"{cfg.overlay.cert.stem}-1{cfg.overlay.cert.suffix}")
    assert second.exists()
    text = pb_cfg.read_text().replace(str(cfg.overlay.cert), str(second))
    text = text.replace("runtime_dir: run/pb", "runtime_dir: run/pb2")
    text = text.replace(f'listen: "127.0.0.1:{cfg.overlay.listen.port}"',
                        f'listen: "127.0.0.2:{free_port()}"')
    out = tmp / "pb2.yaml"
    out.write_text(text)
    return out


async def test_one_provider_two_overlay_hosts_publish_each_number_once(
        tmp_path: Path, pg_url: str) -> None:
    pa_cfg, pb_cfg = make_overlay(tmp_path, [("pa", ["+33142685300"], 1),
                                             ("pb", B_NUMBERS, 2)])
    pb_cfg.write_text(pb_cfg.read_text().replace("database: state/pb/vipr.db",
                                                 f"database: {pg_url}")
                      .replace("nodes: 2", "nodes: 1"))   # one node per host
    pb2_cfg = _second_host(tmp_path, pb_cfg)
    pa = OverlayDaemon(load_config(pa_cfg))
    stop = asyncio.Event()
    pa_task = asyncio.create_task(pa.run(stop))
    procs: dict[str, asyncio.subprocess.Process] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("pb", "pb2")}
    socks = {name: tmp_path / "run" / name / "overlay.sock" for name in ("pb", "pb2")}
    try:
        deadline = time.monotonic() + READY
        while not pa.nodes or pa.state.value != "running":
            assert time.monotonic() < deadline and not pa_task.done(), "pa not running"
            await asyncio.sleep(0.1)
        for name, cfg in (("pb", pb_cfg), ("pb2", pb2_cfg)):
            procs[name] = await asyncio.create_subprocess_exec(
                VIPR, "overlay", "--config", str(cfg), cwd=tmp_path,
                stdout=logs[name].open("wb"), stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))

        def tail() -> str:
            return "\n".join(f"--- {n}\n{p.read_text()[-3000:]}" for n, p in logs.items())

        # both pb hosts running and seeing each other as live publishers
        sts: dict[str, dict[str, Any] | None] = {}
        while not all(s and s["state"] == "running" and s["members"] == 2
                      for s in sts.values()) or len(sts) < 2:
            assert time.monotonic() < deadline, f"{sts}\n{tail()}"
            assert all(p.returncode is None for p in procs.values()), tail()
            sts = {n: await _status(s) for n, s in socks.items()}
            await asyncio.sleep(0.2)
        node_of = {n: s["nodes"][0]["node_id"] for n, s in sts.items() if s}
        assert node_of["pb"] != node_of["pb2"]

        # every number found, stored exactly once under pb on N, COPY1N and COPY2N
        deadline = time.monotonic() + READY
        while True:
            seen = {n: await _claims_per_resource(pa, n) for n in B_NUMBERS}
            wrong = {n: c for n, c in seen.items() if any(len(v) != 1 for v in c.values())}
            if not wrong:
                break
            assert time.monotonic() < deadline, f"not exactly once: {wrong}\n{tail()}"
            await asyncio.sleep(0.5)
        owners = {n: c["N"][0] for n, c in seen.items()}
        assert set(owners.values()) <= set(node_of.values())
        sts = {n: await _status(s) for n, s in socks.items()}
        assert sum(s["published"] for s in sts.values() if s) == len(B_NUMBERS), sts

        # kill pb2 without a goodbye: pb publishes pb2's numbers as well
        procs["pb2"].send_signal(signal.SIGKILL)
        await procs["pb2"].wait()
        deadline = time.monotonic() + TAKEOVER
        while True:
            seen = {n: await _claims_per_resource(pa, n) for n in B_NUMBERS}
            missing = {n: c for n, c in seen.items()
                       if any(node_of["pb"] not in v for v in c.values())}
            if not missing:
                break
            assert time.monotonic() < deadline, f"not taken over: {missing}\n{tail()}"
            await asyncio.sleep(0.5)
        st = await _status(socks["pb"])
        assert st is not None and st["members"] == 1 and st["published"] == len(B_NUMBERS)
    finally:
        for p in procs.values():
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), 30)
            if p.returncode is None:
                p.kill()
                await p.wait()
        stop.set()
        await asyncio.wait_for(pa_task, 30)
    assert procs["pb"].returncode == 0, tail()
