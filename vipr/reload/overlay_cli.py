"""`vipr overlay` (daemon), `vipr overlay status` and `vipr lookup NUMBER`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from vipr.cliutil import (
    config_option,
    fail,
    json_option,
    load_config_or_fail,
    print_json,
    print_table,
)
from vipr.e164 import E164Error, normalize_e164
from vipr.ipc import IpcError, ipc_call


def _call(config: Path | None, method: str, params: dict[str, Any], timeout: float) -> Any:
    cfg = load_config_or_fail(config)
    path = cfg.socket_path("overlay")
    try:
        return asyncio.run(ipc_call(path, method, params, timeout=timeout))
    except IpcError as e:
        if e.code == "unavailable":
            fail(f"the overlay daemon is not running ({path}): start `vipr overlay --config "
                 f"{cfg.path}`")
        if e.code == "joining":
            fail(f"the overlay is joining; try again once `vipr overlay status --config "
                 f"{cfg.path}` says running")
        fail(f"{method}: {e.code}: {e}")


def _short(ids: list[str], n: int = 1) -> str:
    return ", ".join(i[:12] for i in ids[:n]) + (" …" if len(ids) > n else "") if ids else "-"


def _connections(listener: Any) -> str:
    """`members+pending (refused: reason n, …)` of one node's listener (DESIGN §10)."""
    if not isinstance(listener, dict):
        return "-"
    refused = listener.get("refused") or {}
    why = ", ".join(f"{k} {v}" for k, v in sorted(refused.items())) if refused else "0"
    return f"{listener.get('members', 0)}+{listener.get('open', 0)} ({why})"


@click.group("overlay", invoke_without_command=True)
@config_option
@click.pass_context
def overlay_group(ctx: click.Context, config: Path | None) -> None:
    """Run the overlay daemon: RELOAD nodes, number publishing, lookups, AppAttach."""
    if ctx.invoked_subcommand is not None:
        return
    from vipr.reload.aio.daemon import run_overlay

    run_overlay(load_config_or_fail(config, files_of=("overlay",)))


@overlay_group.command("status")
@config_option
@json_option
def status_cmd(config: Path | None, as_json: bool) -> None:
    """Node-IDs, neighbors, fingers, stored entries and links of the running daemon."""
    st = _call(config, "status", {}, 10.0)
    if as_json:
        print_json(st)
        return
    rows = []
    for n in st.get("nodes", []):
        links = ", ".join(f"{str(lk.get('peer', ''))[:8]} {lk.get('rtt_ms', '-')}ms"
                          for lk in n.get("links", [])[:4])
        rows.append([n.get("node_id", ""), n.get("listen", ""),
                     _short(list(n.get("predecessors", []))),
                     _short(list(n.get("successors", []))),
                     len(n.get("fingers", [])), n.get("stored", 0), links or "-",
                     _connections(n.get("listener"))])
    title = f"{len(rows)} RELOAD nodes, {st.get('published', 0)} numbers published"
    if st.get("state") == "joining":
        joined = sum(1 for n in st.get("nodes", []) if n.get("joined"))
        title = f"joining: {joined} of {len(rows)} RELOAD nodes joined"
    print_table(["node", "listen", "pred", "succ", "fingers", "stored", "links (rtt)",
                 "conns (refused)"], rows, title=title)


@click.command("lookup")
@click.argument("number")
@config_option
@json_option
def lookup_cmd(number: str, config: Path | None, as_json: bool) -> None:
    """Claims on NUMBER in the overlay (Node-ID, VService, AppAttach peer)."""
    try:
        n = normalize_e164(number)
    except E164Error as e:
        fail(str(e), 2)     # the message names the value already
    ans = _call(config, "lookup", {"number": n}, 60.0)
    if as_json:
        print_json(ans)
        return
    claims = ans.get("claims", [])
    # which replica answered ("N", "COPY1N", …) is for --json readers, not the table
    title = f"{ans.get('number', n)}: {len(claims)} claim(s)"
    print_table(["node_id", "vservice", "peer_id"],
                [[c["node_id"], c["vservice"], c["peer_id"]] for c in claims], title=title)


def register(group: click.Group) -> None:
    group.add_command(overlay_group)
    group.add_command(lookup_cmd)
