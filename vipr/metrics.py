"""Prometheus metrics of every role (DESIGN §13): one registry, one set of definitions.

Events (validations, admissions, fallbacks, lookups, store transactions) are prometheus_client
counters and histograms, counted where they happen: an increment on a pre-bound child, no lock
of ours. State (route cache, VCR writer, overlay ring, listener connections) is read when a
scrape asks for it, from the objects the roles register with `watch_*` (weakly: a stopped
server is forgotten). Label values come from fixed sets in the code (outcomes, reasons,
listener names), never numbers, peers or call-ids.

Each role serves `REGISTRY` on `GET /metrics` of its `<role>.metrics.listen` (off by default;
`MetricsListener`); the proxy's HTTP hook serves the same registry on its own `/metrics`.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from vipr.limits import ConnectionGate
from vipr.listen_error import listen_error

if TYPE_CHECKING:
    import asyncio

    from vipr.config import ProviderConfig
    from vipr.config.values import HostPort

log = logging.getLogger("vipr.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

# ---------------------------------------------------------------------- events: PVP

VALIDATIONS = Counter(
    "vipr_pvp_validations", "PVP validation attempts by side, outcome and reason "
    "(client: this provider asking; server: a peer asking this provider)",
    ["side", "outcome", "reason"], registry=REGISTRY)
VCR_VALIDATIONS = Counter(
    "vipr_pvp_vcr_validations", "VCRs the PVP client finished validating, by outcome",
    ["outcome"], registry=REGISTRY)

# ---------------------------------------------------------------------- events: proxy

ADMISSIONS = Counter(
    "vipr_proxy_admissions", "Ticket admissions of incoming federation calls by reason "
    "(SIP path, hook and redirect: proxy.policy)", ["reason"], registry=REGISTRY)
ROUTING = Counter(
    "vipr_proxy_routing_decisions", "Where new calls were sent (internal, pstn, federation, "
    "admission) and why (DESIGN §6)", ["kind", "reason"], registry=REGISTRY)
FALLBACKS = Counter(
    "vipr_proxy_pstn_fallbacks", "Calls over a learned route that failed and fell back to "
    "the PSTN, by cause", ["cause"], registry=REGISTRY)

# ---------------------------------------------------------------------- events: overlay

LOOKUP_SECONDS = Histogram(
    "vipr_overlay_lookup_duration_seconds", "Time to look a number up in the overlay",
    registry=REGISTRY, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
LOOKUPS = Counter(
    "vipr_overlay_lookups", "Overlay lookups by result (found, not_found, error)",
    ["result"], registry=REGISTRY)
FETCH_FAILURES = Counter(
    "vipr_overlay_fetch_failures", "Fetches of one copy of a number's claims that failed "
    "(the lookup then tries the next copy), by copy", ["copy"], registry=REGISTRY)

# ---------------------------------------------------------------------- events: store

STORE_SECONDS = Histogram(
    "vipr_store_transaction_duration_seconds", "Store transactions by backend and operation "
    "(read: one query; write: one transaction)", ["backend", "operation"], registry=REGISTRY,
    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
STORE_ERRORS = Counter(
    "vipr_store_errors", "Store operations that failed, by backend and operation",
    ["backend", "operation"], registry=REGISTRY)

_REASON = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_STATUS_SUFFIX = re.compile(r"_([1-6])\d\d$")


class Children:
    """`counter.labels(value)` for one label, cached: no lock or tuple building per event."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._cache: dict[str, Any] = {}

    def inc(self, value: str) -> None:
        child = self._cache.get(value)
        if child is None:
            child = self._cache[value] = self._metric.labels(value)
        child.inc()


def fallback_cause(cause: str) -> str:
    """A fallback cause as a label: connect, timeout, or the failure's status class (403, 5xx,
    6xx; DESIGN §6); anything else "other"."""
    if cause in ("connect", "timeout", "403"):
        return cause
    if len(cause) == 3 and cause.isdigit() and cause[0] in "56":
        return f"{cause[0]}xx"
    return "other"


def reason_label(reason: str) -> str:
    """The first word of a reason text, when it is a code word; else "other" (bounded)."""
    word = reason.split(" ", 1)[0].rstrip(":")
    return word if _REASON.fullmatch(word) else "other"


_validation_children: dict[tuple[str, str, str], Any] = {}


def count_validation(side: str, outcome: str, reason: str) -> None:
    key = (side, outcome, reason_label(reason))
    child = _validation_children.get(key)
    if child is None:
        child = _validation_children[key] = VALIDATIONS.labels(*key)
    child.inc()


