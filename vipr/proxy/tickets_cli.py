"""`vipr tickets rotate` / `vipr tickets inspect`: ticket keys and ticket debugging (DESIGN §6)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from vipr.cliutil import config_option, fail, json_option, load_config_or_fail, print_json
from vipr.store import Store, StoreError
from vipr.tickets import TicketError, TicketVerifier, decode_ticket


def _notify_proxy(sock: Path) -> bool:
    """Tell a running proxy to reload its ticket keys now; False when none answers."""
    from vipr.ipc import IpcError, ipc_call

    try:
        asyncio.run(ipc_call(sock, "ticket_keys_changed", {}, timeout=5.0))
    except IpcError:
        return False
    return True


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def rotate_key(database: Path, now: float, retire_older_than: float | None) -> dict[str, Any]:
    """Add a new epoch key; retire keys created before `retire_older_than` (None: keep all).

    Retired keys keep verifying their tickets (TicketVerifier takes every stored key); a
    retired epoch number is reused only by a later rotation (store rules)."""
    async with Store.open(database) as store:
        key = await store.create_ticket_key(now)
        retired: list[int] = []
        if retire_older_than is not None:
            for k in await store.ticket_keys():
                if k.epoch != key.epoch and k.retired is None and k.created < retire_older_than:
                    await store.retire_ticket_key(k.epoch, now)
                    retired.append(k.epoch)
        return {"epoch": key.epoch, "created": key.created, "retired": retired}


async def _verify(database: Path, token: str, number: str | None, domain: str | None,
                  now: float) -> tuple[bool, str]:
    async with Store.open(database) as store:
        verifier = TicketVerifier(await store.ticket_keys())
    try:
        t = decode_ticket(token)
    except TicketError:
        t = None
    verdict = verifier.verify(
        token, number=number or (t.number if t else ""),
        peer_domain=domain or (t.domain if t else None), now=now)
    return verdict.ok, verdict.reason


def register(group: click.Group) -> None:
    """Add the `tickets` command group."""

    @group.group("tickets")
    def tickets() -> None:
        """VIPR tickets: signing keys and inspection."""

    @tickets.command("rotate")
    @config_option
    @json_option
    @click.option("--retire-older-than", "retire_days", type=float, default=None,
                  help="Also retire keys created more than this many days ago "
                       "(their tickets keep verifying until they expire).")
    def rotate_cmd(config: Path | None, as_json: bool, retire_days: float | None) -> None:
        """Add a new ticket-signing key (the next epoch); new tickets use it."""
        cfg = load_config_or_fail(config)
        now = time.time()
        cut = None if retire_days is None else now - retire_days * 86400.0
        try:
            res = asyncio.run(rotate_key(cfg.database, now, cut))
        except StoreError as exc:
            fail(str(exc))
        res["proxy_notified"] = _notify_proxy(cfg.socket_path("proxy"))
        if as_json:
            print_json(res)
            return
        click.echo(f"new ticket key: epoch {res['epoch']} (created {_ts(res['created'])})")
        if res["retired"]:
            click.echo("retired epochs: " + ", ".join(str(e) for e in res["retired"]))
        if not res["proxy_notified"]:
            click.echo("proxy not running (or not reachable): it loads the key when it starts")

    @tickets.command("inspect")
    @click.argument("ticket")
    @config_option
    @json_option
    @click.option("--number", default=None, help="Check against this Request-URI number "
                  "(default: the ticket's own).")
    @click.option("--domain", default=None, help="Check against this TLS peer domain "
                  "(default: the ticket's own).")
    def inspect_cmd(ticket: str, config: Path | None, as_json: bool, number: str | None,
                    domain: str | None) -> None:
        """Show the fields of TICKET; with --config, whether it verifies and why not.

        Exit 0 when it decodes (and verifies, with --config), 1 otherwise.
        """
        now = time.time()
        out: dict[str, Any] = {}
        try:
            t = decode_ticket(ticket)
            out.update(t.to_dict())
            out["issued_at"], out["expires_at"] = _ts(t.issued), _ts(t.expires)
            out["expired"] = now >= t.expires
        except TicketError as exc:
            out.update(decodes=False, reason=exc.reason, detail=exc.detail)
        ok = "reason" not in out
        if config is not None:
            cfg = load_config_or_fail(config)
            try:
                verified, reason = asyncio.run(_verify(cfg.database, ticket, number, domain, now))
            except StoreError as exc:
                fail(str(exc))
            out["verifies"], out["verify_reason"] = verified, reason
            ok = ok and verified
        if as_json:
            print_json(out)
        else:
            for k, v in out.items():
                click.echo(f"{k + ':':<14} {v}")
        raise SystemExit(0 if ok else 1)
