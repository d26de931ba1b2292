"""The proxy on SIGHUP (`vipr.hot_reload`): apply a re-read config without dropping calls.

New TLS contexts (certificate, key, CA) go to the interfaces' transports for the connections
made or accepted from now on; open connections, calls in progress and dialogs keep theirs.
Numbers, dialplan, targets and gateways, route timeout and ticket settings take effect for
the next request (the policy reads `cfg` each time); the ticket keys are reloaded at once, so
a shorter `tickets.rotate_interval` adds a key now. Listen addresses and transports are
kept by `hot_reload.keep_fixed` before this runs.
"""

from __future__ import annotations

import logging
import ssl as _ssl
from typing import TYPE_CHECKING

from vipr.config import Interface, ProviderConfig
from vipr.proxy.federation_tls import client_context, server_context
from vipr.proxy.sip.stream import StreamTransport

if TYPE_CHECKING:
    from vipr.proxy.server import ProxyServer

__all__ = ["apply_proxy_config", "status_line"]

log = logging.getLogger("vipr.proxy")


class ProxyReloadError(Exception):
    """The new config cannot be applied (a certificate or key that does not load)."""


def _interfaces(cfg: ProviderConfig) -> dict[str, Interface]:
    out = {"internal": cfg.proxy.interfaces.internal, "pstn": cfg.proxy.interfaces.pstn}
    if cfg.proxy.interfaces.federation is not None:
        out["federation"] = cfg.proxy.interfaces.federation
    return out


async def apply_proxy_config(proxy: ProxyServer, cfg: ProviderConfig) -> None:
    """Build every new TLS context first (nothing changes when one fails), then switch."""
    ifaces = _interfaces(cfg)
    contexts: dict[str, tuple[_ssl.SSLContext, _ssl.SSLContext]] = {}
    for name, iface in ifaces.items():
        if name not in proxy.ifaces or iface.transport != "tls":
            continue
        if iface.tls is None:
            raise ProxyReloadError(f"interface {name}: tls needs cert, key and ca")
        try:
            contexts[name] = (server_context(iface.tls), client_context(iface.tls))
        except (OSError, _ssl.SSLError, ValueError) as exc:
            raise ProxyReloadError(f"interface {name}: TLS files: {exc}") from exc
    old_numbers = proxy.cfg.numbers
    proxy.cfg = cfg
    proxy.policy.cfg = cfg
    proxy.tracker.max_call_duration = cfg.proxy.max_call_duration
    for name in list(proxy.ifaces):
        proxy.ifaces[name] = ifaces.get(name, proxy.ifaces[name])
    endpoint = proxy.endpoint
    for name, (server, client) in contexts.items():
        tr = endpoint.transports.get(name) if endpoint is not None else None
        if not isinstance(tr, StreamTransport):
            continue
        # StreamTransport reads these per connection: new ones only (open ones keep theirs)
        tr.ssl = server
        tr.client_ssl = client
        tls = ifaces[name].tls
        log.info("interface %s: new TLS certificate for new connections (%s)", name,
                 tls.cert if tls is not None else "?")
    if cfg.numbers != old_numbers:
        added = len(set(cfg.numbers) - set(old_numbers))
        removed = len(set(old_numbers) - set(cfg.numbers))
        log.info("numbers: %d added, %d removed (%d served)", added, removed, len(cfg.numbers))
    await proxy.reload_keys()


def status_line(proxy: ProxyServer) -> str:
    """STATUS= for systemd: what the proxy is doing."""
    listening = ", ".join(f"{n} {proxy.ifaces[n].transport}/{p}"
                          for n, (_, p) in proxy.addresses.items())
    return (f"listening ({listening}); {len(proxy.cache.numbers())} routes cached, "
            f"{len(proxy.calls)} calls in progress")
