"""A throw-away PostgreSQL cluster for the tests (issue 15): Debian's initdb/pg_ctl in a temporary
directory, listening on 127.0.0.1 on a leased port (tests/ports.py) and on a socket in that
directory, trust authentication (loopback only), removed when the session ends.

initdb refuses to run as root: as root the cluster runs as `nobody` (runuser), which owns the
directory. Nothing of the system's own cluster is used or touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
START_TIMEOUT = 60.0


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None (package postgresql)."""
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """initdb + pg_ctl start; `url(db)` names a database; `stop()` and `start()` (the outage
    tests); `remove()` stops and deletes everything."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="vipr-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._as = ["runuser", "-u", "nobody", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT,
                           cwd=self.root, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts,
                  "-w", "-t", str(int(START_TIMEOUT)), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def psql(cluster: Cluster, sql: str, database: str = "postgres") -> str:
    """Run one statement with the cluster's psql (admin work: CREATE/DROP DATABASE)."""
    r = subprocess.run(
        [str(cluster.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", database,
         "-c", sql],
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {r.stderr.strip()}")
    return r.stdout.strip()


_counter = [0]


def fresh_database(cluster: Cluster) -> str:
    """A new empty database in the cluster; its URL."""
    _counter[0] += 1
    name = f"t{os.getpid()}_{_counter[0]}_{int(time.time() * 1000) % 100000}"
    psql(cluster, f"CREATE DATABASE {name}")
    return cluster.url(name)


def drop_database(cluster: Cluster, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    psql(cluster, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
