"""`vipr proxy --config F` (the SIP edge proxy daemon) and `vipr proxy status`."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import click

from vipr.cliutil import config_option, fail, json_option, load_config_or_fail, print_json
from vipr.config import ProviderConfig
from vipr.daemon import notify_ready, on_reload, run_daemon, set_status, tune_gc
from vipr.ipc import IpcError, IpcServer, ipc_call

log = logging.getLogger("vipr.proxy")

async def serve(cfg: ProviderConfig, stop: asyncio.Event) -> None:
    """Run the proxy until `stop` is set."""
    from vipr.proxy.federation_tls import check_tls_files
    from vipr.proxy.server import ProxyError, ProxyServer
    from vipr.store import Store
    from vipr.store.events import StoreEvent

    problems = check_tls_files(cfg)
    if problems:
        raise ProxyError("; ".join(problems))
    async with Store.open(cfg.database) as store:
        proxy = ProxyServer(cfg, store)

        async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
            number = params.get("number")
            if not isinstance(number, str):
                raise IpcError("bad-request", "number (string) required")
            return {"cached": await proxy.route_learned(number)}

        async def status(params: dict[str, Any]) -> dict[str, Any]:
            out = proxy.status()
            if hook is not None:
                out["hook"] = hook.status()
            if redirect is not None and redirect.address is not None:
                out["redirect"] = {"listen": f"{redirect.address[0]}:{redirect.address[1]}"}
            return out

        async def ticket_keys_changed(params: dict[str, Any]) -> dict[str, Any]:
            # `vipr tickets rotate`: reload now, not at the next periodic reload
            await proxy.reload_keys()
            return {"ticket_epochs": sorted(proxy.policy.verifier.epochs)}

        async def on_store_event(e: StoreEvent) -> None:
            # Issue 15: another host's pvp learned a route, or a key was rotated elsewhere.
            if e.kind in ("key_rotated", "resync"):
                await proxy.reload_keys()
            if e.kind == "route_learned":
                await proxy.route_learned(e.number)
            elif e.kind == "resync":
                await proxy.reload_routes()

        # Listening before start: no key or route change is missed in between.
        await store.listen(on_store_event)   # PostgreSQL only (DESIGN §12)
        await proxy.start()
        hook = None
        if cfg.proxy.interfaces.hook is not None:   # DESIGN §11: the edge's HTTP/JSON hook
            from vipr.proxy.hook.server import HookServer
            hook = HookServer(proxy, cfg.proxy.interfaces.hook)
        redirect = None
        rcfg = cfg.proxy.interfaces.redirect
        try:
            if hook is not None:
                await hook.start()
            if rcfg is not None:   # DESIGN §11: INVITE → 302 with the learned route
                from vipr.proxy.redirect import RedirectServer
                gw = rcfg.gateway or cfg.proxy.interfaces.pstn.gateway
                redirect = RedirectServer(proxy.policy, rcfg,
                                          (gw.host, gw.port) if gw else None, proxy.clock)
                await redirect.start(cfg.proxy.limits)
        except BaseException:
            if hook is not None:
                await hook.close()
            if redirect is not None:
                await redirect.close()
            await proxy.close()
            raise

        ipc = IpcServer(cfg.socket_path("proxy"),
                        {"route_learned": route_learned, "status": status,
                         "ticket_keys_changed": ticket_keys_changed})
        try:
            await ipc.start()
            tune_gc()
            from vipr.proxy.live_config import apply_proxy_config, status_line

            async def reload(new: ProviderConfig) -> None:
                await apply_proxy_config(proxy, new)

            on_reload(reload)       # SIGHUP (vipr.hot_reload)
            notify_ready("proxy serving")
            set_status(lambda: status_line(proxy))
            # a listener that died for good ends the daemon non-zero: the supervisor
            # restarts it instead of it running deaf (DESIGN §10)
            stopped = asyncio.ensure_future(stop.wait())
            failed = asyncio.ensure_future(proxy.failed.wait())
            await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            failed.cancel()
            if proxy.failed.is_set():
                raise ProxyError(proxy.failure)
        finally:
            await ipc.close()
            if hook is not None:
                await hook.close()
            if redirect is not None:
                await redirect.close()
            await proxy.close()


def register(group: click.Group) -> None:
    """Add the `proxy` command (daemon) and `proxy status`."""

    @group.group("proxy", invoke_without_command=True)
    @config_option
    @click.pass_context
    def proxy(ctx: click.Context, config: Path | None) -> None:
        """Run the SIP edge proxy (routing, ticket admission, VCRs, PSTN fallback)."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = config
            return
        cfg = load_config_or_fail(config, files_of=("proxy",))
        run_daemon("proxy", cfg, lambda stop: serve(cfg, stop))

    @proxy.command("status")
    @config_option
    @json_option
    @click.pass_context
    def status_cmd(ctx: click.Context, config: Path | None, as_json: bool) -> None:
        """Ask the running proxy for its counters, interfaces and cached routes."""
        cfg = load_config_or_fail(config or ctx.obj)
        try:
            res = asyncio.run(ipc_call(cfg.socket_path("proxy"), "status", {}))
        except IpcError as exc:
            fail(f"proxy not reachable: {exc}")
        if as_json:
            print_json(res)
            return
        for name, i in res.get("interfaces", {}).items():
            line = f"interface {name:<10} {i['transport']}/{i['listen']} {i.get('state', '?')}"
            if i.get("reopened"):
                line += f" (reopened {i['reopened']}x)"
            conns = i.get("connections")
            if isinstance(conns, dict):
                line += (f"  connections {conns.get('open')} from {conns.get('sources')} "
                         f"source(s), refused {json.dumps(conns.get('refused', {}))}, "
                         f"closed {json.dumps(conns.get('closed', {}))}")
            click.echo(line)
        routes = res.get("cached_routes", [])
        click.echo(f"cached routes: {len(routes)}" + (f" ({', '.join(routes[:10])})"
                                                       if routes else ""))
        click.echo(f"active calls: {res.get('active_calls')}  dialogs: {res.get('dialogs')}")
        click.echo(f"ticket epochs: {res.get('ticket_epochs')}")
        if isinstance(res.get("hook"), dict):
            click.echo(f"hook {res['hook'].get('listen')}: requests "
                       + json.dumps(res["hook"].get("requests", {})))
        click.echo("vcrs: " + json.dumps(res.get("vcrs", {})))
        for k, v in res.get("counters", {}).items():
            click.echo(f"  {k}: {v}")