class StoreTimer:
    """Pre-bound histogram/counter children of one backend and operation."""

    __slots__ = ("_err", "_hist")

    def __init__(self, backend: str, operation: str) -> None:
        self._hist = STORE_SECONDS.labels(backend, operation)
        self._err = STORE_ERRORS.labels(backend, operation)

    def done(self, t0: float, ok: bool = True) -> None:
        self._hist.observe(time.perf_counter() - t0)
        if not ok:
            self._err.inc()


# ---------------------------------------------------------------------- state, read on scrape


class _HasGate(Protocol):
    gate: ConnectionGate


_listeners: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_proxy: list[weakref.ref[Any]] = []
_hook: list[weakref.ref[Any]] = []
_overlay: list[weakref.ref[Any]] = []


def watch_listener(name: str, holder: _HasGate) -> None:
    """Count `holder.gate` (plus `holder.members`, if any) under listener `name`; several
    holders of one name (the RELOAD nodes of a daemon) are summed."""
    _listeners[holder] = name


def _latest(slot: list[weakref.ref[Any]], obj: object) -> None:
    slot[:] = [weakref.ref(obj)]


def watch_proxy(proxy: object) -> None:
    """The proxy role's ProxyServer: route cache, calls, VCR writer, decisions."""
    _latest(_proxy, proxy)


def watch_hook(hook: object) -> None:
    _latest(_hook, hook)


def watch_overlay(daemon: object) -> None:
    """The overlay role's OverlayDaemon: nodes, ring neighbours."""
    _latest(_overlay, daemon)


def _get(slot: list[weakref.ref[Any]]) -> Any:
    return slot[0]() if slot else None


# Families read from the roles' objects at scrape time: name → (type, help, labels).
STATE_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "vipr_listener_connections": ("gauge", "Open connections per listener", ("listener",)),
    "vipr_listener_refusals": ("counter", "Connections refused at accept, by listener and "
                               "limit (listener_full, address_full)", ("listener", "limit")),
    "vipr_proxy_route_cache_routes": ("gauge", "Learned routes in the route cache", ()),
    "vipr_proxy_route_cache_oldest_age_seconds": (
        "gauge", "Age of the oldest validation behind a cached route (0: none cached)", ()),
    "vipr_proxy_active_calls": ("gauge", "Calls between INVITE and answer", ()),
    "vipr_proxy_vcr_changes": ("counter", "VCR changes by what became of them (opened, "
                               "written, failed, spooled, replayed)", ("state",)),
    "vipr_proxy_vcr_spool_pending": (
        "gauge", "VCR changes waiting in the on-disk spool for the database", ()),
    "vipr_proxy_events": ("counter", "Proxy decisions and outcomes (the status view; status "
                          "codes folded to their class, failed_4xx)", ("event",)),
    "vipr_hook_requests": ("counter", "Hook requests by path and status", ("path", "status")),
    "vipr_hook_handler_seconds": ("counter", "Time spent in hook handlers", ()),
    "vipr_overlay_joined": (
        "gauge", "1 when every RELOAD node of this daemon has joined the overlay", ()),
    "vipr_overlay_nodes": ("gauge", "RELOAD nodes of this daemon by state (joined, "
                           "not_joined)", ("state",)),
    "vipr_overlay_neighbours": ("gauge", "Fewest ring neighbours any joined node of this "
                                "daemon has, by kind (successors, predecessors, fingers)",
                                ("kind",)),
}


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    kind, doc, labels = STATE_FAMILIES[name]
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    return CounterMetricFamily(name, doc, labels=labels)


def metric_names() -> set[str]:
    """Every family vipr exports (counters without their `_total`), for checks of the
    dashboard and alert rules."""
    names = set(STATE_FAMILIES)
    for metric in (VALIDATIONS, VCR_VALIDATIONS, ADMISSIONS, ROUTING, FALLBACKS, LOOKUP_SECONDS,
                   LOOKUPS, FETCH_FAILURES, STORE_SECONDS, STORE_ERRORS):
        names.add(metric._name)
    return names


