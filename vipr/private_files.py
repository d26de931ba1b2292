"""Secrets on disk are owner-only whatever the umask (DESIGN §8 "Files and permissions").

The database (it holds the ticket HMAC keys), its -wal/-shm, private keys and `runtime_dir`
are created 0600 (files) / 0700 (directories): the mode is set explicitly, never left to the
umask (`vipr up`, the demo and docker run with 0022 or 0000). SQLite gives a new -wal/-shm the
database file's mode, so `private_file` creates the database before SQLite opens it.

Existing files: the database and its -wal/-shm are tightened to 0600 when we own them (the
roles run as one user), with a warning; a key file or directory that others can read is
reported loudly (the operator owns those: under systemd they are root:vipr 0640, which is
fine, group access by our own group is allowed).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "exposure", "private_dir", "private_file",
    "tighten", "warn_if_exposed", "write_private",
]

log = logging.getLogger("vipr.files")

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def exposure(st: os.stat_result) -> str | None:
    """Who besides the owner may read `st`, or None: "others", or "group N" for a group that
    is not ours (a group we run as is the deployment's explicit choice, e.g. systemd)."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        return "others"
    if mode & 0o070 and st.st_gid not in (os.getgid(), os.getegid(), *os.getgroups()):
        return f"group {st.st_gid}"
    return None


def private_dir(path: Path, *, warn: bool = True) -> Path:
    """Create `path` and its missing parents 0700; an existing directory is left as it is
    (with `warn`, a warning if others can enter it). Returns `path`."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue                        # created meanwhile (another role)
        os.chmod(d, PRIVATE_DIR_MODE)       # the umask may have removed bits, never adds
    if not missing and warn:
        warn_if_exposed(path, "directory")
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` as an owner-only (0600) file, also when it existed before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        fh.write(data)


def private_file(path: Path, what: str) -> None:
    """Make sure `path` exists and is owner-only: create it empty 0600, or `tighten` it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten(path, what)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def tighten(path: Path, what: str) -> None:
    """An existing `path` readable by anyone but its owner → 0600 (warning), or a loud
    warning when it is not ours to change. A missing file is fine."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    if st.st_uid == os.geteuid():
        os.chmod(path, mode & 0o700)
        log.warning("%s %s was readable by other users (mode %04o): now %04o", what, path,
                    mode, mode & 0o700)
    else:
        log.warning("SECURITY: %s %s is readable by other users (mode %04o, owner uid %d): "
                    "chmod 600 it", what, path, mode, st.st_uid)


def warn_if_exposed(path: Path, what: str) -> bool:
    """Log a loud warning if others can read `path` (see `exposure`); True if so."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    who = exposure(st)
    if who is None:
        return False
    log.warning("SECURITY: %s %s is readable by %s (mode %04o): chmod %s it", what, path, who,
                stat.S_IMODE(st.st_mode), "700" if stat.S_ISDIR(st.st_mode) else "600")
    return True
