"""Connection floods for the attack suite: many TCP connections held open from one source.

Each flood worker is its own process (`python -m vipr.testnet.attack_flood`), so that the
file-descriptor limit of one process does not cap the flood: the parent starts one worker per
source address (127.0.0.2 … 127.0.0.9), reads its "opened" line, keeps the connections while
it checks legitimate traffic, then closes the worker's stdin and reads its final counts. Like a
real attacker, a worker opens a new connection whenever the server closes one (`--reopen`,
bounded), so a pre-handshake timeout alone does not free the slots.

    async with Flood(host, port, total=20_000, sources=ATTACK_SOURCES) as f:
        f.opened, f.failed            # after every worker opened what it could
    f.result                          # {"opened", "failed", "closed_by_peer", "errors"}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import random
import resource
import socket
import sys
from collections import Counter
from types import TracebackType
from typing import Any

__all__ = ["ATTACK_SOURCES", "Flood", "raise_nofile"]

ATTACK_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 10))
CONNECT_TIMEOUT = 10.0
PARALLEL = 256  # connects in flight per worker
REOPEN_DELAY = 1.0  # seconds from the server closing a connection to opening its successor


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); the (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------------- the worker


async def _worker(host: str, port: int, src: str, count: int, garbage: bool,
                  reopen: bool) -> None:
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    errors: Counter[str] = Counter()
    closed = 0
    reopened = 0
    holding = False
    budget = count * 10            # bounded: at most this many re-opens in all
    pending: set[asyncio.Task[None]] = set()
    rng = random.Random(port)
    sem = asyncio.Semaphore(PARALLEL)

    def on_readable(s: socket.socket) -> None:
        nonlocal closed
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(s.fileno())
            closed += 1
            if reopen and holding and closed <= budget:   # keep `count` connections open
                nonlocal reopened
                reopened += 1
                t = loop.create_task(one(REOPEN_DELAY))
                pending.add(t)
                t.add_done_callback(pending.discard)

    async def one(delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with sem:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.bind((src, 0))
                await asyncio.wait_for(loop.sock_connect(s, (host, port)), CONNECT_TIMEOUT)
                if garbage:
                    s.send(rng.randbytes(rng.randrange(1, 600)))
            except (OSError, TimeoutError) as exc:
                code = getattr(exc, "errno", None)
                errors[errno.errorcode.get(code, "timeout") if code else "timeout"] += 1
                s.close()
                return
            socks.append(s)
            loop.add_reader(s.fileno(), on_readable, s)

    holding = True
    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"phase": "open", "opened": len(socks), "failed": sum(errors.values())}),
          flush=True)
    await loop.run_in_executor(None, sys.stdin.read)   # hold until the parent closes stdin
    holding = False
    for t in list(pending):
        t.cancel()
    for s in socks:
        with contextlib.suppress(Exception):
            loop.remove_reader(s.fileno())
        s.close()
    print(json.dumps({"phase": "done", "opened": len(socks), "failed": sum(errors.values()),
                      "closed_by_peer": closed, "reopened": reopened,
                      "errors": dict(errors)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="hold COUNT TCP connections from SRC to HOST:PORT")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--src", default="127.0.0.2")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--garbage", action="store_true", help="send random bytes once connected")
    ap.add_argument("--reopen", action="store_true",
                    help="open a new connection whenever the server closes one")
    a = ap.parse_args()
    raise_nofile()
    asyncio.run(_worker(a.host, a.port, a.src, a.count, a.garbage, a.reopen))


# ---------------------------------------------------------------------- the parent side


class Flood:
    """`total` connections to host:port spread over `sources`, one worker process each."""

    def __init__(self, host: str, port: int, total: int, *,
                 sources: tuple[str, ...] = ATTACK_SOURCES, garbage: bool = False,
                 reopen: bool = True, open_timeout: float = 120.0) -> None:
        self.host, self.port, self.total = host, port, total
        self.sources = sources
        self.garbage = garbage
        self.reopen = reopen
        self.open_timeout = open_timeout
        self.procs: list[asyncio.subprocess.Process] = []
        self.opened = 0
        self.failed = 0
        self.result: dict[str, Any] = {}

    async def __aenter__(self) -> Flood:
        per, extra = divmod(self.total, len(self.sources))
        for i, src in enumerate(self.sources):
            n = per + (1 if i < extra else 0)
            if n == 0:
                continue
            argv = [sys.executable, "-m", "vipr.testnet.attack_flood", self.host,
                    str(self.port), "--src", src, "--count", str(n)]
            if self.garbage:
                argv.append("--garbage")
            if self.reopen:
                argv.append("--reopen")
            self.procs.append(await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL))
        try:
            async with asyncio.timeout(self.open_timeout):
                for p in self.procs:
                    assert p.stdout is not None
                    line = await p.stdout.readline()
                    if line:
                        first = json.loads(line)
                        self.opened += int(first["opened"])
                        self.failed += int(first["failed"])
        except TimeoutError:
            self.result["open_timeout"] = True
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        total: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for p in self.procs:
            assert p.stdin is not None and p.stdout is not None
            with contextlib.suppress(OSError):
                p.stdin.close()
            try:
                async with asyncio.timeout(30.0):
                    line = await p.stdout.readline()
                    await p.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
                continue
            if line:
                done = json.loads(line)
                for k in ("opened", "failed", "closed_by_peer", "reopened"):
                    total[k] += int(done[k])
                errors.update(done.get("errors", {}))
        self.result.update({"tried": self.total, "opened": total["opened"],
                            "failed": total["failed"],
                            "closed_by_peer": total["closed_by_peer"],
                            "reopened": total["reopened"], "errors": dict(errors)})


if __name__ == "__main__":
    main()
