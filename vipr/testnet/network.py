"""The local test network as real processes: the PSTN simulator and every role of every
provider (`vipr overlay|pvp|proxy --config F`), plus one in-process phone per provider.

    net = TestNetwork(layout)
    await net.start()                  # readiness: NOTIFY_SOCKET "READY=1" or IPC status
    await net.ipc("a", "overlay", "lookup", {"number": n})
    await net.restart_role("b", "proxy", config=layout.nofed_configs["b"])
    await net.stop()                   # SIGTERM every child (SIGKILL after a timeout)

Logs of each process go to `<workdir>/logs/<name>.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from vipr.ipc import IpcError, ipc_call
from vipr.store import Store
from vipr.store.models import Route, ValidationRecord, Vcr
from vipr.supervisor import ROLES, Child, ChildError, vipr_argv
from vipr.testnet.ua import Phone
from vipr.testnet.workdir import Layout

__all__ = ["TestNetwork"]

log = logging.getLogger("vipr.testnet")

READY_TIMEOUT = 30.0


class TestNetwork:
    """Starts, queries and stops the processes of one demo layout."""

    __test__ = False   # not a pytest class

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.children: dict[str, Child] = {}
        self.phones: dict[str, Phone] = {}
        self.failed: dict[str, str] = {}        # process name → why it is not running
        self._tmp = tempfile.TemporaryDirectory(prefix="vipr-demo-")
        self.notify_dir = Path(self._tmp.name)   # short: AF_UNIX paths are limited

    # ------------------------------------------------------------------ processes

    def _child(self, name: str, argv: list[str]) -> Child:
        c = Child(name, argv, notify_dir=self.notify_dir,
                  log_path=self.layout.root / "logs" / f"{name}.log")
        self.children[name] = c
        return c

    async def start_pstn(self) -> None:
        c = self._child("pstn", [*vipr_argv(), "pstn", "--config", str(self.layout.pstn_config)])
        await self._start(c, None)

    async def start_role(self, key: str, role: str, config: Path | None = None) -> None:
        cfg = config or self.layout.configs[key]
        c = self._child(f"{role}-{key}", [*vipr_argv(), role, "--config", str(cfg)])
        sock = self.layout.runtime_dir(key) / f"{role}.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()           # a stale socket from a previous run must not look ready
        await self._start(c, sock)

    async def _start(self, c: Child, sock: Path | None) -> None:
        self.failed.pop(c.name, None)
        try:
            await c.start()

            async def probe() -> bool:
                if sock is None or not sock.exists():
                    return False
                try:
                    await ipc_call(sock, "status", timeout=2.0)
                except IpcError:
                    return False
                return True

            await c.wait_ready(READY_TIMEOUT, probe if sock is not None else None)
        except ChildError as exc:
            self.failed[c.name] = f"{exc}{self._log_tail(c.name)}"
            log.info("%s", exc)

    def _log_tail(self, name: str, lines: int = 3) -> str:
        path = self.layout.root / "logs" / f"{name}.log"
        try:
            tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return ("; log: " + " | ".join(t.strip()[:160] for t in tail)) if tail else ""

    async def start(self) -> None:
        """PSTN and phones; then overlay A (it creates the ring) together with every pvp and
        proxy (they do not wait for the overlay); the other overlays once A's is ready."""
        keys = [p.key for p in self.layout.providers]
        await self.start_pstn()
        for p in self.layout.providers:
            phone = Phone(f"phone-{p.key}", p.phone_number, p.domain,
                          listen=self.layout.phone_listen(p.key),
                          outbound=self.layout.proxy_internal(p.key))
            await phone.start()
            self.phones[p.key] = phone

        async def overlays() -> None:
            for k in keys:        # one join at a time: each joins a settled ring
                await self.start_role(k, "overlay")

        await asyncio.gather(overlays(),
                             *(self.start_role(k, r) for k in keys for r in ROLES[1:]))

    def running(self, name: str) -> bool:
        c = self.children.get(name)
        return c is not None and c.running and name not in self.failed

    async def stop_role(self, key: str, role: str) -> int | None:
        c = self.children.get(f"{role}-{key}")
        return await c.stop() if c is not None else None

    async def restart_role(self, key: str, role: str, config: Path | None = None) -> None:
        await self.stop_role(key, role)
        await self.start_role(key, role, config)

    async def stop(self) -> None:
        """Phones, then proxies, pvp, overlays, PSTN: all SIGTERMed and awaited."""
        for phone in self.phones.values():
            with contextlib.suppress(Exception):
                await phone.close()
        order = [n for r in ("proxy", "pvp", "overlay") for n in self.children
                 if n.startswith(f"{r}-")] + ["pstn"]
        await asyncio.gather(*(self.children[n].stop(timeout=8.0) for n in order
                               if n in self.children), return_exceptions=True)
        self._tmp.cleanup()

    def kill_now(self) -> None:
        for c in self.children.values():
            c.kill_now()

    # ------------------------------------------------------------------ queries

    async def ipc(self, key: str, role: str, method: str, params: dict[str, Any] | None = None,
                  timeout: float = 10.0) -> dict[str, Any]:
        return await ipc_call(self.layout.runtime_dir(key) / f"{role}.sock", method, params,
                              timeout=timeout)

    async def republish(self, *keys: str) -> None:
        """Ask these providers' overlays to store their claims again now (`publish`)."""
        for k in keys:
            with contextlib.suppress(IpcError):
                await self.ipc(k, "overlay", "publish", timeout=10.0)

    async def route(self, key: str, number: str) -> Route | None:
        db = self.layout.database(key)
        if not db.exists():
            return None
        async with Store.open(db) as store:
            return await store.get_route(number)

    async def vcrs(self, key: str, number: str, since: float) -> list[Vcr]:
        """VCRs of calls to `number` that started after `since` (newest first)."""
        db = self.layout.database(key)
        if not db.exists():
            return []
        async with Store.open(db) as store:
            return [v for v in await store.list_vcrs(since=since) if v.callee == number]

    async def validations(self, key: str, number: str, since: float) -> list[ValidationRecord]:
        db = self.layout.database(key)
        if not db.exists():
            return []
        async with Store.open(db) as store:
            return [v for v in await store.list_validations(limit=200, since=since)
                    if v.number == number]

    async def wait_for(self, what: str, check: Any, timeout: float,
                       interval: float = 0.1) -> Any:
        """Poll the async `check()` until it returns a true value; TimeoutError names `what`.
        (Waiting on a condition with a deadline, never a fixed sleep.)"""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            with contextlib.suppress(IpcError, OSError):
                last = await check()
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            await asyncio.sleep(interval)
