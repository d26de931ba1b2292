"""What an unauthenticated peer may hold on a listener (DESIGN §10), and the gate that counts it.

Every TCP/TLS listener of the three roles (SIP federation and stream interfaces, RELOAD links,
PVP) admits a connection only through a `ConnectionGate`: a listener-wide cap and a cap per
source address, checked at accept before any TLS state or read buffer exists. The gate is pure:
the asyncio shells call `admit` when a socket is accepted and `release` when it closes.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ListenerLimits:
    """Caps for one role's listeners (`overlay.limits`, `pvp.limits`, `proxy.limits`)."""

    max_connections: int = 512  # open at once on one listener
    max_connections_per_address: int = 32  # from one source (IPv4 address, IPv6 /64)
    # Seconds from accept until the peer is authenticated (TLS handshake done; on plain TCP,
    # the first whole message): a slow or silent peer is closed then.
    handshake_timeout: float = 5.0


@dataclass(frozen=True)
class SipLimits(ListenerLimits):
    """`proxy.limits`: the connection caps plus what one SIP message may carry."""

    max_message_size: int = 65535  # bytes; larger → 513 Message Too Large (RFC 3261 §21.5.11)
    max_headers: int = 256  # header fields in one message; more → 400
    # Via entries in one message; more → 400. Not below 70: Max-Forwards starts at 70
    # (RFC 3261 §8.1.1.6), so a legitimate request can carry that many (RFC 4475 §3.1.1.7: 34)
    max_vias: int = 70


OVERLAY_LIMITS = ListenerLimits(max_connections=256, max_connections_per_address=16)
PVP_LIMITS = ListenerLimits(max_connections=256, max_connections_per_address=16)
SIP_LIMITS = SipLimits()


class Refusal(StrEnum):
    """Why the gate refused a connection (also the metrics/log label)."""

    LISTENER_FULL = "listener_full"
    ADDRESS_FULL = "address_full"


def source_key(host: str) -> str:
    """The unit a per-address cap counts: the IPv4 address, or the IPv6 /64 (one subscriber's
    allocation, RFC 6177), with IPv4-mapped IPv6 folded to IPv4. Not an IP literal → itself."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class ConnectionGate:
    """Counts the open connections of one listener and says which new ones to refuse."""

    def __init__(self, limits: ListenerLimits) -> None:
        self.limits = limits
        self._per_source: Counter[str] = Counter()
        self.open = 0
        self.refused: Counter[Refusal] = Counter()

    def admit(self, host: str) -> Refusal | None:
        """Count a connection from `host` in, or say why it must be closed at once."""
        key = source_key(host)
        if self.open >= self.limits.max_connections:
            refusal = Refusal.LISTENER_FULL
        elif self._per_source[key] >= self.limits.max_connections_per_address:
            refusal = Refusal.ADDRESS_FULL
        else:
            self.open += 1
            self._per_source[key] += 1
            return None
        self.refused[refusal] += 1
        return refusal

    def release(self, host: str) -> None:
        """Count out a connection that `admit` let in (call exactly once per admission)."""
        key = source_key(host)
        n = self._per_source[key]
        if n <= 0:
            raise ValueError(f"release without admit for {key}")
        if n == 1:
            del self._per_source[key]
        else:
            self._per_source[key] = n - 1
        self.open -= 1

    def held_by(self, host: str) -> int:
        """How many connections the source of `host` holds now."""
        return self._per_source.get(source_key(host), 0)

    def sources(self) -> int:
        """How many distinct sources hold connections now."""
        return len(self._per_source)

    def status(self) -> dict[str, object]:
        """For `status` answers: open connections, sources, refusals by reason."""
        return {
            "open": self.open,
            "sources": len(self._per_source),
            "max_connections": self.limits.max_connections,
            "max_connections_per_address": self.limits.max_connections_per_address,
            "refused": {r.value: n for r, n in sorted(self.refused.items())},
        }
