"""vipr.hot_reload (issue 16 item 4): which re-read keys a running role keeps, sans I/O."""

from __future__ import annotations

from pathlib import Path

from vipr.config import ProviderConfig, load_config
from vipr.hot_reload import fixed_changes, keep_fixed

BASE = """\
provider: {name: p, domain: p.example, vservice: "00000000000000aa"}
numbers: ["+14085551234"]
database: db.sqlite
runtime_dir: run
proxy:
  route_timeout: 2s
  interfaces:
    internal: {listen: "127.0.0.1:5060"}
    pstn: {listen: "127.0.0.1:5062"}
%s
"""
FED = """    federation:
      listen: "127.0.0.1:%d"
      transport: tls
      advertise: "sip:127.0.0.1:%d;transport=tls"
      tls: {cert: fed.crt, key: fed.key, ca: ca.crt}
"""


def cfg(tmp: Path, name: str, text: str) -> ProviderConfig:
    p = tmp / name
    p.write_text(text)
    return load_config(p)


def test_changed_listen_address_is_named_and_kept(tmp_path: Path) -> None:
    old = cfg(tmp_path, "a.yaml", BASE % (FED % (5070, 5070)))
    new = cfg(tmp_path, "b.yaml", (BASE % (FED % (5071, 5071)))
              .replace('"127.0.0.1:5060"', '"127.0.0.1:5099"')
              .replace("route_timeout: 2s", "route_timeout: 3s")
              .replace('["+14085551234"]', '["+14085551234", "+14085551235"]'))
    changes = fixed_changes(old, new, "proxy")
    assert {c.key for c in changes} == {"proxy.interfaces.internal.listen",
                                        "proxy.interfaces.federation.listen"}
    merged = keep_fixed(old, new, changes)
    assert merged.proxy.interfaces.internal.listen.port == 5060
    assert merged.proxy.interfaces.federation is not None
    assert merged.proxy.interfaces.federation.listen.port == 5070
    assert merged.proxy.interfaces.federation.advertise == "sip:127.0.0.1:5071;transport=tls"
    assert merged.proxy.route_timeout == 3.0 and len(merged.numbers) == 2
    assert fixed_changes(old, merged, "proxy") == []
    # the overlay role does not care about the proxy's listeners
    assert fixed_changes(old, new, "overlay") == []


def test_added_or_removed_interface_is_kept_whole(tmp_path: Path) -> None:
    without = cfg(tmp_path, "a.yaml", BASE % "")
    with_fed = cfg(tmp_path, "b.yaml", BASE % (FED % (5070, 5070)))
    changes = fixed_changes(without, with_fed, "proxy")
    assert "proxy.interfaces.federation.listen" in {c.key for c in changes}
    assert keep_fixed(without, with_fed, changes).proxy.interfaces.federation is None
    changes = fixed_changes(with_fed, without, "proxy")
    assert keep_fixed(with_fed, without, changes).proxy.interfaces.federation == \
        with_fed.proxy.interfaces.federation
