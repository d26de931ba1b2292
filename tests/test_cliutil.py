"""vipr.cliutil: options, config/db resolution, table and JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
from click.testing import CliRunner

from vipr.cliutil import (
    config_option,
    db_option,
    fail,
    json_option,
    load_config_or_fail,
    print_json,
    print_table,
    resolve_db,
)


@dataclass(frozen=True)
class Row:
    number: str
    path: Path
    secret: bytes
    routes: tuple[str, ...]


@click.command()
@config_option
@db_option
@json_option
def demo(config: Path | None, db: Path | None, as_json: bool) -> None:
    database = resolve_db(config, db)
    rows = [Row("+1", database, b"\x01\xff", ("sip:a", "sip:b"))]
    if as_json:
        print_json(rows)
    else:
        print_table(["number", "db", "routes", "none"], [(r.number, r.path, r.routes, None)
                                                         for r in rows])  # fmt: skip


def test_table_is_plain_when_not_a_tty() -> None:
    result = CliRunner().invoke(demo, ["--db", "/x/v.db"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "number  db       routes        none",
        "+1      /x/v.db  sip:a, sip:b  -",
    ]


def test_json_output_handles_dataclasses_paths_bytes() -> None:
    result = CliRunner().invoke(demo, ["--db", "/x/v.db", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"number": "+1", "path": "/x/v.db", "secret": "01ff", "routes": ["sip:a", "sip:b"]}
    ]


def test_db_from_config_env_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        'provider: {name: p, domain: p.example, vservice: "00000000000000aa"}\ndatabase: d.db\n'
    )
    ok = CliRunner().invoke(demo, ["--json"], env={"VIPR_CONFIG": str(cfg)})
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["path"] == str(tmp_path / "d.db")
    neither = CliRunner().invoke(demo, [], env={"VIPR_CONFIG": None})
    assert neither.exit_code == 2
    assert neither.stderr == "error: give --config FILE (or --db FILE, or set VIPR_CONFIG)\n"
    cfg.write_text("database: d.db\n")
    bad = CliRunner().invoke(demo, ["-c", str(cfg)])
    assert bad.exit_code == 2
    assert bad.stderr == f"{cfg}:1: provider: required key missing\n"


def test_fail_and_load_config_or_fail() -> None:
    @click.command()
    def boom() -> None:
        fail("nope", 3)

    result = CliRunner().invoke(boom, [])
    assert (result.exit_code, result.stderr) == (3, "error: nope\n")

    @click.command()
    def noconf() -> None:
        load_config_or_fail(None)

    assert CliRunner().invoke(noconf, []).exit_code == 2
