"""Issue 16, "Defects seen while following the README": the CLI as an operator meets it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.proxy.proxy_helpers import A_NUMBER, VIPR, ProxyProcess, write_provider
from vipr.cli import main
from vipr.store import Store


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


# ------------------------------------------------------------ ca and tls print alike


def test_ca_and_tls_print_text_by_default_and_json_with_the_flag(tmp_path: Path) -> None:
    ov, fed, tls = tmp_path / "overlay", tmp_path / "fed", tmp_path / "tls"
    texts = [
        run("ca", "init", "--overlay", "o.example.net", "--out", str(ov)),
        run("ca", "issue", "--config", str(ov / "overlay.xml"), "--out", str(ov),
            "--user", "provider-a", "--name", "provider-a"),
        run("tls", "ca", "--out", str(fed)),
        run("tls", "issue", "--ca-dir", str(fed), "--domain", "a.example.net", "--out", str(tls)),
    ]
    for r in texts:
        assert r.exit_code == 0, r.output
        assert not r.output.lstrip().startswith("{"), r.output   # text, not JSON
        assert all(": " in ln for ln in r.output.splitlines()), r.output
    assert f"cert: {ov / 'provider-a.crt'}" in texts[1].output
    assert f"ca cert: {fed / 'ca.pem'}" in texts[2].output

    jsons = [
        run("ca", "init", "--overlay", "o.example.net", "--out", str(tmp_path / "o2"), "--json"),
        run("ca", "issue", "--config", str(ov / "overlay.xml"), "--out", str(ov),
            "--user", "provider-b", "--name", "provider-b", "--json"),
        run("tls", "ca", "--out", str(tmp_path / "fed2"), "--json"),
        run("tls", "issue", "--ca-dir", str(fed), "--domain", "b.example.net", "--out",
            str(tls), "--json"),
    ]
    for r in jsons:
        assert r.exit_code == 0, r.output
        assert isinstance(json.loads(r.output), dict)
    assert json.loads(jsons[1].output)["key"] == str(ov / "provider-b.key")
    assert json.loads(jsons[2].output)["ca_cert"] == str(tmp_path / "fed2" / "ca.pem")
    assert json.loads(jsons[3].output)["cert"] == str(tls / "b.example.net.pem")


# ------------------------------------------------------------ routes show --json


def test_routes_show_json_without_a_route_prints_null(tmp_path: Path) -> None:
    db = str(tmp_path / "v.db")

    async def create() -> None:
        async with Store.open(Path(db)):
            pass

    asyncio.run(create())                    # an empty store: no route at all
    r = CliRunner().invoke(main, ["routes", "show", "+14085551234", "--db", db, "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout) is None
    assert "no route for +14085551234" in r.stderr
    r = run("routes", "list", "--db", db, "--json")
    assert r.exit_code == 0 and json.loads(r.output) == []


# ------------------------------------------------------------ lookup


def test_lookup_error_names_the_value_once() -> None:
    r = CliRunner().invoke(main, ["lookup", "442071230000"])
    assert r.exit_code == 2
    assert r.stderr.count("442071230000") == 1, r.stderr
    assert "must start with '+'" in r.stderr


def test_lookup_table_has_no_internal_resource_label(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    import vipr.reload.overlay_cli as overlay_cli

    answer = {"number": "+442071230000", "resource": "COPY1N",
              "claims": [{"node_id": "ab" * 16, "vservice": "00" * 8, "peer_id": "cd" * 16}]}
    monkeypatch.setattr(overlay_cli, "_call", lambda *a: answer)
    r = run("lookup", "+442071230000")
    assert r.exit_code == 0, r.output
    assert "+442071230000: 1 claim(s)" in r.output
    assert "from" not in r.output and "COPY1N" not in r.output
    r = run("lookup", "+442071230000", "--json")
    assert json.loads(r.output)["resource"] == "COPY1N"    # still there for machines


# ------------------------------------------------------------ proxy status after a rotation


@pytest.mark.timeout(60)
async def test_proxy_status_shows_the_new_epoch_right_after_tickets_rotate(
        tmp_path: Path) -> None:
    p = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], None)
    proxy = await ProxyProcess(p).start()
    try:
        assert (await proxy.status())["ticket_epochs"] == [1]

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*VIPR, *args, "--config", str(p.config)],
                                  capture_output=True, text=True, timeout=30)

        rot = await asyncio.to_thread(cli, "tickets", "rotate", "--json")
        assert rot.returncode == 0, rot.stderr
        assert json.loads(rot.stdout)["proxy_notified"] is True
        st = await asyncio.to_thread(cli, "proxy", "status")
        assert st.returncode == 0, st.stderr
        assert "ticket epochs: [1, 2]" in st.stdout, st.stdout
    finally:
        await proxy.stop()
