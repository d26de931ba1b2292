"""Provider configuration: one YAML file → frozen dataclasses.

`load_config(path)` reads the YAML node tree (so every value keeps its line), checks every
key and value, and raises `ConfigError` listing all the problems it found, each one line
"FILE:LINE: key.path: what was expected (got …)". The keys are documented by the example
config/provider-a.yaml. Durations become float seconds, addresses `HostPort`, relative
paths absolute paths (resolved against the config file's directory).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vipr.e164 import E164Error, NumberBlock, NumberSet, parse_entry

__all__ = [
    "ConfigError",
    "HostPort",
    "Interface",
    "Interfaces",
    "LoggingSection",
    "OverlaySection",
    "ProviderConfig",
    "ProviderSection",
    "ProxySection",
    "PvpSection",
    "RetentionSection",
    "TicketsSection",
    "TlsFiles",
    "load_config",
    "format_duration",
    "parse_duration",
    "valid_domain",
]

T = TypeVar("T")

# AF_UNIX sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
MAX_NODES = 4096  # RELOAD nodes one provider runs (one TLS port each)
ROLES = ("overlay", "pvp", "proxy")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """The configuration is invalid; `messages` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class HostPort:
    """A host (IPv4, IPv6 without brackets, or DNS name) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, allow_port_zero: bool = True) -> HostPort:
        """Parse "host:port" or "[v6]:port"; raise ValueError saying what is wrong."""
        text = text.strip()
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError('expected "[IPv6]:port"')
            host, port_s = text[1:end], text[end + 2 :]
            try:
                if ipaddress.ip_address(host.split("%", 1)[0]).version != 6:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{host!r} inside brackets is not an IPv6 address") from None
        else:
            if text.count(":") > 1:
                raise ValueError('IPv6 addresses need brackets, like "[::1]:5060"')
            host, sep, port_s = text.rpartition(":")
            if not sep or not host:
                raise ValueError('expected "host:port"')
            if not _valid_ipv4(host) and not valid_domain(host):
                raise ValueError(f"{host!r} is neither an IP address nor a host name")
        if not port_s.isascii() or not port_s.isdigit():
            raise ValueError(f"port {port_s!r} is not a number")
        port = int(port_s)
        low = 0 if allow_port_zero else 1
        if not low <= port <= 65535:
            raise ValueError(f"port {port} is outside {low}..65535")
        return cls(host.lower(), port)


def _valid_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def valid_domain(name: str) -> bool:
    """True for a DNS host name (RFC 1123 §2.1 labels, ≤253 characters, not all-numeric TLD)."""
    name = name.lower().removesuffix(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return False
    return not labels[-1].isdigit()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from an int/float or a string like "30s", "5m", "1.5h", "90d", "250ms"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError('expected a duration like 30, "30s", "5m", "48h" or "90d"')
        seconds = float(m[1]) * _UNIT[m[2]]
    else:
        raise ValueError("expected a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("expected a finite, non-negative duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 90d, 12h, 5m, 30s, 250ms, or 1.5s."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ProviderSection:
    name: str
    domain: str
    vservice: str  # 16 lower-case hex digits


@dataclass(frozen=True)
class LoggingSection:
    level: str = "info"  # debug|info|warning|error|critical
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class OverlaySection:
    configuration: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    listen: HostPort = HostPort("127.0.0.1", 6084)
    create: bool = False
    nodes: int | None = None
    numbers_per_node: int = 10000
    record_lifetime: float = 86400.0
    republish_interval: float = 43200.0


@dataclass(frozen=True)
class PvpSection:
    listen: HostPort = HostPort("127.0.0.1", 7061)
    min_delay: float = 30.0
    max_delay: float = 3600.0
    min_duration: float = 5.0
    quantum: float = 10.0
    max_attempts_per_minute: int = 30
    max_vcr_failures: int = 3
    handshake_timeout: float = 10.0
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class Interface:
    listen: HostPort
    transport: Literal["udp", "tcp", "tls"] = "udp"
    target: HostPort | None = None
    gateway: HostPort | None = None
    advertise: str | None = None
    tls: TlsFiles | None = None


@dataclass(frozen=True)
class Interfaces:
    internal: Interface = Interface(HostPort("127.0.0.1", 5060))
    pstn: Interface = Interface(HostPort("127.0.0.1", 5062))
    federation: Interface | None = None


@dataclass(frozen=True)
class ProxySection:
    interfaces: Interfaces = field(default_factory=Interfaces)
    route_timeout: float = 4.0


@dataclass(frozen=True)
class TicketsSection:
    lifetime: float = 90 * 86400.0
    renewal_window: float = 30 * 86400.0
    rotate_interval: float = 30 * 86400.0


@dataclass(frozen=True)
class RetentionSection:
    vcr: float = 48 * 3600.0
    validation_log: float = 30 * 86400.0


@dataclass(frozen=True)
class ProviderConfig:
    path: Path
    provider: ProviderSection
    numbers: NumberSet
    runtime_dir: Path
    database: Path
    logging: LoggingSection = field(default_factory=LoggingSection)
    overlay: OverlaySection = field(default_factory=OverlaySection)
    pvp: PvpSection = field(default_factory=PvpSection)
    proxy: ProxySection = field(default_factory=ProxySection)
    tickets: TicketsSection = field(default_factory=TicketsSection)
    retention: RetentionSection = field(default_factory=RetentionSection)

    def socket_path(self, role: str) -> Path:
        """The Unix socket of `role` ("overlay", "pvp", "proxy")."""
        return self.runtime_dir / f"{role}.sock"

    def overlay_node_count(self) -> int:
        """`overlay.nodes`, or ceil(numbers / numbers_per_node), at least 1."""
        return _node_count(self.overlay.nodes, len(self.numbers), self.overlay.numbers_per_node)


def _node_count(nodes: int | None, numbers: int, per_node: int) -> int:
    if nodes is not None:
        return nodes
    return max(1, -(-numbers // max(1, per_node)))


# --------------------------------------------------------------------------- reader

_TOP_KEYS = (
    "provider", "numbers", "runtime_dir", "database", "logging",
    "overlay", "pvp", "proxy", "tickets", "retention",
)  # fmt: skip
_LEVELS = ("debug", "info", "warning", "error", "critical")
# Where each section key lives, to point at the right section for a misplaced key.
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "provider": ("name", "domain", "vservice"),
    "logging": ("level", "format"),
    "overlay": tuple(f.name for f in dataclasses.fields(OverlaySection)),
    "pvp": tuple(f.name for f in dataclasses.fields(PvpSection)),
    "proxy": ("interfaces", "route_timeout"),
    "proxy.interfaces": ("internal", "pstn", "federation"),
    "proxy.interfaces.<name>": ("listen", "transport", "target", "gateway", "advertise", "tls"),
    "proxy.interfaces.<name>.tls": ("cert", "key", "ca"),
    "tickets": tuple(f.name for f in dataclasses.fields(TicketsSection)),
    "retention": tuple(f.name for f in dataclasses.fields(RetentionSection)),
}


def _belongs(key: str, path: str) -> str:
    """ "the top level or pvp" when `key` is a key of other sections, else ""."""
    homes = [f"under {sec}" for sec, keys in _SECTION_KEYS.items() if key in keys and sec != path]
    if key in _TOP_KEYS and path:
        homes.insert(0, "at the top level")
    return " or ".join(homes)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")


class _Bad(Exception):
    """One invalid value (the reader adds file, line and key path)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    """Walks the composed YAML tree, converting values and collecting every error."""

    def __init__(self, file: str, base: Path, loader: Any) -> None:
        self.file = file
        self.base = base
        self.loader = loader
        self.errors: list[tuple[int, int, str]] = []

    def error(self, where: Node | int, path: str, msg: str) -> None:
        line = where if isinstance(where, int) else _line(where)
        self.errors.append((line, len(self.errors), f"{self.file}:{line}: {path}: {msg}"))

    def value(self, node: Node) -> Any:
        """The Python value of a scalar node (None, bool, int, float or str)."""
        if not isinstance(node, ScalarNode):
            return node
        return self.loader.construct_object(node, deep=True)

    def got(self, node: Node) -> str:
        """How a value reads in an error message."""
        if isinstance(node, SequenceNode):
            return "got a list"
        if isinstance(node, MappingNode):
            return "got a mapping"
        try:
            v = self.value(node)
        except yaml.YAMLError:
            return f"got {node.value!r}"
        if v is None:
            return "got nothing"
        if isinstance(v, bool):
            return f"got boolean {str(v).lower()}"
        if isinstance(v, int | float):
            return f"got number {v}"
        s = str(v)
        return f"got {s[:60] + '…' if len(s) > 60 else s!r}"

    def expect(self, node: Node, what: str) -> _Bad:
        return _Bad(f"expected {what} ({self.got(node)})")

    def mapping(
        self, node: Node | None, path: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Node] | None:
        """Keys → value nodes; unknown, duplicate and missing keys become errors."""
        if node is None or (isinstance(node, ScalarNode) and self.value(node) is None):
            out: dict[str, Node] = {}
            for key in required:
                self.error(
                    node if node is not None else 1, _join(path, key), "required key missing"
                )
            return out
        if not isinstance(node, MappingNode):
            self.error(node, path or "(document)", f"expected a mapping ({self.got(node)})")
            return None
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.error(node, path or "(document)", f"bad merge: {getattr(exc, 'problem', exc)}")
            return None
        merged = len(node.value) - explicit
        out = {}
        first: dict[str, tuple[int, bool]] = {}
        for i, (knode, vnode) in enumerate(node.value):
            kval: object = self.value(knode) if isinstance(knode, ScalarNode) else None
            if not isinstance(kval, str):
                self.error(knode, path or "(document)", f"keys must be names ({self.got(knode)})")
                continue
            key = kval
            kpath = _join(path, key)
            if key in first and not first[key][1]:
                self.error(knode, kpath, f"duplicate key (first at line {first[key][0]})")
                continue
            first[key] = (_line(knode), i < merged)
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                home = _belongs(key, path)
                if close:
                    hint = f"unknown key; did you mean {close[0]!r}?"
                elif home:
                    hint = f"unknown key here; it belongs {home}"
                else:
                    hint = f"unknown key; expected one of: {', '.join(allowed)}"
                self.error(knode, kpath, hint)
                continue
            out[key] = vnode
        for key in required:
            if key not in out:
                self.error(node, _join(path, key), "required key missing")
        return out

    def get(
        self,
        m: dict[str, Node] | None,
        path: str,
        key: str,
        conv: Callable[[Node, str], T],
        default: T,
    ) -> T:
        """Convert m[key] (errors recorded, value None) or return the default when absent."""
        if m is None or key not in m:
            return default
        kpath = _join(path, key)
        try:
            return conv(m[key], kpath)
        except _Bad as exc:
            self.error(m[key], kpath, exc.msg)
            return cast(T, None)

    # ---- converters: (node, key path) → value, raising _Bad

    def string(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not v.strip():
            raise self.expect(node, "a non-empty string")
        return v.strip()

    def name(self, node: Node, path: str) -> str:
        v = self.string(node, path)
        if not _NAME.match(v):
            raise self.expect(node, "a name of letters, digits, '.', '_', '-' (≤63)")
        return v

    def domain(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not valid_domain(v):
            raise self.expect(node, "a DNS domain name like 'a.example.net'")
        return v.lower().removesuffix(".")

    def domain_pattern(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not valid_domain(v.removeprefix("*.")):
            raise self.expect(node, "a domain name, optionally '*.' + domain")
        return v.lower().removesuffix(".")

    def vservice(self, node: Node, path: str) -> str:
        v = self.value(node)
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise _Bad(
                f"expected 16 hex digits as a quoted string ({self.got(node)}: YAML reads "
                f'unquoted digits as a number; write it in quotes, like "0000000000000001")'
            )
        if not isinstance(v, str) or not _HEX16.match(v):
            raise self.expect(node, '16 hex digits, like "0000000000000001"')
        return v.lower()

    def duration(self, minimum: float = 0.0, strict: bool = False) -> Callable[[Node, str], float]:
        def conv(node: Node, path: str) -> float:
            v = self.value(node)
            try:
                seconds = parse_duration(v)
            except ValueError as exc:
                raise self.expect(node, str(exc).removeprefix("expected ")) from None
            if seconds < minimum or (strict and seconds <= minimum):
                op = ">" if strict else "≥"
                raise self.expect(node, f"a duration {op} {format_duration(minimum)}")
            return seconds

        return conv

    def integer(self, low: int, high: int | None = None) -> Callable[[Node, str], int]:
        def conv(node: Node, path: str) -> int:
            v = self.value(node)
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or v < low
                or (high is not None and v > high)
            ):
                rng = f"{low}..{high}" if high is not None else f"≥ {low}"
                raise self.expect(node, f"an integer {rng}")
            return v

        return conv

    def boolean(self, node: Node, path: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            raise self.expect(node, "true or false")
        return v

    def choice(self, options: Sequence[str]) -> Callable[[Node, str], str]:
        def conv(node: Node, path: str) -> str:
            v = self.value(node)
            if not isinstance(v, str) or v.lower() not in options:
                raise self.expect(node, "one of " + "|".join(options))
            return v.lower()

        return conv

    def path(self, node: Node, path: str) -> Path:
        v = self.value(node)
        if not isinstance(v, str) or not v.strip():
            raise self.expect(node, "a file path")
        p = Path(v.strip()).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.base / p))

    def hostport(self, allow_port_zero: bool = True) -> Callable[[Node, str], HostPort]:
        def conv(node: Node, path: str) -> HostPort:
            v = self.value(node)
            if not isinstance(v, str):
                raise _Bad(f'expected "host:port" in quotes ({self.got(node)})')
            try:
                return HostPort.parse(v, allow_port_zero=allow_port_zero)
            except ValueError as exc:
                raise _Bad(f"{exc} ({self.got(node)})") from None

        return conv

    def sip_uri(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not re.match(r"^sips?:\S+$", v.strip(), re.IGNORECASE):
            raise self.expect(node, 'a SIP URI like "sip:proxy.a.example.net;transport=tls"')
        return v.strip()

    def optional(self, conv: Callable[[Node, str], T]) -> Callable[[Node, str], T | None]:
        def opt(node: Node, path: str) -> T | None:
            if isinstance(node, ScalarNode) and self.value(node) is None:
                return None
            return conv(node, path)

        return opt

    def items(self, node: Node, path: str) -> list[Node]:
        if isinstance(node, ScalarNode) and self.value(node) is None:
            return []
        if not isinstance(node, SequenceNode):
            raise self.expect(node, "a list")
        return list(node.value)

    def domain_list(self, node: Node, path: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.items(node, path)):
            try:
                out.append(self.domain_pattern(item, _join(path, i)))
            except _Bad as exc:
                self.error(item, _join(path, i), exc.msg)
        return tuple(out)

    def numbers(self, node: Node, path: str) -> NumberSet:
        entries: list[str | NumberBlock] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items(node, path)):
            ipath = _join(path, i)
            v = self.value(item)
            if isinstance(v, int) and not isinstance(v, bool):
                self.error(
                    item, ipath,
                    f'expected an E.164 number in quotes, like "+{v}" ({self.got(item)}: '
                    "YAML reads an unquoted +number as an integer)",
                )  # fmt: skip
                continue
            if not isinstance(v, str):
                self.error(item, ipath, f"expected an E.164 number or block ({self.got(item)})")
                continue
            try:
                entry = parse_entry(v)
            except E164Error as exc:
                self.error(item, ipath, f"expected an E.164 number or block: {exc}")
                continue
            if str(entry) in seen:
                self.error(item, ipath, f"duplicate of {path}[{seen[str(entry)]}]")
                continue
            seen[str(entry)] = i
            entries.append(entry)
        return NumberSet(entries)


# --------------------------------------------------------------------------- sections


def _read_overlay(r: _Reader, node: Node | None) -> tuple[OverlaySection, dict[str, Node]]:
    p, d = "overlay", OverlaySection()
    m = r.mapping(node, p, [f.name for f in _fields(OverlaySection)])
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


def _read_pvp(r: _Reader, node: Node | None) -> tuple[PvpSection, dict[str, Node]]:
    p, d = "pvp", PvpSection()
    m = r.mapping(node, p, [f.name for f in _fields(PvpSection)])
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
    )
    m = m or {}
    _need(
        r, m.get("max_delay") or m.get("min_delay") or 1, "pvp.max_delay",
        sec.max_delay, sec.min_delay, float.__ge__, "at least pvp.min_delay ({b})",
    )  # fmt: skip
    return sec, m


