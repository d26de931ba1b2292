"""`vipr routes|vcrs|numbers`: look into and feed the store from the command line."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from vipr.cliutil import (
    EXIT_CONFIG,
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
from vipr.dialplan import Dialplan
from vipr.e164 import E164Error, normalize_e164
from vipr.ipc import IpcError, ipc_call
from vipr.store import Store, StoreError
from vipr.store.models import DIRECTIONS, Direction, Route
from vipr.store.vcrimport import (
    FIELDS,
    FORMATS,
    ImportFormatError,
    ImportOptions,
    RowError,
    parse_export,
    parse_time,
    parse_utc_offset,
)

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _with_store(path: Path | str, fn: Callable[[Store], Awaitable[T]], *,
                must_exist: bool = True) -> T:
    """Open the store at `path`, run `fn` on it, close it; StoreError → exit 1 with the reason."""
    if must_exist and isinstance(path, Path) and not path.exists():
        fail(f"no database at {path}")

    async def go() -> T:
        async with Store.open(path) as store:
            return await fn(store)

    try:
        return asyncio.run(go())
    except StoreError as e:
        fail(str(e))


def _number(text: str) -> str:
    try:
        return normalize_e164(text)
    except E164Error as e:
        raise click.BadParameter(str(e)) from None


def _since(text: str | None) -> float | None:
    """--since: unix seconds, ISO-8601 with offset, or a duration back from now (30m, 48h)."""
    if text is None:
        return None
    m = _DURATION.match(text)
    if m:
        return time.time() - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return parse_time(text, "--since")
    except RowError as e:
        raise click.BadParameter(f"{e}; or give a duration such as 30m, 48h, 7d") from None


def register(group: click.Group) -> None:
    group.add_command(routes)
    group.add_command(vcrs)
    group.add_command(numbers)


# ------------------------------------------------------------------------ routes


@click.group()
def routes() -> None:
    """Routes learned by PVP validation (number → SIP URIs + ticket)."""


def _route_json(r: Route) -> dict[str, Any]:
    return {
        "number": r.number, "routes": list(r.routes), "ticket": r.ticket,
        "ticket_expires": r.ticket_expires, "expires": r.expires,
        "learned_from_node": r.learned_from_node, "learned_from_domain": r.learned_from_domain,
        "validated_at": r.validated_at, "last_used": r.last_used, "failures": r.failures,
    }


@routes.command("list")
@config_option
@db_option
@json_option
def routes_list(config: Path | None, db: Path | str | None, as_json: bool) -> None:
    """Every learned route."""
    rs = _with_store(resolve_db(config, db), lambda s: s.list_routes())
    if as_json:
        print_json([_route_json(r) for r in rs])
        return
    print_table(
        ("number", "routes", "learned from", "validated", "expires", "last used", "failures"),
        [(r.number, r.routes, r.learned_from_domain, _ts(r.validated_at), _ts(r.expires),
          _ts(r.last_used), r.failures) for r in rs],
        title=f"{len(rs)} route(s)",
    )


@routes.command("show")
@click.argument("number")
@config_option
@db_option
@json_option
def routes_show(number: str, config: Path | None, db: Path | str | None, as_json: bool) -> None:
    """One route in full (exit 1 when there is none; with --json it prints `null` then)."""
    num = _number(number)
    r = _with_store(resolve_db(config, db), lambda s: s.get_route(num))
    if r is None:
        if as_json:
            print_json(None)    # machines always get a JSON document on stdout
        fail(f"no route for {num}")
    if as_json:
        print_json(_route_json(r))
        return
    print_table(("field", "value"), [
        ("number", r.number), ("routes", r.routes), ("ticket", r.ticket),
        ("ticket expires", _ts(r.ticket_expires)), ("expires", _ts(r.expires)),
        ("learned from node", r.learned_from_node),
        ("learned from domain", r.learned_from_domain),
        ("validated at", _ts(r.validated_at)), ("last used", _ts(r.last_used)),
        ("failures", r.failures),
    ])


@routes.command("delete")
@click.argument("number")
@config_option
@db_option
@json_option
def routes_delete(number: str, config: Path | None, db: Path | str | None, as_json: bool) -> None:
    """Forget a route: later calls to NUMBER go via the PSTN (and may re-learn it).

    With --config, the running proxy is told so that it drops its cached copy.
    """
    num = _number(number)
    deleted = _with_store(resolve_db(config, db), lambda s: s.delete_route(num))
    notified = False
    if deleted and config is not None and db is None:
        notified = _notify_proxy(config, num)
    if as_json:
        print_json({"number": num, "deleted": deleted, "proxy_notified": notified})
    elif deleted:
        click.echo(f"deleted route {num}" + ("" if notified else " (proxy not notified)"))
    if not deleted:
        fail(f"no route for {num}")


def _notify_proxy(config: Path, number: str) -> bool:
    from vipr.ipc import IpcError, ipc_call

    sock = load_config_or_fail(config).socket_path("proxy")
    try:
        asyncio.run(ipc_call(sock, "route_learned", {"number": number}, timeout=2.0))
    except IpcError:
        return False
    return True


# ------------------------------------------------------------------------ VCRs


@click.group()
def vcrs() -> None:
    """VIPR Call Records: PSTN calls that can prove a route."""


@vcrs.command("list")
@click.option("--since", help="Calls started since: unix seconds, ISO-8601, or a duration (48h).")
@click.option("--direction", type=click.Choice(DIRECTIONS), help="Only this direction.")
@click.option("--limit", type=LIMIT, default=100, show_default=True,
              help="At most this many (0 = all).")
@config_option
@db_option
@json_option
def vcrs_list(since: str | None, direction: str | None, limit: int, config: Path | None,
              db: Path | str | None, as_json: bool) -> None:
    """VCRs, newest first."""
    t = _since(since)
    d: Any = direction
    vs = _with_store(resolve_db(config, db),
                     lambda s: s.list_vcrs(since=t, direction=d, limit=limit or None))
    if as_json:
        print_json(vs)
        return
    print_table(
        ("id", "direction", "caller", "callee", "start", "secs", "call-id", "validated",
         "failures", "burned", "state"),
        [(v.id, v.direction, v.caller or "unknown", v.callee, _ts(v.start),
          f"{v.duration:.0f}" if v.state == "complete" else "-", v.call_id, _ts(v.validated),
          v.failures, "yes" if v.burned else "no", v.state) for v in vs],
        title=f"{len(vs)} VCR(s)",
    )


@vcrs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True,
                                        path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto",
              show_default=True, help="The export's format (presets for Asterisk Master.csv "
              "and FreeSWITCH mod_json_cdr).")
@click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN",
              help="Read FIELD (caller, callee, direction, start, stop, call_id) from the "
              "export's COLUMN; repeatable.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default=None,
              help="Direction of every record when the export has no direction column.")
@click.option("--utc-offset", default=None, metavar="UTC|+HH:MM",
              help="Offset of times written without one (presets: UTC).")
@config_option
@db_option
@json_option
def vcrs_import(file: Path, fmt: str, mapping: tuple[str, ...], direction: str | None,
                utc_offset: str | None, config: Path | None, db: Path | str | None,
                as_json: bool) -> None:
    """Import call records from a PBX/CDR export: CSV with a header, or JSON lines.

    Fields: caller, callee, direction (originating|terminating), start, stop (unix seconds
    or ISO-8601 with offset), call_id; start is the answer time. Numbers go through the
    config's dialplan. Records already stored (same call_id and direction) are skipped, so
    importing a file twice changes nothing. Bad rows are reported on stderr with their line
    numbers; the good rows are stored in one transaction. Exit 0 when every row was good, 1
    otherwise.
    """
    opts = _import_options(fmt, mapping, direction, utc_offset, config)
    path = resolve_db(config, db)
    name = "<stdin>" if str(file) == "-" else str(file)
    try:
        if name == "<stdin>":
            raw: bytes = sys.stdin.buffer.read()
        else:
            raw = file.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"{name}: cannot read: {e}")
    try:
        res = parse_export(text, time.time(), opts)
    except ImportFormatError as e:
        fail(f"{name}:{e.line}: {e.reason}")
    good, bad = res.good, res.bad
    for b in bad:
        click.echo(f"{name}:{b.line}: {b.reason}", err=True)
    ids = _with_store(path, lambda s: s.add_vcrs_ids(good), must_exist=False) if good else []
    inserted = sum(1 for i in ids if i is not None)
    dup = len(good) - inserted
    originating = [i for i, v in zip(ids, good, strict=True)
                   if i is not None and v.direction == "originating"]
    queued = _announce_to_pvp(config, originating) if config is not None and db is None else None
    if as_json:
        print_json({"imported": inserted, "duplicates": dup, "bad": len(bad),
                    "unanswered": res.unanswered,
                    "bad_rows": [{"line": b.line, "reason": b.reason} for b in bad],
                    "queued_for_validation": queued})
    else:
        click.echo(f"imported {inserted}, skipped {dup} duplicates, {len(bad)} bad"
                   + (f", {res.unanswered} unanswered" if res.unanswered else ""))
        if queued is not None and originating:
            click.echo(f"pvp queued {queued} of {len(originating)} originating calls "
                       "for validation")
    if bad:
        raise SystemExit(1)


def _import_options(fmt: str, mapping: tuple[str, ...], direction: str | None,
                    utc_offset: str | None, config: Path | None) -> ImportOptions:
    fields: dict[str, str] = {}
    for m in mapping:
        f, eq, col = m.partition("=")
        if not eq or f.strip() not in FIELDS or not col.strip():
            fail(f"--map {m!r}: expected FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}",
                 EXIT_CONFIG)
        fields[f.strip()] = col.strip()
    tz = None
    if utc_offset is not None:
        try:
            tz = parse_utc_offset(utc_offset)
        except ValueError as e:
            fail(f"--utc-offset: {e}", EXIT_CONFIG)
    dialplan = load_config_or_fail(config).dialplan if config is not None else Dialplan()
    dirn: Direction | None = None
    for d in DIRECTIONS:
        if d == direction:
            dirn = d
    return ImportOptions(fmt, fields, dirn, dialplan, tz)


def _announce_to_pvp(config: Path, ids: list[int]) -> int | None:
    """Tell a running pvp daemon about new originating VCRs (`vcr_added`, as the proxy does),
    so they are validated after the usual delay; None when pvp is not running (it finds them
    in the database when it starts, or at its periodic rescan)."""
    if not ids:
        return 0
    sock = load_config_or_fail(config).socket_path("pvp")

    async def go() -> int:
        queued = 0
        for i in ids:
            answer = await ipc_call(sock, "vcr_added", {"id": i})
            queued += bool(answer.get("queued"))
        return queued

    try:
        return asyncio.run(go())
    except IpcError as e:
        click.echo(f"note: pvp daemon not reached ({e}); it picks the calls up when it scans",
                   err=True)
        return None


# ------------------------------------------------------------------------ numbers


@click.group()
def numbers() -> None:
    """Numbers this provider has published in the overlay."""


@numbers.command("list")
@config_option
@db_option
@json_option
def numbers_list(config: Path | None, db: Path | str | None, as_json: bool) -> None:
    """Published numbers with their VService and lifetime."""
    ps = _with_store(resolve_db(config, db), lambda s: s.list_published())
    if as_json:
        print_json(ps)
        return
    print_table(("number", "vservice", "stored", "expires"),
                [(p.number, p.vservice, _ts(p.stored_at), _ts(p.expires)) for p in ps],
                title=f"{len(ps)} published number(s)")
