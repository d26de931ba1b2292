"""Ports handed to another process (SIPp, a daemon's config) that binds them later.

A port found free with bind(port 0) lies in the kernel's ephemeral range: between the check and
the child's own bind, any process's connect() or bind(0) may take it, and a test fails with
EADDRINUSE now and then (issue 19 item 8). SIPp and the daemons' configs need the number in
advance, so instead every test hands out ports through this one helper, which leases them:

- from LEASE_RANGE, below the ephemeral range, which the kernel never gives out by itself (and
  away from the 20000-32000 blocks `vipr testnet` picks for the demo);
- each lease is an exclusive flock on a file in a directory shared by every test process on
  the machine, held until this process exits, so two test runs (or two tests of one run)
  never hand out the same port, and no port is reused while a child may still hold it;
- a leased port must bind for TCP and UDP on 127.0.0.1 right then, so a foreign listener is
  skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

from vipr.testnet.workdir import port_free

LEASE_RANGE = range(10000, 20000)
LEASE_DIR = Path(tempfile.gettempdir()) / "vipr-test-ports"

_held: dict[int, int] = {}   # port -> the open lock file's descriptor (never closed)
_lock = threading.Lock()




def _try_lease(port: int) -> bool:
    if port in _held:
        return False
    fd = os.open(LEASE_DIR / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    if not port_free(port):
        os.close(fd)   # closing releases the flock
        return False
    _held[port] = fd
    return True


def _lease_block(n: int) -> int:
    LEASE_DIR.mkdir(mode=0o1777, exist_ok=True)
    with contextlib.suppress(OSError):
        LEASE_DIR.chmod(0o1777)   # shared by every user's test runs, like /tmp
    lo, hi = LEASE_RANGE.start, LEASE_RANGE.stop - n
    start = random.randrange(lo, hi)
    with _lock:
        for i in range(hi - lo):
            base = lo + (start - lo + i) % (hi - lo)
            got: list[int] = []
            for p in range(base, base + n):
                if not _try_lease(p):
                    break
                got.append(p)
            if len(got) == n:
                return base
            for p in got:   # a partial block goes back
                os.close(_held.pop(p))
    raise RuntimeError(f"no block of {n} leasable ports in {LEASE_RANGE}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port (free for TCP and UDP, whatever `kind` says) leased to this process."""
    del kind   # both protocols are checked
    return _lease_block(1)


def free_port_block(n: int) -> int:
    """The first of `n` consecutive ports leased to this process."""
    return _lease_block(n)
