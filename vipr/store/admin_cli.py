"""`vipr store check` and `vipr store migrate` (issue 15): is the database reachable and
current, how many rows it holds; copy a store (an SQLite file) into another (PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from vipr.cliutil import (
    EXIT_CONFIG,
    config_option,
    db_option,
    fail,
    json_option,
    print_json,
    print_table,
    resolve_db,
)
from vipr.store.api import Store, is_postgres_url, redact_url
from vipr.store.copy import DEFAULT_BATCH, CopyReport, copy_store
from vipr.store.errors import StoreError
from vipr.store.schema import SCHEMA_VERSION, TABLES


def register(group: click.Group) -> None:
    group.add_command(store)


@click.group()
def store() -> None:
    """The provider's database: check it, migrate it to PostgreSQL."""


def _target(text: str, *, must_exist: bool) -> Path | str:
    """`sqlite:PATH`, a plain PATH, or a postgresql:// URL."""
    if is_postgres_url(text):
        return text
    if "://" in text:
        fail(f"{text!r}: expected sqlite:PATH or postgresql://…", EXIT_CONFIG)
    path = Path(text.removeprefix("sqlite:")).expanduser()
    if must_exist and not path.exists():
        fail(f"no database at {path}")
    return path


def _name(target: Path | str) -> str:
    return redact_url(target) if isinstance(target, str) else str(target)


@store.command("check")
@config_option
@db_option
@json_option
def store_check(config: Path | None, db: Path | str | None, as_json: bool) -> None:
    """Connect, report the backend, schema version and rows per table. Exit 1 when the
    database cannot be opened or its schema is not this vipr's."""
    target = resolve_db(config, db)
    if isinstance(target, Path) and not target.exists():
        fail(f"no database at {target}")

    async def go() -> dict[str, Any]:
        async with Store.open(target) as s:
            return {"database": s.path, "backend": s.backend,
                    "schema_version": await s.schema_version(),
                    "expected_version": SCHEMA_VERSION, "rows": await s.row_counts()}

    try:
        out = asyncio.run(go())
    except StoreError as e:
        if as_json:
            print_json({"database": _name(target), "ok": False, "error": str(e)})
            raise SystemExit(1) from None
        fail(str(e))
    out["ok"] = out["schema_version"] == SCHEMA_VERSION
    if as_json:
        print_json(out)
    else:
        click.echo(f"{out['database']} ({out['backend']}): connected, schema version "
                   f"{out['schema_version']} (this vipr: {SCHEMA_VERSION})")
        print_table(["table", "rows"], [[t, str(out["rows"][t])] for t in TABLES])
    if not out["ok"]:
        raise SystemExit(1)


@store.command("migrate")
@click.option("--from", "src", required=True, metavar="sqlite:PATH",
              help="The store to copy: sqlite:PATH (or a postgresql:// URL).")
@click.option("--to", "dst", required=True, metavar="postgresql://…",
              help="The store to fill: a postgresql:// URL (or sqlite:PATH).")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=DEFAULT_BATCH,
              show_default=True, help="Rows per transaction.")
@json_option
def store_migrate(src: str, dst: str, batch: int, as_json: bool) -> None:
    """Copy every table, ids kept, batch by batch. Idempotent and resumable: run it again
    after an interruption and it goes on; after a full copy it copies nothing. The counts of
    both stores are compared at the end (exit 1 when they differ). Stop the roles using the
    target first."""
    source, target = _target(src, must_exist=True), _target(dst, must_exist=False)
    if _name(source) == _name(target):
        fail("--from and --to name the same database", EXIT_CONFIG)

    def progress(table: str, n: int) -> None:
        if not as_json:
            click.echo(f"{table}: {n} rows copied", err=True)

    async def go() -> CopyReport:
        async with Store.open(source) as s, Store.open(target) as d:
            return await copy_store(s, d, batch=batch, progress=progress)

    try:
        report = asyncio.run(go())
    except StoreError as e:
        fail(str(e))
    bad = report.mismatched
    if as_json:
        print_json({"from": _name(source), "to": _name(target), "copied": report.copied,
                    "source_rows": report.source, "target_rows": report.target,
                    "verified": not bad})
    else:
        print_table(["table", "copied", "source", "target"],
                    [[t, str(report.copied[t]), str(report.source[t]), str(report.target[t])]
                     for t in TABLES])
        click.echo("counts verified" if not bad else
                   f"counts differ in: {', '.join(bad)}")
    if bad:
        raise SystemExit(1)
