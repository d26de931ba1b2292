"""`load_config`: the provider config's sections read and cross-checked."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Literal, TypeVar, cast

from yaml.nodes import MappingNode, Node, ScalarNode

from vipr.config.files import check_files
from vipr.config.schema import (
    MAX_NODES,
    MAX_SOCKET_PATH,
    DebugCapture,
    HookInterface,
    Interface,
    Interfaces,
    LoggingSection,
    MetricsSection,
    OverlayDebug,
    OverlaySection,
    ProviderConfig,
    ProviderSection,
    ProxySection,
    PvpSection,
    RedirectInterface,
    RetentionSection,
    TicketsSection,
    TlsFiles,
    node_count,
)
from vipr.config.values import HostPort, format_duration
from vipr.config.yaml_reader import BadValue, YamlReader, read_yaml
from vipr.dialplan import Dialplan, DialplanError
from vipr.e164 import NumberSet
from vipr.limits import ListenerLimits, SipLimits

_TOP_KEYS = (
    "provider", "numbers", "runtime_dir", "database", "logging",
    "overlay", "pvp", "proxy", "tickets", "retention", "dialplan",
)  # fmt: skip
_LEVELS = ("debug", "info", "warning", "error", "critical")
# Where each section key lives, to point at the right section for a misplaced key.
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "provider": ("name", "domain", "vservice"),
    "logging": ("level", "format"),
    "overlay": tuple(f.name for f in dataclasses.fields(OverlaySection)),
    "pvp": tuple(f.name for f in dataclasses.fields(PvpSection)),
    "proxy": ("interfaces", "route_timeout", "max_call_duration", "limits", "vcr_spool_max",
              "metrics"),
    "overlay.metrics": ("listen",),
    "pvp.metrics": ("listen",),
    "proxy.metrics": ("listen",),
    "overlay.limits": tuple(f.name for f in dataclasses.fields(ListenerLimits)),
    "overlay.debug": ("capture",),
    "overlay.debug.capture": tuple(f.name for f in dataclasses.fields(DebugCapture)),
    "pvp.limits": tuple(f.name for f in dataclasses.fields(ListenerLimits)),
    "proxy.limits": tuple(f.name for f in dataclasses.fields(SipLimits)),
    "proxy.interfaces": ("internal", "pstn", "federation", "hook", "redirect"),
    "proxy.interfaces.redirect": ("listen", "transport", "gateway", "no_route_status"),
    "proxy.interfaces.hook": ("listen", "token", "tls", "max_body", "max_connections"),
    "proxy.interfaces.<name>": ("listen", "transport", "target", "gateway", "advertise", "tls"),
    "proxy.interfaces.<name>.tls": ("cert", "key", "ca"),
    "tickets": tuple(f.name for f in dataclasses.fields(TicketsSection)),
    "retention": tuple(f.name for f in dataclasses.fields(RetentionSection)),
    "dialplan": ("country_code", "national_prefix", "international_prefix"),
}


def _belongs(key: str, path: str) -> str:
    """ "the top level or pvp" when `key` is a key of other sections, else ""."""
    # (the metrics blocks' one key, listen, is a likelier slip for an interface's listen)
    homes = [f"under {sec}" for sec, keys in _SECTION_KEYS.items()
             if key in keys and sec != path and not sec.endswith(".metrics")]
    if key in _TOP_KEYS and path:
        homes.insert(0, "at the top level")
    return " or ".join(homes)


def load_config(
    path: str | Path, *, files_of: Collection[str] = (), allow_missing: bool = False
) -> ProviderConfig:
    """Read and check a provider config; raise `ConfigError` with every problem found.

    `files_of` ("overlay", "proxy"): also check the certificates, keys and overlay document
    those roles will load (`vipr.config.files`); `allow_missing` lets files not exist yet."""

    def build(r: YamlReader, root: Node | None) -> ProviderConfig | None:
        cfg = _read(r, root)
        if cfg is not None and files_of:
            check_files(r, cfg, files_of, allow_missing=allow_missing)
        return cfg

    return read_yaml(path, build, _belongs)


def _read_overlay(r: YamlReader, node: Node | None) -> tuple[OverlaySection, dict[str, Node]]:
    p, d = "overlay", OverlaySection()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    opt_path = r.optional(r.path)
    sec = OverlaySection(
        configuration=r.get(m, p, "configuration", opt_path, d.configuration),
        cert=r.get(m, p, "cert", opt_path, d.cert),
        key=r.get(m, p, "key", opt_path, d.key),
        listen=r.get(m, p, "listen", r.hostport(), d.listen),
        create=r.get(m, p, "create", r.boolean, d.create),
        nodes=r.get(m, p, "nodes", r.optional(r.integer(1, MAX_NODES)), d.nodes),
        numbers_per_node=r.get(m, p, "numbers_per_node", r.integer(1), d.numbers_per_node),
        record_lifetime=r.get(m, p, "record_lifetime", r.duration(0, True), d.record_lifetime),
        republish_interval=r.get(
            m, p, "republish_interval", r.duration(0, True), d.republish_interval
        ),
        replication_hold_down=r.get(
            m, p, "replication_hold_down", r.duration(), d.replication_hold_down
        ),
        limits=_read_limits(r, (m or {}).get("limits"), f"{p}.limits", d.limits),
        metrics=_read_metrics(r, (m or {}).get("metrics"), f"{p}.metrics"),
        debug=_read_overlay_debug(r, (m or {}).get("debug")),
    )
    m = m or {}
    _need(
        r, m.get("republish_interval") or m.get("record_lifetime") or 1,
        "overlay.republish_interval", sec.republish_interval, sec.record_lifetime, float.__lt__,
        "less than overlay.record_lifetime ({b}), or claims expire before they are republished",
    )  # fmt: skip
    if m.get("cert") is not None and "key" not in m:
        r.error(m["cert"], "overlay.key", "required when overlay.cert is set")
    if m.get("key") is not None and "cert" not in m:
        r.error(m["key"], "overlay.cert", "required when overlay.key is set")
    return sec, m


def _read_overlay_debug(r: YamlReader, node: Node | None) -> OverlayDebug:
    """`overlay.debug.capture: {pcap: PATH, keylog: PATH, max_bytes: N}` (off by default)."""
    p = "overlay.debug"
    m = r.mapping(node, p, _SECTION_KEYS[p]) or {}
    pc, d = f"{p}.capture", DebugCapture()
    c = r.mapping(m.get("capture"), pc, _SECTION_KEYS[pc])
    opt_path = r.optional(r.path)
    return OverlayDebug(DebugCapture(
        pcap=r.get(c, pc, "pcap", opt_path, d.pcap),
        keylog=r.get(c, pc, "keylog", opt_path, d.keylog),
        max_bytes=r.get(c, pc, "max_bytes", r.integer(4096), d.max_bytes),
    ))


def _read_pvp(r: YamlReader, node: Node | None) -> tuple[PvpSection, dict[str, Node]]:
    p, d = "pvp", PvpSection()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    sec = PvpSection(
        listen=r.get(m, p, "listen", r.hostport(), d.listen),
        min_delay=r.get(m, p, "min_delay", r.duration(), d.min_delay),
        max_delay=r.get(m, p, "max_delay", r.duration(), d.max_delay),
        min_duration=r.get(m, p, "min_duration", r.duration(), d.min_duration),
        quantum=r.get(m, p, "quantum", r.duration(0.002), d.quantum),
        max_attempts_per_minute=r.get(
            m, p, "max_attempts_per_minute", r.integer(1), d.max_attempts_per_minute
        ),
        max_vcr_failures=r.get(m, p, "max_vcr_failures", r.integer(1, 1000), d.max_vcr_failures),
        handshake_timeout=r.get(
            m, p, "handshake_timeout", r.duration(0, True), d.handshake_timeout
        ),
        allow_domains=r.get(m, p, "allow_domains", r.domain_list, d.allow_domains),
        deny_domains=r.get(m, p, "deny_domains", r.domain_list, d.deny_domains),
        limits=_read_limits(r, (m or {}).get("limits"), f"{p}.limits", d.limits),
        metrics=_read_metrics(r, (m or {}).get("metrics"), f"{p}.metrics"),
    )
    m = m or {}
    _need(
        r, m.get("max_delay") or m.get("min_delay") or 1, "pvp.max_delay",
        sec.max_delay, sec.min_delay, float.__ge__, "at least pvp.min_delay ({b})",
    )  # fmt: skip
    return sec, m


def _read_metrics(r: YamlReader, node: Node | None, p: str) -> MetricsSection:
    """`<role>.metrics`: `listen` ("host:port", or a bare port on 127.0.0.1); absent: off."""
    m = r.mapping(node, p, _SECTION_KEYS[p])

    def listen(n: Node, path: str) -> HostPort | None:
        v = r.value(n)
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= 65535:
                raise BadValue(f"port {v} is outside 1..65535")
            return HostPort("127.0.0.1", v)
        return r.optional(r.hostport(False))(n, path)

    return MetricsSection(listen=r.get(m, p, "listen", listen, None))


_LimitsT = TypeVar("_LimitsT", bound=ListenerLimits)


def _read_limits(r: YamlReader, node: Node | None, p: str, d: _LimitsT) -> _LimitsT:
    """`<role>.limits`: the listener caps of DESIGN §10 (defaults: the role's safe values)."""
    return _limits_from(r, r.mapping(node, p, _SECTION_KEYS[p]), p, d)


def _limits_from(r: YamlReader, m: dict[str, Node] | None, p: str, d: _LimitsT) -> _LimitsT:
    return dataclasses.replace(
        d,
        max_connections=r.get(m, p, "max_connections", r.integer(1, 1_000_000),
                              d.max_connections),
        max_connections_per_address=r.get(
            m, p, "max_connections_per_address", r.integer(1, 1_000_000),
            d.max_connections_per_address,
        ),
        handshake_timeout=r.get(m, p, "handshake_timeout", r.duration(0.01, True),
                                d.handshake_timeout),
    )  # fmt: skip


def _read_sip_limits(r: YamlReader, node: Node | None, d: SipLimits) -> SipLimits:
    p = "proxy.limits"
    m = r.mapping(node, p, _SECTION_KEYS[p])
    base = _limits_from(r, m, p, d)
    return dataclasses.replace(
        base,
        # RFC 3261 §18.1.1: a UDP message over the path MTU goes over TCP; 64 KB is the
        # largest datagram, so a smaller cap than that would refuse valid UDP traffic too.
        max_message_size=r.get(m, p, "max_message_size", r.integer(1500, 1 << 24),
                               d.max_message_size),
        max_headers=r.get(m, p, "max_headers", r.integer(16, 100_000), d.max_headers),
        max_vias=r.get(m, p, "max_vias", r.integer(2, 10_000), d.max_vias),
    )  # fmt: skip


_IFACE_KEYS = _SECTION_KEYS["proxy.interfaces.<name>"]
_TLS_KEYS = _SECTION_KEYS["proxy.interfaces.<name>.tls"]


def _read_interface(r: YamlReader, node: Node | None, name: str, d: Interface) -> Interface:
    p = f"proxy.interfaces.{name}"
    m = r.mapping(node, p, _IFACE_KEYS, required=("listen",) if name == "federation" else ())
    transport: str = r.get(m, p, "transport", r.choice(("udp", "tcp", "tls")), str(d.transport))
    if name == "federation" and m is not None and "transport" not in m:
        transport = "tls"
    tls = _read_tls_files(r, m, p)
    iface = Interface(
        listen=r.get(m, p, "listen", r.hostport(), d.listen),
        transport=cast(Literal["udp", "tcp", "tls"], transport),
        target=r.get(m, p, "target", r.optional(r.hostport(False)), d.target),
        gateway=r.get(m, p, "gateway", r.optional(r.hostport(False)), d.gateway),
        advertise=r.get(m, p, "advertise", r.optional(r.sip_uri), d.advertise),
        tls=tls,
    )
    if m is None:
        return iface
    where: Node | int = node if node is not None else 1
    if name == "federation" and transport not in ("tls", None):
        r.error(m["transport"], f"{p}.transport",
                f"expected tls: federation is mutual TLS ({r.got(m['transport'])})")  # fmt: skip
    if transport == "tls" and "tls" not in m:
        r.error(where, f"{p}.tls", "required with transport tls (cert, key and ca files)")
    if transport in ("udp", "tcp") and "tls" in m:
        r.error(m["tls"], f"{p}.tls", f"only allowed with transport tls (transport is {transport})")
    if "gateway" in m and name != "pstn":
        r.error(m["gateway"], f"{p}.gateway", "only the pstn interface has a gateway")
    if "target" in m and name != "internal":
        r.error(m["target"], f"{p}.target", "only the internal interface has a target")
    return iface


def _digits(node: Node, path: str) -> str:
    """A digit string; YAML integers (`country_code: 44`) are accepted too."""
    v = node.value if isinstance(node, ScalarNode) else None
    if not isinstance(v, str) or not (v == "" or (v.isascii() and v.isdigit())):
        raise BadValue(f"expected digits, like \"44\" (got {v!r})")
    return v


def _read_dialplan(r: YamlReader, node: Node | None) -> Dialplan:
    p, d = "dialplan", Dialplan()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    cc = r.get(m, p, "country_code", _digits, d.country_code)
    np = r.get(m, p, "national_prefix", _digits, d.national_prefix)
    ip = r.get(m, p, "international_prefix", _digits, d.international_prefix)
    if cc is None and m is not None and "country_code" in m:
        return d   # the bad value is already recorded
    try:
        return Dialplan(country_code=cc or None, national_prefix=np or "",
                        international_prefix=ip or d.international_prefix)
    except DialplanError as exc:
        r.error(node if node is not None else 1, p, str(exc))
        return d


def _read_tls_files(r: YamlReader, m: dict[str, Node] | None, p: str) -> TlsFiles | None:
    """`<p>.tls`: cert, key and ca files (all three required), or None when absent."""
    if m is None or "tls" not in m:
        return None
    tp = f"{p}.tls"
    tm = r.mapping(m["tls"], tp, _TLS_KEYS, required=_TLS_KEYS)
    if tm is None or not all(k in tm for k in _TLS_KEYS):
        return None
    return TlsFiles(
        cert=r.get(tm, tp, "cert", r.path, Path()),
        key=r.get(tm, tp, "key", r.path, Path()),
        ca=r.get(tm, tp, "ca", r.path, Path()),
    )


def _read_hook(r: YamlReader, node: Node) -> HookInterface:
    p, d = "proxy.interfaces.hook", HookInterface()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    tls = _read_tls_files(r, m, p)
    return HookInterface(
        listen=r.get(m, p, "listen", r.hostport(), d.listen),
        token=r.get(m, p, "token", r.optional(r.string), d.token),
        tls=tls,
        max_body=r.get(m, p, "max_body", r.integer(1024, 1 << 26), d.max_body),
        max_connections=r.get(m, p, "max_connections", r.integer(1, 1_000_000),
                              d.max_connections),
    )


def _read_redirect(r: YamlReader, node: Node) -> RedirectInterface:
    p, d = "proxy.interfaces.redirect", RedirectInterface()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    status = r.get(m, p, "no_route_status", r.integer(300, 699), d.no_route_status)
    if isinstance(status, int) and 300 <= status < 400 and status != 302 and m is not None:
        r.error(m["no_route_status"], f"{p}.no_route_status",
                "expected 302 (redirect to the PSTN gateway) or a 4xx-6xx status")
    return RedirectInterface(
        listen=r.get(m, p, "listen", r.hostport(), d.listen),
        transport=cast(Literal["udp", "tcp"],
                       r.get(m, p, "transport", r.choice(("udp", "tcp")), str(d.transport))),
        gateway=r.get(m, p, "gateway", r.optional(r.hostport(False)), d.gateway),
        no_route_status=status,
    )


def _read_proxy(r: YamlReader, node: Node | None) -> tuple[ProxySection, dict[str, Node]]:
    p, d = "proxy", ProxySection()
    m = r.mapping(node, p, _SECTION_KEYS[p])
    im = r.mapping(
        (m or {}).get("interfaces"), "proxy.interfaces", _SECTION_KEYS["proxy.interfaces"]
    )
    im = im or {}
    fed_node = im.get("federation")
    federation = None
    if fed_node is not None and not (
        isinstance(fed_node, ScalarNode) and r.value(fed_node) is None
    ):
        federation = _read_interface(
            r, fed_node, "federation", Interface(HostPort("0.0.0.0", 5061))
        )
    hook_node = im.get("hook")
    hook = None
    if hook_node is not None and not (
        isinstance(hook_node, ScalarNode) and r.value(hook_node) is None
    ):
        hook = _read_hook(r, hook_node)
    redirect_node = im.get("redirect")
    redirect = None
    if redirect_node is not None and not (
        isinstance(redirect_node, ScalarNode) and r.value(redirect_node) is None
    ):
        redirect = _read_redirect(r, redirect_node)
    sec = ProxySection(
        interfaces=Interfaces(
            internal=_read_interface(r, im.get("internal"), "internal", d.interfaces.internal),
            pstn=_read_interface(r, im.get("pstn"), "pstn", d.interfaces.pstn),
            federation=federation,
            hook=hook,
            redirect=redirect,
        ),
        route_timeout=r.get(m, p, "route_timeout", r.duration(0, True), d.route_timeout),
        max_call_duration=r.get(m, p, "max_call_duration", r.duration(0, True),
                                d.max_call_duration),
        limits=_read_sip_limits(r, (m or {}).get("limits"), d.limits),
        vcr_spool_max=r.get(m, p, "vcr_spool_max", r.integer(1, 100_000_000), d.vcr_spool_max),
        metrics=_read_metrics(r, (m or {}).get("metrics"), "proxy.metrics"),
    )
    return sec, im


def _need(
    r: YamlReader,
    where: Node | int,
    path: str,
    a: float,
    b: float,
    test: Callable[[float, float], bool],
    expected: str,
) -> None:
    """Record an error at `path` unless test(a, b) (skipped when either value was invalid)."""
    if isinstance(a, float) and isinstance(b, float) and not test(a, b):
        msg = expected.format(b=format_duration(b))
        r.error(where, path, f"expected {msg} (got {format_duration(a)})")


def _check_listeners(
    r: YamlReader, listeners: list[tuple[str, str, HostPort, int]], nodes: dict[str, Node]
) -> None:
    """Two listeners on one port of one host (or a wildcard) cannot both bind.

    Each listener is (protocol, key path, address, count): ports address.port … + count - 1.
    """
    wild = {"0.0.0.0", "::"}
    seen: list[tuple[str, str, HostPort, int]] = []
    for proto, path, hp, count in listeners:
        if not isinstance(hp, HostPort) or hp.port == 0:
            continue
        for oproto, opath, other, ocount in seen:
            same_host = hp.host == other.host or hp.host in wild or other.host in wild
            overlap = hp.port < other.port + ocount and other.port < hp.port + count
            if oproto == proto and same_host and overlap:
                r.error(nodes.get(path, 1), path,
                        f"{proto.upper()} {hp} is also used by {opath}")  # fmt: skip
        seen.append((proto, path, hp, count))


def _mapping_of(node: Node | None) -> dict[str, Node]:
    """The key → value nodes of a mapping node (nothing reported: read elsewhere)."""
    if not isinstance(node, MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, ScalarNode)}


