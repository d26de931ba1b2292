"""`vipr health`: exit 0 when the roles asked for answer on their local status sockets.

For container HEALTHCHECKs and scripts: each role (overlay, pvp, proxy) is asked `status` over
its Unix socket in `runtime_dir`; an overlay still joining counts as not healthy yet. `--sip
HOST:PORT` (or `--pstn-config FILE`, its listen address) instead sends one SIP OPTIONS over UDP
(RFC 3261 §11: any response shows the element is up), for the PSTN simulator, which has no
status socket. One line per check, or `--json`.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path
from typing import Any

import click

from vipr.cliutil import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    config_option,
    fail,
    json_option,
    load_config_or_fail,
    print_json,
)

__all__ = ["register"]

ROLES = ("overlay", "pvp", "proxy")
TIMEOUT = 3.0


async def _role_health(sock: Path, role: str) -> dict[str, Any]:
    from vipr.ipc import IpcError, ipc_call

    try:
        st = await ipc_call(sock, "status", {}, TIMEOUT)
    except IpcError as exc:
        return {"role": role, "ok": False, "detail": f"no answer on {sock}: {exc}"}
    if role == "overlay" and st.get("state") == "joining":
        return {"role": role, "ok": False, "detail": "joining the overlay"}
    store = st.get("store")
    if role == "pvp" and isinstance(store, dict) and store.get("state") == "paused":
        return {"role": role, "ok": False,
                "detail": "paused: the database is unreachable (DESIGN §12)"}
    return {"role": role, "ok": True, "detail": "answering"}


def _sip_options(host: str, port: int) -> dict[str, Any]:
    """One OPTIONS over UDP; healthy on any SIP response (RFC 3261 §11)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        lport = s.getsockname()[1]
        tag = secrets.token_hex(6)
        via_host = f"[{host}]" if family == socket.AF_INET6 else host
        msg = (f"OPTIONS sip:{via_host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {via_host}:{lport};branch=z9hG4bK{tag}\r\n"
               "Max-Forwards: 70\r\n"
               f"From: <sip:health@{via_host}>;tag={tag}\r\nTo: <sip:{via_host}:{port}>\r\n"
               f"Call-ID: health-{tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        what = f"sip {host}:{port}"
        try:
            s.sendto(msg.encode(), (host, port))
            data = s.recv(65535)
        except OSError as exc:
            return {"role": what, "ok": False, "detail": f"no SIP answer: {exc}"}
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    ok = first.startswith("SIP/2.0 ")
    return {"role": what, "ok": ok, "detail": first[:80] if ok else "not a SIP response"}


def _hostport(text: str) -> tuple[str, int]:
    from vipr.config import HostPort

    try:
        hp = HostPort.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return hp.host, hp.port


def register(group: click.Group) -> None:
    """Add `vipr health`."""

    @group.command("health")
    @config_option
    @click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
                  help="Check only this role (repeatable; default: all three).")
    @click.option("--sip", "sip", default=None, metavar="HOST:PORT",
                  help="Instead: send a SIP OPTIONS over UDP (the PSTN simulator).")
    @click.option("--pstn-config", "pstn_config", default=None,
                  type=click.Path(dir_okay=False, path_type=Path),
                  help="Instead: --sip at the listen address of this PSTN simulator config.")
    @json_option
    def health_cmd(config: Path | None, roles: tuple[str, ...], sip: str | None,
                   pstn_config: Path | None, as_json: bool) -> None:
        """Exit 0 when every role asked answers (the overlay has joined), 1 otherwise."""
        if pstn_config is not None:
            from vipr.testnet.numberplan import PstnConfigError, load_pstn_config

            try:
                listen = load_pstn_config(pstn_config).listen
            except PstnConfigError as exc:
                fail(str(exc), EXIT_CONFIG)
            sip = f"[{listen.host}]:{listen.port}" if ":" in listen.host else \
                f"{listen.host}:{listen.port}"
        if sip is not None:
            checks = [_sip_options(*_hostport(sip))]
        else:
            cfg = load_config_or_fail(config)

            async def ask() -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(
                    _role_health(cfg.socket_path(r), r) for r in roles or ROLES)))

            checks = asyncio.run(ask())
        ok = all(c["ok"] for c in checks)
        if as_json:
            print_json({"ok": ok, "checks": checks})
        else:
            for c in checks:
                click.echo(f"{c['role']}: {'ok' if c['ok'] else 'FAIL'} ({c['detail']})")
        if not ok:
            raise SystemExit(EXIT_RUNTIME)