class _StateCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from _listener_metrics()
        proxy = _get(_proxy)
        if proxy is not None:
            yield from _proxy_metrics(proxy)
        hook = _get(_hook)
        if hook is not None:
            yield from _hook_metrics(hook)
        overlay = _get(_overlay)
        if overlay is not None:
            yield from _overlay_metrics(overlay)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _listener_metrics() -> Iterator[Metric]:
    conns = _family("vipr_listener_connections")
    refused = _family("vipr_listener_refusals")
    open_by: dict[str, int] = {}
    refused_by: dict[tuple[str, str], int] = {}
    for holder, name in list(_listeners.items()):
        gate = holder.gate
        open_by[name] = open_by.get(name, 0) + gate.open + int(getattr(holder, "members", 0))
        for why, n in gate.refused.items():
            refused_by[(name, str(why))] = refused_by.get((name, str(why)), 0) + n
    for name, n in sorted(open_by.items()):
        conns.add_metric([name], n)
        for limit in ("listener_full", "address_full"):
            refused_by.setdefault((name, limit), 0)
    for key, n in sorted(refused_by.items()):
        refused.add_metric(list(key), n)
    yield conns
    yield refused


def _proxy_metrics(p: Any) -> Iterator[Metric]:
    cache = p.policy.cache
    g = _family("vipr_proxy_route_cache_routes")
    g.add_metric([], len(cache))
    yield g
    oldest = cache.oldest_validated_at()
    g = _family("vipr_proxy_route_cache_oldest_age_seconds")
    g.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
    yield g
    g = _family("vipr_proxy_active_calls")
    g.add_metric([], len(p.calls))
    yield g
    w = p.writer
    c = _family("vipr_proxy_vcr_changes")
    for state in ("opened", "written", "failed", "spooled", "replayed"):
        c.add_metric([state], getattr(w, state))
    yield c
    g = _family("vipr_proxy_vcr_spool_pending")
    g.add_metric([], w.spool_pending)
    yield g
    c = _family("vipr_proxy_events")
    events: dict[str, int] = {}
    for k, n in p.counters.items():   # "failed_486" → "failed_4xx": no numbers in labels
        key = _STATUS_SUFFIX.sub(lambda m: f"_{m.group(1)}xx", k)
        events[key] = events.get(key, 0) + n
    for k, n in sorted(events.items()):
        c.add_metric([k], n)
    yield c


def _hook_metrics(h: Any) -> Iterator[Metric]:
    c = _family("vipr_hook_requests")
    for k, n in sorted(h.requests.items()):
        path, _, status = k.rpartition(" ")
        c.add_metric([path, status], n)
    yield c
    c = _family("vipr_hook_handler_seconds")
    c.add_metric([], h.seconds)
    yield c


def _overlay_metrics(d: Any) -> Iterator[Metric]:
    nodes = list(d.nodes)
    joined = sum(1 for n in nodes if n.joined)
    total = max(len(nodes), len(d.creds))
    g = _family("vipr_overlay_joined")
    g.add_metric([], 1.0 if total and joined == total else 0.0)
    yield g
    g = _family("vipr_overlay_nodes")
    g.add_metric(["joined"], joined)
    g.add_metric(["not_joined"], total - joined)
    yield g
    g = _family("vipr_overlay_neighbours")
    live = [n for n in nodes if n.joined]
    for kind in ("successors", "predecessors", "fingers"):
        g.add_metric([kind], min((len(getattr(n, kind)()) for n in live), default=0))
    yield g


REGISTRY.register(_StateCollector())


def exposition() -> tuple[bytes, str]:
    """The text exposition of `REGISTRY` and its Content-Type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------- the HTTP listener


async def _metrics(request: web.Request) -> web.Response:
    body, ctype = exposition()
    return web.Response(body=body, headers={"Content-Type": ctype})


class MetricsListener:
    """`GET /metrics` (and `/`) on `<role>.metrics.listen`; plain HTTP, for a scraper."""

    def __init__(self, role: str, listen: HostPort) -> None:
        self.role = role
        self.listen = listen
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", _metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.listen.host, self.listen.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise listen_error(f"{self.role} metrics", self.listen.host, self.listen.port,
                               exc) from exc
        self._runner = runner
        server: asyncio.AbstractServer | None = site._server
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            sock = sockets[0].getsockname()
            self.address = (str(sock[0]), int(sock[1]))
        log.info("%s metrics on http://%s:%d/metrics", self.role,
                 *(self.address or (self.listen.host, self.listen.port)))

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


Main = Callable[["asyncio.Event"], Awaitable[None]]


def with_metrics(role: str, cfg: ProviderConfig, main: Main) -> Main:
    """`main`, with the role's metrics listener around it when `<role>.metrics.listen` is
    set (run_daemon)."""
    listen = getattr(cfg, role).metrics.listen
    if listen is None:
        return main

    async def run(stop: asyncio.Event) -> None:
        listener = MetricsListener(role, listen)
        await listener.start()
        try:
            await main(stop)
        finally:
            await listener.close()

    return run
