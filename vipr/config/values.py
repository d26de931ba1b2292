"""Config values: host:port addresses, DNS names and durations."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass


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


# The longest duration a config may set: 100 years. Every duration must fit what it feeds:
# a ticket's expiry (u64 unix seconds, vipr.tickets), a RELOAD StoredData lifetime (uint32
# seconds ≈ 136 years, RFC 6940 §7.2) and the dates the CLI prints (year ≤ 9999).
MAX_DURATION = 36500 * 86400.0

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
    if seconds > MAX_DURATION:
        raise ValueError("expected a duration of at most 36500d (100 years)")
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
