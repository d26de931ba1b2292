"""Secrets on disk are owner-only whatever the umask (issue 13 defect 7): the database (ticket
HMAC keys) and its -wal/-shm, private keys, the demo's work directory and runtime_dir."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipr.private_files import exposure, private_dir, private_file, write_private
from vipr.store import Store
from vipr.testnet.workdir import make_workdir

UMASKS = [0o022, 0o000]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_private(path: Path) -> None:
    assert mode(path) & 0o077 == 0, f"{path}: mode {mode(path):04o}"


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask{u:04o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def test_new_database_wal_and_shm_are_owner_only(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "state" / "p" / "vipr.db"           # directories missing too
    async with Store.open(db) as store:
        key = await store.create_ticket_key(time.time())      # a secret is written …
        assert await store.ticket_key(key.epoch) is not None
        for f in (db, db.with_name("vipr.db-wal"), db.with_name("vipr.db-shm")):
            assert f.exists(), f                        # … while WAL and SHM exist
            assert_private(f)
    assert mode(db.parent) == 0o700
    assert mode(db.parent.parent) == 0o700


async def test_existing_database_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              umask: int) -> None:
    db = tmp_path / "vipr.db"
    async with Store.open(db) as store:
        await store.create_ticket_key(time.time())
    for f in tmp_path.iterdir():
        os.chmod(f, 0o644)                              # as the old code left it
    with caplog.at_level(logging.WARNING, logger="vipr.files"):
        async with Store.open(db) as store:
            await store.create_ticket_key(time.time())
            for f in tmp_path.iterdir():
                assert_private(f)
    assert f"database {db} was readable by other users (mode 0644): now 0600" in caplog.text


def test_demo_workdir_keys_state_and_runtime_dirs(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "demo"
    layout = make_workdir(root)
    assert mode(root) == 0o700
    keys = sorted(root.rglob("*.key"))
    assert len(keys) >= 8                              # overlay CA + nodes, TLS CA + leaves
    for k in keys:
        assert_private(k)
    for d in ("overlay", "tls", "logs", *(f"run/{k}" for k in "abc"),
              *(f"state/{k}" for k in "abc")):
        assert mode(root / d) == 0o700, d
    make_workdir(root)                                  # written again over the old files
    for k in keys:
        assert_private(k)
    assert layout.database("a").parent == root / "state" / "a"


def test_write_private_replaces_an_exposed_file(tmp_path: Path, umask: int) -> None:
    f = tmp_path / "k.key"
    f.write_bytes(b"old")
    os.chmod(f, 0o644)
    write_private(f, b"new secret")
    assert f.read_bytes() == b"new secret"
    assert mode(f) == 0o600
    private_file(tmp_path / "new.db", "database")
    assert mode(tmp_path / "new.db") == 0o600


def test_ca_cli_keys_are_owner_only(tmp_path: Path, umask: int) -> None:
    from click.testing import CliRunner

    from vipr.cli import main

    out = tmp_path / "ca"
    res = CliRunner().invoke(main, ["ca", "init", "--overlay", "o.example", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert_private(out / "ca.key")
    res = CliRunner().invoke(main, ["ca", "issue", "--config", str(out / "overlay.xml"),
                                    "--out", str(tmp_path / "n"), "--user", "n@o.example"])
    assert res.exit_code == 0, res.output
    keys = list((tmp_path / "n").glob("*.key"))
    assert keys
    for k in keys:
        assert_private(k)


def test_private_dir_and_exposure(tmp_path: Path, umask: int) -> None:
    d = private_dir(tmp_path / "a" / "b")
    assert mode(d) == 0o700 and mode(d.parent) == 0o700
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o604)
    assert exposure(os.stat(f)) == "others"
    os.chmod(f, 0o640)
    assert exposure(os.stat(f)) is None                 # our own group: a deliberate choice
    os.chmod(f, 0o600)
    assert exposure(os.stat(f)) is None


# ---------------------------------------------------------------------- a real daemon

SCRIPT = """\
import asyncio, sys, time
from vipr.config import load_config
from vipr.daemon import notify_ready, run_daemon
from vipr.store import Store

cfg = load_config(sys.argv[1])

async def main(stop: asyncio.Event) -> None:
    async with Store.open(cfg.database) as store:
        await store.create_ticket_key(time.time())
        notify_ready("serving")
        await stop.wait()

run_daemon("pvp", cfg, main)
"""

CONFIG = """\
provider: {name: p, domain: p.example, vservice: "00000000000000aa"}
database: state/db.sqlite
runtime_dir: run/p
logging: {level: info, format: text}
overlay: {cert: node.crt, key: exposed.key}
"""


@pytest.mark.parametrize("mask", UMASKS, ids=lambda u: f"umask{u:04o}")
def test_daemon_runtime_dir_and_database_under_umask(tmp_path: Path, mask: int) -> None:
    (tmp_path / "d.py").write_text(SCRIPT)
    (tmp_path / "p.yaml").write_text(CONFIG)
    (tmp_path / "exposed.key").write_bytes(b"x")
    os.chmod(tmp_path / "exposed.key", 0o644)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "n.sock"))
        sock.settimeout(20)
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "n.sock"))
        proc = subprocess.Popen([sys.executable, str(tmp_path / "d.py"), str(tmp_path / "p.yaml")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, umask=mask)
        try:
            try:
                ready = sock.recv(4096)
            except TimeoutError:
                ready = b""
            assert ready.startswith(b"READY=1"), proc.poll() or ""
            db = tmp_path / "state" / "db.sqlite"
            for f in (db, db.with_name("db.sqlite-wal"), db.with_name("db.sqlite-shm")):
                assert_private(f)
            assert mode(tmp_path / "run" / "p") == 0o700
            assert mode(tmp_path / "run") == 0o700
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"SECURITY: overlay key {tmp_path / 'exposed.key'} is readable by others" in err
