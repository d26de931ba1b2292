"""Shared test helpers: outside tools that may be missing skip their tests, saying why;
teardown that fails loudly."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.pg_cluster import Cluster, drop_database, fresh_database, pg_bin

# Never time things in tests: no per-example deadline (the default is 200 ms, which a loaded
# machine misses) and no "generation too slow" health check. Every hypothesis test inherits it.
settings.register_profile(
    "vipr", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("vipr")

DEBIAN_PACKAGE = {
    "sipp": "sip-tester",
    "tshark": "tshark",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
    "systemd-analyze": "systemd",
    "initdb": "postgresql",
    "kamailio": "kamailio, kamailio-utils-modules, kamailio-extra-modules, kamailio-tls-modules",
    "promtool": "prometheus",
}


def requires_tool(cmd: str) -> pytest.MarkDecorator:
    """Skip unless `cmd` is on PATH; the reason names the Debian package to install."""
    pkg = DEBIAN_PACKAGE.get(cmd, cmd)
    return pytest.mark.skipif(
        shutil.which(cmd) is None,
        reason=f"{cmd} not installed (Debian package {pkg}; `make test` installs it as root)",
    )


async def stop_all(stops: Iterable[Awaitable[object]], *, timeout: float, what: str) -> None:
    """Teardown: await every stop (each bounded by `timeout`), then fail loudly if any raised
    or hung; a broken shutdown is a finding, never swallowed."""
    errors: list[Exception] = []
    for stop in stops:
        try:
            await asyncio.wait_for(stop, timeout)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise ExceptionGroup(f"{what}: {len(errors)} failed to stop cleanly", errors)


async def until(what: str, cond: Callable[[], bool], *, timeout: float, poll: float = 0.05,
                detail: Callable[[], object] | None = None) -> None:
    """Await a condition that has no event of its own: checked every `poll` s, failing with
    `what` (and `detail()`) after `timeout` s (a bound, never a figure the test relies on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() >= deadline:
            more = f": {detail()!r}" if detail is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout} s{more}")
        await asyncio.sleep(poll)


# ---------------------------------------------------------------- PostgreSQL (issue 15)

requires_postgresql = pytest.mark.skipif(
    pg_bin() is None,
    reason="PostgreSQL not installed (Debian package postgresql: /usr/lib/postgresql/*/bin/"
           "initdb; `make test` installs it as root)",
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throw-away cluster for the whole session (tests/pg_cluster.py)."""
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL not installed (Debian package postgresql)")
    cluster = Cluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database in the session's cluster; dropped after the test."""
    url = fresh_database(pg_cluster)
    try:
        yield url
    finally:
        drop_database(pg_cluster, url)


BACKENDS = ("sqlite", pytest.param("postgresql", marks=requires_postgresql))


@pytest.fixture(params=BACKENDS)
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store lives, once per backend: an SQLite file, or a fresh PostgreSQL
    database's URL (the store suite runs against both, issue 15)."""
    if request.param == "sqlite":
        return tmp_path / "sub" / "vipr.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def backend(db_target: str | Path) -> str:
    return "postgresql" if isinstance(db_target, str) else "sqlite"
