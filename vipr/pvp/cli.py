"""`vipr pvp`, `vipr validate NUMBER`, `vipr validations list`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from vipr.cliutil import (
    LIMIT,
    config_option,
    db_option,
    fail,
    json_option,
    load_config_or_fail,
    print_json,
    print_table,
    resolve_db,
)
from vipr.e164 import E164Error, normalize_e164
from vipr.store import Store, StoreError, ValidationRecord


def register(group: click.Group) -> None:
    group.add_command(pvp)
    group.add_command(validate)
    group.add_command(validations)


@click.command("pvp")
@config_option
def pvp(config: Path | None) -> None:
    """Run the PVP daemon: validation server and client (runs until SIGTERM)."""
    from vipr.daemon import run_daemon
    from vipr.pvp.daemon import pvp_main

    cfg = load_config_or_fail(config)
    run_daemon("pvp", cfg, lambda stop: pvp_main(cfg, stop))


@click.command("validate")
@click.argument("number")
@config_option
@json_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait.")
def validate(number: str, config: Path | None, as_json: bool, timeout: float) -> None:
    """Validate NUMBER now, from the latest originating VCR to it (asks the running pvp)."""
    from vipr.ipc import IpcError, ipc_call

    try:
        number = normalize_e164(number)
    except E164Error as e:
        raise click.BadParameter(str(e)) from None
    cfg = load_config_or_fail(config)
    sock = cfg.runtime_dir / "pvp.sock"
    try:
        ans = asyncio.run(ipc_call(sock, "validate", {"number": number}, timeout))
    except IpcError as e:
        fail(f"pvp daemon: {e} (is `vipr pvp` running?)" if e.code == "unavailable" else str(e))
    if as_json:
        print_json(ans)
    else:
        detail = ans.get("detail") or ""
        click.echo(f"{number}: {ans.get('outcome')}" + (f" ({detail})" if detail else ""))
    if ans.get("outcome") != "learned":
        raise SystemExit(1)


@click.group("validations")
def validations() -> None:
    """The PVP validation log (both roles)."""


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@validations.command("list")
@click.option("--limit", type=LIMIT, default=50, show_default=True,
              help="Newest N attempts (0 = all).")
@config_option
@db_option
@json_option
def validations_list(limit: int, config: Path | None, db: Path | str | None,
                     as_json: bool) -> None:
    """Recent validation attempts with outcome and reason, newest first."""
    path = resolve_db(config, db)
    if isinstance(path, Path) and not path.exists():
        fail(f"no database at {path}")

    async def go() -> list[ValidationRecord]:
        async with Store.open(path) as store:
            return await store.list_validations(limit=limit or None)

    try:
        recs = asyncio.run(go())
    except StoreError as e:
        fail(str(e))
    if as_json:
        print_json(recs)
        return
    print_table(
        ("at", "role", "number", "vcr", "peer", "outcome", "reason"),
        [(_ts(r.at), r.role, r.number, r.vcr_id, r.peer, r.outcome, r.reason) for r in recs],
    )