def _read(r: YamlReader, root: Node | None) -> ProviderConfig | None:
    if root is None:
        r.error(1, "(document)", "expected a mapping with provider, database, … (got nothing)")
        return None
    top = r.mapping(root, "", _TOP_KEYS, required=("provider", "database"))
    if top is None:
        return None
    pkeys = _SECTION_KEYS["provider"]
    pm = r.mapping(top["provider"], "provider", pkeys, pkeys) if "provider" in top else None
    provider = ProviderSection(
        name=r.get(pm, "provider", "name", r.name, cast(str, None)),
        domain=r.get(pm, "provider", "domain", r.domain, cast(str, None)),
        vservice=r.get(pm, "provider", "vservice", r.vservice, cast(str, None)),
    )
    numbers = r.get(top, "", "numbers", r.numbers, NumberSet())
    default_run = r.base / "run" / (provider.name or "provider")
    runtime_dir = r.get(top, "", "runtime_dir", r.path, default_run)
    database = r.get(top, "", "database", r.database, cast("Path | str", None))

    lm = r.mapping(top.get("logging"), "logging", _SECTION_KEYS["logging"])
    logging_sec = LoggingSection(
        level=r.get(lm, "logging", "level", r.choice(_LEVELS), "info"),
        format=cast(Literal["text", "json"],
                    r.get(lm, "logging", "format", r.choice(("text", "json")), "text")),
    )  # fmt: skip
    overlay, om = _read_overlay(r, top.get("overlay"))
    pvp, vm = _read_pvp(r, top.get("pvp"))
    proxy, im = _read_proxy(r, top.get("proxy"))

    tm = r.mapping(top.get("tickets"), "tickets", _SECTION_KEYS["tickets"])
    td = TicketsSection()
    tickets = TicketsSection(
        lifetime=r.get(tm, "tickets", "lifetime", r.duration(0, True), td.lifetime),
        renewal_window=r.get(tm, "tickets", "renewal_window", r.duration(), td.renewal_window),
        rotate_interval=r.get(
            tm, "tickets", "rotate_interval", r.duration(0, True), td.rotate_interval
        ),
    )
    tm = tm or {}
    _need(
        r, tm.get("renewal_window") or tm.get("lifetime") or 1, "tickets.renewal_window",
        tickets.renewal_window, tickets.lifetime, float.__lt__, "less than tickets.lifetime ({b})",
    )  # fmt: skip

    rm = r.mapping(top.get("retention"), "retention", _SECTION_KEYS["retention"])
    rd = RetentionSection()
    retention = RetentionSection(
        vcr=r.get(rm, "retention", "vcr", r.duration(0, True), rd.vcr),
        validation_log=r.get(
            rm, "retention", "validation_log", r.duration(0, True), rd.validation_log
        ),
    )
    _need(
        r, (rm or {}).get("vcr") or vm.get("max_delay") or 1, "retention.vcr",
        retention.vcr, pvp.max_delay, float.__gt__,
        "more than pvp.max_delay ({b}), or VCRs are purged before they are validated",
    )  # fmt: skip

    if isinstance(runtime_dir, Path):
        longest = runtime_dir / "overlay.sock"
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            r.error(top.get("runtime_dir") or 1, "runtime_dir",
                    f"expected a shorter path: socket {longest} is longer than "
                    f"{MAX_SOCKET_PATH} bytes (the AF_UNIX limit)")  # fmt: skip

    # Listener conflicts (TCP: overlay nodes, pvp, tcp/tls interfaces; UDP: udp interfaces).
    listeners: list[tuple[str, str, HostPort, int]] = []
    nodes_at: dict[str, Node] = {}
    if isinstance(overlay.listen, HostPort) and isinstance(numbers, NumberSet):
        per_node = overlay.numbers_per_node if isinstance(overlay.numbers_per_node, int) else 1
        count = node_count(overlay.nodes, len(numbers), per_node)
        where = om.get("nodes") or om.get("numbers_per_node") or top.get("numbers") or 1
        if count > MAX_NODES:
            msg = (
                f"expected at most {MAX_NODES} RELOAD nodes, but {len(numbers)} numbers "
                f"at {per_node} per node need {count}: raise overlay.numbers_per_node"
            )
            r.error(where, "overlay.nodes", msg)
        elif overlay.listen.port and overlay.listen.port + count - 1 > 65535:
            r.error(om.get("listen") or where, "overlay.listen",
                    f"expected room for {count} node ports above {overlay.listen}")  # fmt: skip
        else:
            listeners.append(("tcp", "overlay.listen", overlay.listen, count))
        if "listen" in om:
            nodes_at["overlay.listen"] = om["listen"]
    listeners.append(("tcp", "pvp.listen", pvp.listen, 1))
    if "listen" in vm:
        nodes_at["pvp.listen"] = vm["listen"]
    if proxy.interfaces.hook is not None and isinstance(proxy.interfaces.hook.listen, HostPort):
        listeners.append(("tcp", "proxy.interfaces.hook.listen", proxy.interfaces.hook.listen, 1))
    for role, msec, sec_m in (("overlay", overlay.metrics, om), ("pvp", pvp.metrics, vm),
                              ("proxy", proxy.metrics, _mapping_of(top.get("proxy")))):
        if isinstance(msec.listen, HostPort):
            key = f"{role}.metrics.listen"
            listeners.append(("tcp", key, msec.listen, 1))
            mnode = sec_m.get("metrics")
            lnode = _mapping_of(mnode).get("listen")
            if lnode is not None:
                nodes_at[key] = lnode
    redir = proxy.interfaces.redirect
    if redir is not None and isinstance(redir.listen, HostPort):
        listeners.append((redir.transport, "proxy.interfaces.redirect.listen", redir.listen, 1))
    for name in ("internal", "pstn", "federation"):
        iface = getattr(proxy.interfaces, name)
        if iface is None:
            continue
        key = f"proxy.interfaces.{name}.listen"
        proto = "udp" if iface.transport == "udp" else "tcp"
        listeners.append((proto, key, iface.listen, 1))
        inode = im.get(name)
        if isinstance(inode, MappingNode):
            for k, v in inode.value:
                if isinstance(k, ScalarNode) and k.value == "listen":
                    nodes_at[key] = v
    _check_listeners(r, listeners, nodes_at)

    return ProviderConfig(
        path=Path(os.path.abspath(r.file)),
        provider=provider,
        numbers=numbers,
        runtime_dir=runtime_dir,
        database=database,
        logging=logging_sec,
        overlay=overlay,
        pvp=pvp,
        proxy=proxy,
        tickets=tickets,
        retention=retention,
        dialplan=_read_dialplan(r, top.get("dialplan")),
    )
