"""vipr.limits: the connection gate's caps, and the `limits` blocks of the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from vipr.config import ConfigError, load_config
from vipr.limits import (
    OVERLAY_LIMITS,
    PVP_LIMITS,
    SIP_LIMITS,
    ConnectionGate,
    ListenerLimits,
    Refusal,
    source_key,
)

BASE = """\
provider:
  name: p
  domain: p.example
  vservice: "00000000000000aa"
database: db.sqlite
"""


def test_gate_caps_per_address_then_per_listener() -> None:
    gate = ConnectionGate(ListenerLimits(max_connections=3, max_connections_per_address=2))
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") is Refusal.ADDRESS_FULL
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") is Refusal.LISTENER_FULL
    gate.release("192.0.2.1")
    assert gate.admit("192.0.2.3") is None
    assert gate.status()["refused"] == {"address_full": 1, "listener_full": 1}
    assert gate.open == 3 and gate.sources() == 3


def test_gate_release_without_admit_is_an_error() -> None:
    gate = ConnectionGate(ListenerLimits())
    with pytest.raises(ValueError):
        gate.release("192.0.2.1")
    assert gate.admit("192.0.2.1") is None
    gate.release("192.0.2.1")
    assert gate.open == 0 and gate.sources() == 0


def test_ipv6_counts_per_64_and_mapped_ipv4_folds() -> None:
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert source_key("2001:db8:0:1::1") != source_key("2001:db8::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    gate = ConnectionGate(ListenerLimits(max_connections=10, max_connections_per_address=1))
    assert gate.admit("2001:db8::1") is None
    assert gate.admit("2001:db8::2") is Refusal.ADDRESS_FULL


def test_defaults_apply_without_a_limits_block(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.overlay.limits == OVERLAY_LIMITS
    assert cfg.pvp.limits == PVP_LIMITS
    assert cfg.proxy.limits == SIP_LIMITS


def test_limits_blocks_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        BASE
        + "overlay:\n  limits:\n    max_connections: 9\n"
        + "pvp:\n  limits:\n    max_connections_per_address: 2\n    handshake_timeout: 2s\n"
        + "proxy:\n  limits:\n    max_message_size: 8000\n    max_vias: 10\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.overlay.limits.max_connections == 9
    assert cfg.pvp.limits.max_connections_per_address == 2
    assert cfg.pvp.limits.handshake_timeout == 2.0
    assert cfg.proxy.limits.max_message_size == 8000 and cfg.proxy.limits.max_vias == 10
    assert cfg.proxy.limits.max_headers == SIP_LIMITS.max_headers


def test_bad_limits_are_reported_once_with_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        BASE + "proxy:\n  limits:\n    max_connectons: 9\n    max_message_size: 10\n"
        "pvp:\n  limits:\n    handshake_timeout: 0\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msgs = info.value.messages
    assert len(msgs) == 3, msgs
    assert any(":8: proxy.limits.max_connectons" in m and "max_connections" in m for m in msgs)
    assert any(":9: proxy.limits.max_message_size" in m for m in msgs)
    assert any(":12: pvp.limits.handshake_timeout" in m for m in msgs)
