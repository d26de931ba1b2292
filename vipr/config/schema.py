"""The frozen dataclasses a provider config loads into, one per YAML section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vipr.config.values import HostPort
from vipr.dialplan import Dialplan
from vipr.e164 import NumberSet
from vipr.limits import OVERLAY_LIMITS, PVP_LIMITS, SIP_LIMITS, ListenerLimits, SipLimits

# AF_UNIX sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
MAX_NODES = 4096  # RELOAD nodes one provider runs (one TLS port each)


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
class MetricsSection:
    """`<role>.metrics`: the role's Prometheus listener (DESIGN §13); off when `listen` is
    None. A bare port in the config means 127.0.0.1:port."""

    listen: HostPort | None = None


@dataclass(frozen=True)
class DebugCapture:
    """`overlay.debug.capture` (off by default): the overlay's decrypted RELOAD traffic as a
    pcap tshark decodes and/or the TLS session secrets (NSS key log) for Wireshark."""

    pcap: Path | None = None
    keylog: Path | None = None
    max_bytes: int = 100 * 1024 * 1024  # the pcap stops growing here (a warning says so)

    @property
    def on(self) -> bool:
        return self.pcap is not None or self.keylog is not None


@dataclass(frozen=True)
class OverlayDebug:
    capture: DebugCapture = DebugCapture()


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
    # RFC 6940 §10.7.1 "successor replacement hold-down" (30 s): wait this long after a
    # neighbor change before creating new replicas (hand-offs on a join go at once).
    replication_hold_down: float = 30.0
    limits: ListenerLimits = OVERLAY_LIMITS  # per node listener
    metrics: MetricsSection = MetricsSection()
    debug: OverlayDebug = OverlayDebug()


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
    limits: ListenerLimits = PVP_LIMITS
    metrics: MetricsSection = MetricsSection()


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
class HookInterface:
    """`proxy.interfaces.hook`: the HTTP/JSON hook for an existing edge (DESIGN §11)."""

    listen: HostPort = HostPort("127.0.0.1", 8061)
    token: str | None = None          # bearer token every request must carry
    tls: TlsFiles | None = None       # mutual TLS: clients need a certificate from `ca`
    max_body: int = 65536             # bytes per request body (413 above)
    max_connections: int = 256        # open HTTP connections (refused above)


@dataclass(frozen=True)
class RedirectInterface:
    """`proxy.interfaces.redirect`: INVITE → 302 with the learned route (DESIGN §11)."""

    listen: HostPort = HostPort("127.0.0.1", 5070)
    transport: Literal["udp", "tcp"] = "udp"
    gateway: HostPort | None = None   # the PSTN gateway's Contact (default: pstn.gateway)
    # no route: 302 to the PSTN gateway alone, or this final status ("use your PSTN route")
    no_route_status: int = 302


@dataclass(frozen=True)
class Interfaces:
    internal: Interface = Interface(HostPort("127.0.0.1", 5060))
    pstn: Interface = Interface(HostPort("127.0.0.1", 5062))
    federation: Interface | None = None
    hook: HookInterface | None = None
    redirect: RedirectInterface | None = None


@dataclass(frozen=True)
class ProxySection:
    interfaces: Interfaces = field(default_factory=Interfaces)
    route_timeout: float = 4.0
    # DESIGN §7: an answered call with no BYE after this long gets an 'unterminated' VCR.
    max_call_duration: float = 12 * 3600.0
    limits: SipLimits = SIP_LIMITS  # per stream interface; message caps on every transport
    # DESIGN §12: VCR changes kept on disk while a shared PostgreSQL is away (at most this many).
    vcr_spool_max: int = 250_000
    metrics: MetricsSection = MetricsSection()


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
    database: Path | str  # an SQLite file, or a postgresql:// URL (vipr.store, DESIGN §12)
    logging: LoggingSection = field(default_factory=LoggingSection)
    overlay: OverlaySection = field(default_factory=OverlaySection)
    pvp: PvpSection = field(default_factory=PvpSection)
    proxy: ProxySection = field(default_factory=ProxySection)
    tickets: TicketsSection = field(default_factory=TicketsSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    dialplan: Dialplan = field(default_factory=Dialplan)

    def socket_path(self, role: str) -> Path:
        """The Unix socket of `role` ("overlay", "pvp", "proxy")."""
        return self.runtime_dir / f"{role}.sock"

    def overlay_node_count(self) -> int:
        """`overlay.nodes`, or ceil(numbers / numbers_per_node), at least 1."""
        return node_count(self.overlay.nodes, len(self.numbers), self.overlay.numbers_per_node)


def node_count(nodes: int | None, numbers: int, per_node: int) -> int:
    if nodes is not None:
        return nodes
    return max(1, -(-numbers // max(1, per_node)))
