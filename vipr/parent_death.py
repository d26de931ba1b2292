"""A supervised child dies with its supervisor (Linux PR_SET_PDEATHSIG).

The supervisor (`vipr.supervisor.Child`) puts its pid in $VIPR_PARENT_PID; `die_with_parent()`,
called first thing by the `vipr` command, asks the kernel for SIGTERM when that parent dies
(prctl(2) PR_SET_PDEATHSIG; the setting survives execve) and then checks that the parent is
still the one that started us: if it died before the prctl, the child exits at once. So a
`kill -9` of `vipr up` never leaves roles running under PID 1.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["PARENT_PID_ENV", "die_with_parent"]

PARENT_PID_ENV = "VIPR_PARENT_PID"
PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def die_with_parent() -> None:
    """SIGTERM this process when $VIPR_PARENT_PID dies; exit now if it already has."""
    raw = os.environ.pop(PARENT_PID_ENV, None)     # our own children are not bound to it
    if not raw:
        return
    try:
        parent = int(raw)
    except ValueError:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            sys.stderr.write(f"vipr: prctl(PR_SET_PDEATHSIG): {os.strerror(err)}\n")
    if os.getppid() != parent:
        sys.stderr.write(f"vipr: supervisor (pid {parent}) has exited: not starting\n")
        raise SystemExit(1)
