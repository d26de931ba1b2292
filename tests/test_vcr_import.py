"""`vipr vcrs import`: good rows kept, bad rows reported by line, re-import changes nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vipr.cli import main
from vipr.store import Store, Vcr
from vipr.store.vcrimport import (
    FIELDS,
    ImportFormatError,
    RowError,
    parse_time,
    parse_vcr_file,
)

T = 1_764_144_000  # 2025-11-26T08:00:00Z

CSV_MIXED = f"""caller,callee,direction,start,stop,call_id,extra
+1 408 555 0001,+14085551234,originating,{T},{T + 60},call-1@pbx,x
+14085550002,(+1) 408-555-1235,terminating,2025-11-26T08:00:00Z,2025-11-26T08:01:30+00:00,call-2,y
,+14085551236,terminating,{T}.5,{T + 10}.25,call-3,
+14085550004,+14085551237,sideways,{T},{T + 5},call-4,

+14085550005,14085551238,originating,{T},{T + 5},call-5,
+14085550006,+14085551239,originating,{T + 100},{T},call-6,
+14085550007,+14085551240,originating,2025-11-26T08:00:00,{T + 5},call-7,
+14085550008,+14085551241,terminating,{T},{T + 5},,
+14085550009,+14085551242,terminating,{T},{T + 5}
,+14085551243,originating,{T},{T + 5},call-10,
"""
# bad: line 5 direction, 7 callee without +, 8 stop<start, 9 naive time, 10 empty call_id,
# 11 field count, 12 originating without caller
CSV_BAD_LINES = [5, 7, 8, 9, 10, 11, 12]

JSONL_MIXED = "\n".join([
    json.dumps({"caller": "+14085550001", "callee": "+14085551234", "direction": "originating",
                "start": T, "stop": T + 60, "call_id": "j1"}),
    "{broken json",
    json.dumps({"caller": "+14085550001", "callee": "+14085551234", "direction": "terminating",
                "start": "2025-11-26T09:00:00+01:00", "stop": T + 30, "call_id": "j2"}),
    "",
    json.dumps([1, 2, 3]),
    json.dumps({"caller": "+14085550001", "callee": "+14085551234", "direction": "terminating",
                "start": T, "call_id": "j3"}),
    json.dumps({"caller": "+14085550001", "callee": "+14085551234", "direction": "terminating",
                "start": True, "stop": T, "call_id": "j4"}),
]) + "\n"
JSONL_BAD_LINES = [2, 5, 6, 7]


def rows(db: Path | str) -> list[Vcr]:
    """Every stored VCR, whole (through the store: either backend)."""
    async def go() -> list[Vcr]:
        async with Store.open(db) as s:
            return await s.list_vcrs(limit=None)

    return asyncio.run(go())


def bad_lines(stderr: str, name: str) -> list[int]:
    out = []
    for line in stderr.splitlines():
        assert line.startswith(name + ":"), line
        out.append(int(line.split(":")[1]))
    return out


def test_parse_time() -> None:
    assert parse_time(T) == T
    assert parse_time(f"{T}.5") == T + 0.5
    assert parse_time("2025-11-26T08:00:00Z") == T
    assert parse_time("2025-11-26T09:00:00+01:00") == T
    for bad in ("2025-11-26T08:00:00", "yesterday", "", None, True, -5, "nan", float("inf"), []):
        with pytest.raises(RowError):
            parse_time(bad)


def test_parse_file_formats() -> None:
    good, bad = parse_vcr_file(CSV_MIXED, now=1.0)
    assert [v.call_id for v in good] == ["call-1@pbx", "call-2", "call-3"]
    assert [b.line for b in bad] == CSV_BAD_LINES
    assert good[0].caller == "+14085550001" and good[1].callee == "+14085551235"
    assert good[2].caller == "" and good[2].start == T + 0.5 and good[2].stop == T + 10.25
    assert good[1].start == T and good[1].stop == T + 90
    assert all(v.created == 1.0 and v.id is None for v in good)
    good, bad = parse_vcr_file(JSONL_MIXED, now=1.0)
    assert [v.call_id for v in good] == ["j1", "j2"]
    assert good[1].start == T
    assert [b.line for b in bad] == JSONL_BAD_LINES
    assert "missing stop" in str(bad[2])
    assert parse_vcr_file("\n  \n", now=1.0) == ([], [])
    with pytest.raises(ImportFormatError, match="call_id"):
        parse_vcr_file("caller,callee,direction,start,stop\n", now=1.0)


def test_csv_quoted_multiline_keeps_line_numbers() -> None:
    text = (
        "caller,callee,direction,start,stop,call_id\n"
        f'+14085550001,+14085551234,originating,{T},{T + 9},"multi\nline id"\n'
        f"+14085550001,bogus,originating,{T},{T + 9},x\n"
    )
    good, bad = parse_vcr_file(text, now=1.0)
    assert [v.call_id for v in good] == ["multi\nline id"]
    assert [b.line for b in bad] == [4]


@pytest.mark.parametrize(("content", "bad_expected", "good"), [
    (CSV_MIXED, CSV_BAD_LINES, 3),
    (JSONL_MIXED, JSONL_BAD_LINES, 2),
])
def test_import_mixed_then_reimport(
    tmp_path: Path, db_target: Path | str, content: str, bad_expected: list[int], good: int
) -> None:
    src = tmp_path / "cdr.txt"
    src.write_text(content)
    db = db_target
    runner = CliRunner()
    r = runner.invoke(main, ["vcrs", "import", str(src), "--db", str(db)])
    assert r.exit_code == 1, r.output
    assert r.stdout.strip() == f"imported {good}, skipped 0 duplicates, {len(bad_expected)} bad"
    assert bad_lines(r.stderr, str(src)) == bad_expected
    first = rows(db)
    assert len(first) == good
    r = runner.invoke(main, ["vcrs", "import", str(src), "--db", str(db)])
    assert r.exit_code == 1
    assert r.stdout.strip() == (
        f"imported 0, skipped {good} duplicates, {len(bad_expected)} bad")
    assert rows(db) == first  # nothing changed, not even `created`


def test_import_all_good_exits_zero_and_json(tmp_path: Path) -> None:
    src = tmp_path / "cdr.jsonl"
    src.write_text(JSONL_MIXED.splitlines()[0] + "\n")
    db = tmp_path / "vipr.db"
    r = CliRunner().invoke(main, ["vcrs", "import", str(src), "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    # --db: pvp not asked
    assert json.loads(r.stdout) == {"imported": 1, "duplicates": 0, "bad": 0, "bad_rows": [],
                                    "unanswered": 0, "queued_for_validation": None}


def test_import_bad_header(tmp_path: Path) -> None:
    src = tmp_path / "cdr.csv"
    src.write_text("a,b,c\n1,2,3\n")
    r = CliRunner().invoke(main, ["vcrs", "import", str(src), "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 1
    assert f"{src}:1: CSV header lacks caller" in r.stderr
    assert not (tmp_path / "x.db").exists()


def test_import_real_process(tmp_path: Path) -> None:
    src = tmp_path / "cdr.csv"
    src.write_text(CSV_MIXED)
    db = tmp_path / "vipr.db"
    cmd = [sys.executable, "-c", "from vipr.cli import main; main()"]
    p = subprocess.run([*cmd, "vcrs", "import", str(src), "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stdout.strip() == "imported 3, skipped 0 duplicates, 7 bad"
    assert bad_lines(p.stderr, str(src)) == CSV_BAD_LINES
    p = subprocess.run([*cmd, "vcrs", "list", "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    listed = json.loads(p.stdout)
    assert sorted(v["call_id"] for v in listed) == ["call-1@pbx", "call-2", "call-3"]


# ---------------------------------------------------------------- properties

numbers = st.integers(min_value=10**6, max_value=10**15 - 1).map(lambda n: f"+{n}")
times = st.integers(min_value=1, max_value=4_000_000_000).map(float)


@st.composite
def vcr_records(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(times)
    direction = draw(st.sampled_from(["originating", "terminating"]))
    caller = draw(numbers) if direction == "originating" else draw(st.one_of(numbers, st.just("")))
    return {"caller": caller, "callee": draw(numbers), "direction": direction, "start": start,
            "stop": start + draw(st.integers(min_value=0, max_value=100_000)),
            "call_id": draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
                            .map(lambda s: s.strip() or "x"))}


@settings(max_examples=30, deadline=None)
@given(st.lists(vcr_records(), max_size=6), st.booleans())
def test_round_trip_csv_and_jsonl(recs: list[dict[str, Any]], as_csv: bool) -> None:
    if as_csv:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(FIELDS))  # CRLF: quotes a bare CR too
        w.writeheader()
        w.writerows(recs)
        text = buf.getvalue()
    else:
        text = "".join(json.dumps(r) + "\n" for r in recs)
    if not recs and as_csv:
        text = ",".join(FIELDS) + "\n"
    good, bad = parse_vcr_file(text, now=5.0)
    assert bad == []
    assert [(v.caller, v.callee, v.direction, v.start, v.stop, v.call_id) for v in good] == [
        (r["caller"], r["callee"], r["direction"], r["start"], r["stop"], r["call_id"])
        for r in recs]


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.text(",\"\n{}:0123456789+-TZ:. abcdefghijklmnoprstuvwxyz_\x00",
                                  max_size=40), max_size=6).map(
                     lambda ls: ",".join(FIELDS) + "\n" + "\n".join(ls))))
def test_garbage_never_crashes(text: str) -> None:
    try:
        _good, bad = parse_vcr_file(text, now=1.0)
    except ImportFormatError:
        return
    assert all(b.line >= 1 for b in bad)


def test_import_from_stdin(tmp_path: Path) -> None:
    db = tmp_path / "vipr.db"
    r = CliRunner().invoke(main, ["vcrs", "import", "-", "--db", str(db)],
                           input="\ufeff" + CSV_MIXED)  # a BOM from a spreadsheet export
    assert r.exit_code == 1
    assert bad_lines(r.stderr, "<stdin>") == CSV_BAD_LINES
    assert len(rows(db)) == 3
