"""`GET /metrics`: a few proxy figures in the Prometheus text format (prometheus_client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from vipr.proxy.hook.server import HookServer
    from vipr.proxy.server import ProxyServer


class _ProxyCollector(Collector):
    def __init__(self, proxy: ProxyServer, hook: HookServer) -> None:
        self.proxy = proxy
        self.hook = hook

    def collect(self) -> Iterator[Metric]:
        p, h = self.proxy, self.hook
        g = GaugeMetricFamily("vipr_proxy_cached_routes", "Learned routes in the route cache")
        g.add_metric([], len(p.policy.cache))
        yield g
        g = GaugeMetricFamily("vipr_proxy_active_calls", "Calls between INVITE and answer")
        g.add_metric([], len(p.calls))
        yield g
        c = CounterMetricFamily("vipr_proxy_vcrs", "VCR changes by outcome", labels=["state"])
        w = p.writer
        for state, n in (("opened", w.opened), ("written", w.written), ("failed", w.failed)):
            c.add_metric([state], n)
        yield c
        c = CounterMetricFamily("vipr_proxy_events", "Proxy decisions and outcomes",
                                labels=["event"])
        for k, n in sorted(p.counters.items()):
            c.add_metric([k], n)
        yield c
        c = CounterMetricFamily("vipr_hook_requests", "Hook requests by path and status",
                                labels=["path", "status"])
        for k, n in sorted(h.requests.items()):
            path, _, status = k.rpartition(" ")
            c.add_metric([path, status], n)
        yield c
        c = CounterMetricFamily("vipr_hook_handler_seconds", "Time spent in hook handlers")
        c.add_metric([], h.seconds)
        yield c


def metrics_text(proxy: ProxyServer, hook: HookServer) -> tuple[bytes, str]:
    """The exposition body and its Content-Type."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_ProxyCollector(proxy, hook))
    return generate_latest(reg), CONTENT_TYPE_LATEST
