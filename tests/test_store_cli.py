"""`vipr routes|vcrs list|numbers`: tables, --json, --db and --config."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vipr.cli import main
from vipr.ipc import IpcServer
from vipr.store import Store
from vipr.store.models import PublishedNumber, Route, Vcr

T = 1_764_144_000.0


def seed(db: Path | str) -> None:
    async def go() -> None:
        async with Store.open(db) as s:
            await s.upsert_route(Route("+14085551234", ("sip:192.0.2.7:5061;transport=tls",),
                                       "TICKET", T + 86400, T + 86400, "ab" * 16,
                                       "b.example.net", T))
            await s.upsert_route(Route("+14085550000", ("sip:x", "sip:y"), "T2", T, T, "cd" * 16,
                                       "c.example.net", T, last_used=T + 5, failures=2))
            await s.set_published(PublishedNumber("+16505550100", "0000000000000001", T, T + 9))
            await s.add_vcrs([
                Vcr(None, "originating", "+1", "+14085551234", T, T + 60, "o1", T),
                Vcr(None, "terminating", "", "+14085551234", T + 100, T + 160, "t1", T),
            ])

    asyncio.run(go())


@pytest.fixture
def db(db_target: Path | str) -> Path | str:
    """A seeded store on each backend; `--db` takes the file or the URL."""
    seed(db_target)
    return db_target


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_routes_list_table_and_json(db: Path | str) -> None:
    r = run("routes", "list", "--db", str(db))
    assert r.exit_code == 0, r.output
    assert "+14085551234" in r.stdout and "b.example.net" in r.stdout
    assert "sip:x, sip:y" in r.stdout
    assert "TICKET" not in r.stdout  # tickets only in `show`
    r = run("routes", "list", "--db", str(db), "--json")
    data = json.loads(r.stdout)
    assert [d["number"] for d in data] == ["+14085550000", "+14085551234"]
    assert data[0]["routes"] == ["sip:x", "sip:y"] and data[0]["failures"] == 2


def test_routes_show_and_delete(db: Path | str) -> None:
    r = run("routes", "show", "+1 (408) 555-1234", "--db", str(db))
    assert r.exit_code == 0, r.output
    assert "TICKET" in r.stdout and "2025-11-26 08:00:00Z" in r.stdout
    r = run("routes", "show", "+14085551234", "--db", str(db), "--json")
    assert json.loads(r.stdout)["ticket"] == "TICKET"
    r = run("routes", "show", "not-a-number", "--db", str(db))
    assert r.exit_code == 2 and "must start with '+'" in r.stderr
    r = run("routes", "delete", "+14085551234", "--db", str(db))
    assert r.exit_code == 0 and "deleted route +14085551234" in r.stdout
    r = run("routes", "delete", "+14085551234", "--db", str(db))
    assert r.exit_code == 1 and "no route for +14085551234" in r.stderr
    r = run("routes", "show", "+14085551234", "--db", str(db))
    assert r.exit_code == 1


def test_numbers_list(db: Path | str) -> None:
    r = run("numbers", "list", "--db", str(db))
    assert r.exit_code == 0 and "+16505550100" in r.stdout and "0000000000000001" in r.stdout
    r = run("numbers", "list", "--db", str(db), "--json")
    assert json.loads(r.stdout) == [{"number": "+16505550100", "vservice": "0000000000000001",
                                     "stored_at": T, "expires": T + 9}]


def test_vcrs_list_filters(db: Path | str) -> None:
    r = run("vcrs", "list", "--db", str(db), "--json")
    assert [v["call_id"] for v in json.loads(r.stdout)] == ["t1", "o1"]
    r = run("vcrs", "list", "--db", str(db), "--json", "--direction", "originating")
    assert [v["call_id"] for v in json.loads(r.stdout)] == ["o1"]
    r = run("vcrs", "list", "--db", str(db), "--json", "--since", "2025-11-26T08:01:00Z")
    assert [v["call_id"] for v in json.loads(r.stdout)] == ["t1"]
    r = run("vcrs", "list", "--db", str(db), "--json", "--since", str(T + 101))
    assert json.loads(r.stdout) == []
    r = run("vcrs", "list", "--db", str(db), "--json", "--since", "1h")  # all far in the past
    assert json.loads(r.stdout) == []
    r = run("vcrs", "list", "--db", str(db), "--since", "soon")
    assert r.exit_code == 2 and "duration" in r.stderr
    r = run("vcrs", "list", "--db", str(db))
    assert r.exit_code == 0 and "unknown" in r.stdout and "o1" in r.stdout


def test_missing_database_and_no_option(tmp_path: Path) -> None:
    r = run("routes", "list", "--db", str(tmp_path / "absent.db"))
    assert r.exit_code == 1 and "no database" in r.stderr
    assert not (tmp_path / "absent.db").exists()
    r = CliRunner(env={"VIPR_CONFIG": None}).invoke(main, ["routes", "list"])
    assert r.exit_code == 2


@pytest.fixture
def rundir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vipr-cli-", dir="/tmp"))  # short AF_UNIX path
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_config_option_and_proxy_notified_on_delete(tmp_path: Path, rundir: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "provider:\n  name: t\n  domain: t.example.net\n  vservice: \"0000000000000001\"\n"
        f"database: state/vipr.db\nruntime_dir: {rundir}\n"
    )
    seed(tmp_path / "state" / "vipr.db")
    r = run("routes", "list", "--config", str(cfg), "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 2

    seen: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {}

    server = IpcServer(rundir / "proxy.sock", {"route_learned": route_learned})

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    assert ready.wait(10)
    try:
        r = run("routes", "delete", "+14085550000", "--config", str(cfg))
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == "deleted route +14085550000"
        assert seen == [{"number": "+14085550000"}]
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        loop.close()
    # proxy down: the route is still deleted, and the output says the proxy was not told
    r = run("routes", "delete", "+14085551234", "--config", str(cfg))
    assert r.exit_code == 0 and "proxy not notified" in r.stdout
