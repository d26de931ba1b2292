"""`vipr vcrs import --format asterisk-csv|freeswitch-json` and `--map` (DESIGN §11):
answer time as start, national numbers normalised by the config's dialplan, bad rows by line."""

from __future__ import annotations

import asyncio
import json
from datetime import timezone
from pathlib import Path

from click.testing import CliRunner

from vipr.cli import main
from vipr.dialplan import Dialplan
from vipr.store import Store
from vipr.store.models import Vcr
from vipr.store.vcrimport import ImportOptions, parse_export, parse_utc_offset

VECTORS = Path(__file__).parent / "vectors" / "cdr"
T = 1796612400   # 2026-12-07T03:00:00Z, the first call's setup in the vectors


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text('provider: {name: a, domain: a.example.net, vservice: "0000000000000001"}\n'
                 "database: a.db\ndialplan: {country_code: 44}\n")
    return p


def _stored(db: Path) -> list[Vcr]:
    async def go() -> list[Vcr]:
        async with Store.open(db) as store:
            return sorted(await store.list_vcrs(), key=lambda v: v.start)
    return asyncio.run(go())


def test_asterisk_master_csv(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    r = CliRunner().invoke(main, ["vcrs", "import", str(VECTORS / "Master.csv"), "--config",
                                  str(cfg), "--format", "asterisk-csv", "--direction",
                                  "originating", "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert (out["imported"], out["unanswered"], out["bad"]) == (3, 1, 2)
    assert [b["line"] for b in out["bad_rows"]] == [4, 5]
    assert "callee" in out["bad_rows"][0]["reason"]
    vcrs = _stored(tmp_path / "a.db")
    # start = the answer column (03:00:07), not the setup time (03:00:00); UTC by default
    assert [(v.caller, v.callee, v.start, v.stop, v.call_id) for v in vcrs] == [
        ("+442071230000", "+33140000000", T + 7, T + 67, "1765076400.1"),
        ("+442071230002", "+33140000002", T + 602, T + 642, "1765077000.5"),
        ("+442071230005", "+33140000005", T + 1203, T + 1263,
         "PJSIP/eve-00000009/2026-12-07 03:20:00"),
    ]
    assert {v.direction for v in vcrs} == {"originating"}
    # the same file again: nothing new
    r = CliRunner().invoke(main, ["vcrs", "import", str(VECTORS / "Master.csv"), "--config",
                                  str(cfg), "--format", "asterisk-csv", "--direction",
                                  "originating", "--json"])
    assert json.loads(r.stdout)["duplicates"] == 3


def test_asterisk_local_time_offset() -> None:
    text = (VECTORS / "Master.csv").read_text()
    res = parse_export(text, 1.0, ImportOptions("asterisk-csv", direction="terminating",
                                                dialplan=Dialplan(country_code="44"),
                                                utc_offset=_tz("+01:00")))
    assert res.good[0].start == T + 7 - 3600 and res.good[0].direction == "terminating"


def _tz(text: str) -> timezone:
    return parse_utc_offset(text)


def test_freeswitch_json_cdrs(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    r = CliRunner().invoke(main, ["vcrs", "import", str(VECTORS / "freeswitch.jsonl"),
                                  "--config", str(cfg), "--format", "freeswitch-json",
                                  "--direction", "originating", "--json"])
    out = json.loads(r.stdout)
    assert (out["imported"], out["unanswered"], out["bad"]) == (2, 1, 1), out
    assert out["bad_rows"][0]["line"] == 4
    vcrs = _stored(tmp_path / "a.db")
    assert [(v.callee, v.start, v.stop, v.call_id) for v in vcrs] == [
        ("+33140000000", T + 105, T + 165, "fs-1@198.51.100.7"),
        ("+33140000002", T + 309, T + 349, "fs-3@198.51.100.7"),
    ]
    # one mod_json_cdr file per call: the same reader
    r = CliRunner().invoke(main, ["vcrs", "import", str(VECTORS / "freeswitch-a.cdr.json"),
                                  "--config", str(cfg), "--format", "freeswitch-json",
                                  "--direction", "originating", "--json"])
    assert json.loads(r.stdout)["duplicates"] == 1


def test_map_renames_columns(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_text("a_party,b_party,setup,answered,released,uid\n"
                   f"020 7123 0000,0033140000000,{T},{T + 5},{T + 65},u-1\n"
                   f"020 7123 0000,nobody,{T},{T + 5},{T + 65},u-2\n")
    r = CliRunner().invoke(main, [
        "vcrs", "import", str(src), "--config", str(_config(tmp_path)), "--direction",
        "terminating", "--map", "caller=a_party", "--map", "callee=b_party",
        "--map", "start=answered", "--map", "stop=released", "--map", "call_id=uid"])
    assert r.exit_code == 1
    assert f"{src}:3: callee" in r.stderr
    [v] = _stored(tmp_path / "a.db")
    assert (v.caller, v.callee, v.start, v.direction) == ("+442071230000", "+33140000000",
                                                          T + 5, "terminating")
    r = CliRunner().invoke(main, ["vcrs", "import", str(src), "--db", str(tmp_path / "x.db"),
                                  "--map", "nope"])
    assert r.exit_code == 2 and "FIELD=COLUMN" in r.stderr
