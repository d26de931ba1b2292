"""vipr.metrics: the shared registry, its bounded labels, the /metrics listener (DESIGN §13).
The series moving in a real network: tests/testnet/test_metrics_demo.py."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vipr.config.values import HostPort
from vipr.limits import ConnectionGate, ListenerLimits
from vipr.listen_error import ListenError
from vipr.metrics import (
    REGISTRY,
    MetricsListener,
    count_validation,
    exposition,
    fallback_cause,
    reason_label,
    watch_listener,
)


def sample(name: str, **labels: str) -> float:
    got = REGISTRY.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.mark.parametrize(("reason", "label"), [
    ("wrong-password", "wrong-password"),
    ("network ConnectionRefusedError(111, 'refused')", "network"),
    ("refused 403 domain denied", "refused"),
    ("ticket for a.example.net (epoch 1)", "ticket"),
    ("sip:127.0.0.1:5061;transport=tls from 127.0.0.1:7061", "other"),
    ("+442071230000 mismatch", "other"),
    ("", "other"),
    ("x" * 40, "other"),
])
def test_reason_labels_are_code_words(reason: str, label: str) -> None:
    assert reason_label(reason) == label


@pytest.mark.parametrize(("cause", "label"), [
    ("connect", "connect"), ("timeout", "timeout"), ("403", "403"), ("503", "5xx"),
    ("500", "5xx"), ("603", "6xx"), ("404", "other"), ("480", "other"), ("weird", "other"),
])
def test_fallback_causes_are_bounded(cause: str, label: str) -> None:
    assert fallback_cause(cause) == label


def test_count_validation_moves_one_series() -> None:
    before = sample("vipr_pvp_validations_total", side="server", outcome="failed",
                    reason="wrong-password")
    other = sample("vipr_pvp_validations_total", side="client", outcome="failed",
                   reason="wrong-password")
    count_validation("server", "failed", "wrong-password (after 1 try)")
    assert sample("vipr_pvp_validations_total", side="server", outcome="failed",
                  reason="wrong-password") == before + 1
    assert sample("vipr_pvp_validations_total", side="client", outcome="failed",
                  reason="wrong-password") == other


class _Holder:
    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.labels, s.value) for s in fam.samples]
    return out


async def test_listener_serves_the_registry_and_gate_counts() -> None:
    gate = ConnectionGate(ListenerLimits(max_connections=3, max_connections_per_address=1))
    holder = _Holder(gate)
    watch_listener("unit_test", holder)
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") is not None          # address_full
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") is None
    assert gate.admit("192.0.2.4") is not None          # listener_full
    listener = MetricsListener("pvp", HostPort("127.0.0.1", 0))
    await listener.start()
    try:
        assert listener.address is not None
        host, port = listener.address
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{host}:{port}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=")
                fams = _families(await r.text())
            async with s.get(f"http://{host}:{port}/other") as r:
                assert r.status == 404
    finally:
        await listener.close()
    assert ({"listener": "unit_test"}, 3.0) in fams["vipr_listener_connections"]
    refused = {(ls["listener"], ls["limit"]): v for ls, v in fams["vipr_listener_refusals"]
               if ls.get("listener") == "unit_test" and "limit" in ls}
    assert refused == {("unit_test", "address_full"): 1.0, ("unit_test", "listener_full"): 1.0}
    # declared families with no event yet are still described (HELP/TYPE) for scrapers
    assert "vipr_proxy_pstn_fallbacks" in fams
    del holder                                               # a stopped server is forgotten
    import gc
    gc.collect()
    assert "unit_test" not in exposition()[0].decode()


async def test_busy_port_is_a_listen_error_naming_the_role() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        listener = MetricsListener("overlay", HostPort("127.0.0.1", port))
        with pytest.raises(ListenError) as info:
            await listener.start()
    assert str(info.value) == \
        f"cannot listen on overlay metrics 127.0.0.1:{port}: Address already in use"


def test_daemon_with_busy_metrics_port_exits_with_one_line(tmp_path: Path) -> None:
    """run_daemon starts `<role>.metrics.listen` first: a taken port is one error line, exit 1
    (before the role needs anything else)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "p.yaml"
        cfg.write_text('provider: {name: p, domain: p.example, vservice: "0000000000000001"}\n'
                       f"database: p.db\npvp:\n  listen: '127.0.0.1:0'\n"
                       f"  metrics: {{listen: {port}}}\n")
        out = subprocess.run([sys.executable, "-m", "vipr", "pvp", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert f"cannot listen on pvp metrics 127.0.0.1:{port}: Address already in use" \
        in out.stderr
    assert "Traceback" not in out.stderr


def test_proxy_state_read_at_scrape_time() -> None:
    """Route cache size and age, VCR writer counts, and the status counters with status codes
    folded to their class (no numbers as label values)."""
    import time
    from collections import Counter
    from types import SimpleNamespace

    from vipr.metrics import watch_proxy
    from vipr.proxy.routing import RouteCache
    from vipr.store.models import Route

    now = time.time()
    cache = RouteCache([Route("+442071230000", ("sip:b",), "t", now + 9e5, now + 9e5, "n",
                              "b.example", now - 100.0)])
    writer = SimpleNamespace(opened=2, written=3, failed=1, spooled=4, replayed=5,
                             spool_pending=6)
    class FakeProxy:   # weakly referenced, as the real ProxyServer is
        policy = SimpleNamespace(cache=cache)
        calls = {("x",): 1}
        counters = Counter({"failed_486": 2, "failed_404": 1, "invites": 7})

    proxy = FakeProxy()
    proxy.writer = writer  # type: ignore[attr-defined]
    watch_proxy(proxy)
    fams = _families(exposition()[0].decode())
    assert fams["vipr_proxy_route_cache_routes"] == [({}, 1.0)]
    (_, age), = fams["vipr_proxy_route_cache_oldest_age_seconds"]
    assert 100.0 <= age < 160.0
    assert fams["vipr_proxy_active_calls"] == [({}, 1.0)]
    changes = {ls["state"]: v for ls, v in fams["vipr_proxy_vcr_changes"]
               if "state" in ls}
    assert changes == {"opened": 2, "written": 3, "failed": 1, "spooled": 4, "replayed": 5}
    assert fams["vipr_proxy_vcr_spool_pending"] == [({}, 6.0)]
    events = {ls["event"]: v for ls, v in fams["vipr_proxy_events"] if "event" in ls}
    assert events == {"failed_4xx": 3.0, "invites": 7.0}