_IFACE_KEYS = _SECTION_KEYS["proxy.interfaces.<name>"]


def _read_interface(r: _Reader, node: Node | None, name: str, d: Interface) -> Interface:
    p = f"proxy.interfaces.{name}"
    m = r.mapping(node, p, _IFACE_KEYS, required=("listen",) if name == "federation" else ())
    transport: str = r.get(m, p, "transport", r.choice(("udp", "tcp", "tls")), str(d.transport))
    if name == "federation" and m is not None and "transport" not in m:
        transport = "tls"
    tls = None
    if m is not None and "tls" in m:
        tp = f"{p}.tls"
        tm = r.mapping(m["tls"], tp, ("cert", "key", "ca"), required=("cert", "key", "ca"))
        if tm is not None and all(k in tm for k in ("cert", "key", "ca")):
            tls = TlsFiles(
                cert=r.get(tm, tp, "cert", r.path, Path()),
                key=r.get(tm, tp, "key", r.path, Path()),
                ca=r.get(tm, tp, "ca", r.path, Path()),
            )
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


def _read_proxy(r: _Reader, node: Node | None) -> tuple[ProxySection, dict[str, Node]]:
    p, d = "proxy", ProxySection()
    m = r.mapping(node, p, ("interfaces", "route_timeout"))
    im = r.mapping(
        (m or {}).get("interfaces"), "proxy.interfaces", ("internal", "pstn", "federation")
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
    sec = ProxySection(
        interfaces=Interfaces(
            internal=_read_interface(r, im.get("internal"), "internal", d.interfaces.internal),
            pstn=_read_interface(r, im.get("pstn"), "pstn", d.interfaces.pstn),
            federation=federation,
        ),
        route_timeout=r.get(m, p, "route_timeout", r.duration(0, True), d.route_timeout),
    )
    return sec, im


def _need(
    r: _Reader,
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


def _fields(cls: type) -> list[Any]:
    return list(dataclasses.fields(cls))


def _check_listeners(
    r: _Reader, listeners: list[tuple[str, str, HostPort, int]], nodes: dict[str, Node]
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


# --------------------------------------------------------------------------- entry point


def load_config(path: str | Path) -> ProviderConfig:
    """Read and check a provider config; raise `ConfigError` with every problem found."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}:1: (file): cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{file}:{line}: (file): expected UTF-8 text"]) from None
    base = Path(os.path.abspath(path)).parent
    # libyaml when present: ~10x faster on a long numbers list, same nodes and marks.
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_message(file, text, exc)]) from None
        r = _Reader(file, base, loader)
        try:
            cfg = _read(r, root, base)
        except yaml.MarkedYAMLError as exc:  # e.g. an unknown !tag met while converting
            r.errors.append((0, len(r.errors), _yaml_message(file, text, exc)))
            cfg = None
    finally:
        loader.dispose()
    if r.errors or cfg is None:
        raise ConfigError([msg for _, _, msg in sorted(r.errors)])
    return cfg


def _syntax_message(file: str, text: str, exc: yaml.YAMLError) -> str:
    """Describe a YAML syntax error; the pure-Python parser words it better than libyaml."""
    if _Loader is not yaml.SafeLoader:
        slow = yaml.SafeLoader(text)
        try:
            slow.get_single_node()
        except yaml.YAMLError as better:
            exc = better
        finally:
            slow.dispose()
    if isinstance(exc, yaml.MarkedYAMLError):
        return _yaml_message(file, text, exc)
    return f"{file}:1: (yaml): invalid YAML: {exc}"


def _yaml_message(file: str, text: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "invalid YAML"
    src = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    hint = ""
    if "[" in src or "]" in src:
        hint = '; put values with "[" in quotes, like "[::1]:5060" or "+1408555[0000-0999]"'
    return f"{file}:{line}: (yaml): invalid YAML: {problem}{hint}"


def _read(r: _Reader, root: Node | None, base: Path) -> ProviderConfig | None:
    if root is None:
        r.error(1, "(document)", "expected a mapping with provider, database, … (got nothing)")
        return None
    top = r.mapping(root, "", _TOP_KEYS, required=("provider", "database"))
    if top is None:
        return None
    pkeys = ("name", "domain", "vservice")
    pm = r.mapping(top["provider"], "provider", pkeys, pkeys) if "provider" in top else None
    provider = ProviderSection(
        name=r.get(pm, "provider", "name", r.name, cast(str, None)),
        domain=r.get(pm, "provider", "domain", r.domain, cast(str, None)),
        vservice=r.get(pm, "provider", "vservice", r.vservice, cast(str, None)),
    )
    numbers = r.get(top, "", "numbers", r.numbers, NumberSet())
    default_run = base / "run" / (provider.name or "provider")
    runtime_dir = r.get(top, "", "runtime_dir", r.path, default_run)
    database = r.get(top, "", "database", r.path, cast(Path, None))

    lm = r.mapping(top.get("logging"), "logging", ("level", "format"))
    logging_sec = LoggingSection(
        level=r.get(lm, "logging", "level", r.choice(_LEVELS), "info"),
        format=cast(Literal["text", "json"],
                    r.get(lm, "logging", "format", r.choice(("text", "json")), "text")),
    )  # fmt: skip
    overlay, om = _read_overlay(r, top.get("overlay"))
    pvp, vm = _read_pvp(r, top.get("pvp"))
    proxy, im = _read_proxy(r, top.get("proxy"))

    tm = r.mapping(top.get("tickets"), "tickets", ("lifetime", "renewal_window", "rotate_interval"))
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

    rm = r.mapping(top.get("retention"), "retention", ("vcr", "validation_log"))
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
        count = _node_count(overlay.nodes, len(numbers), per_node)
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
    )
