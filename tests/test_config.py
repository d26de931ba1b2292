"""vipr.config: good configs load, every bad one names FILE:LINE: key.path and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vipr.cli import main
from vipr.config import (
    ConfigError,
    HostPort,
    ProviderConfig,
    format_duration,
    load_config,
    parse_duration,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "config").glob("provider-*.yaml"))

BASE = """\
provider:
  name: p
  domain: p.example
  vservice: "00000000000000aa"
database: db.sqlite
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


# ---------------------------------------------------------------- good configs


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(example: Path) -> None:
    cfg = load_config(example)
    assert isinstance(cfg, ProviderConfig)
    assert cfg.path == example
    assert cfg.database.is_absolute() and cfg.database.parent.parent.parent == example.parent
    assert len(cfg.provider.vservice) == 16
    assert len(cfg.numbers) > 0
    fed = cfg.proxy.interfaces.federation
    assert fed is not None and fed.transport == "tls" and fed.tls is not None


def test_provider_a_values() -> None:
    cfg = load_config(REPO / "config" / "provider-a.yaml")
    base = REPO / "config"
    assert cfg.provider.name == "provider-a"
    assert cfg.provider.domain == "a.example.net"
    assert cfg.provider.vservice == "0000000000000001"
    assert cfg.numbers.entries == ("+14085551234", "+1408555[0000-0999]")
    assert len(cfg.numbers) == 1001
    assert "+14085550999" in cfg.numbers and "+14085551234" in cfg.numbers
    assert "+14085551235" not in cfg.numbers
    assert cfg.runtime_dir == base / "run" / "provider-a"
    assert cfg.socket_path("pvp") == base / "run" / "provider-a" / "pvp.sock"
    assert cfg.database == base / "state" / "provider-a" / "vipr.db"
    assert cfg.overlay.configuration == base / "overlay" / "overlay.xml"
    assert cfg.overlay.listen == HostPort("127.0.0.1", 6084)
    assert cfg.overlay.record_lifetime == 86400.0
    assert cfg.overlay.replication_hold_down == 30.0
    assert cfg.overlay_node_count() == 1
    assert cfg.pvp.min_delay == 30.0 and cfg.pvp.max_delay == 3600.0
    assert cfg.pvp.quantum == 10.0 and cfg.pvp.max_vcr_failures == 3
    ifs = cfg.proxy.interfaces
    assert ifs.internal.target == HostPort("127.0.0.1", 5090)
    assert ifs.pstn.gateway == HostPort("127.0.0.1", 5080)
    assert ifs.federation is not None and ifs.federation.tls is not None
    assert ifs.federation.tls.ca == base / "fed" / "ca.pem"
    assert cfg.proxy.route_timeout == 4.0
    assert cfg.proxy.max_call_duration == 12 * 3600.0
    assert cfg.tickets.lifetime == 90 * 86400.0
    assert cfg.retention.vcr == 48 * 3600.0


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.database == tmp_path / "db.sqlite"
    assert cfg.runtime_dir == tmp_path / "run" / "p"
    assert len(cfg.numbers) == 0
    assert cfg.logging.level == "info" and cfg.logging.format == "text"
    assert cfg.pvp.listen == HostPort("127.0.0.1", 7061)
    assert cfg.proxy.interfaces.federation is None
    assert cfg.proxy.interfaces.internal.transport == "udp"
    assert cfg.overlay.replication_hold_down == 30.0  # RFC 6940 §10.7.1


def test_replication_hold_down_is_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE + "overlay:\n  replication_hold_down: 2s\n"))
    assert cfg.overlay.replication_hold_down == 2.0
    msgs = errors(write(tmp_path, BASE + "overlay:\n  replication_hold_down: soon\n"))
    assert msgs and "overlay.replication_hold_down: expected a duration" in msgs[0]


def test_ipv6_durations_paths_and_merge_keys(tmp_path: Path) -> None:
    text = BASE + (
        "runtime_dir: /tmp/vipr-run\n"
        "logging: {level: DEBUG, format: json}\n"
        "pvp:\n"
        "  listen: '[::1]:0'\n"
        "  min_delay: 0\n"
        "  max_delay: 1.5m\n"
        "  quantum: 250ms\n"
        "  handshake_timeout: 2.5\n"
        "x-timers: &t {lifetime: 10d, renewal_window: 1d}\n"
    ).replace("x-timers", "tickets")
    text += "retention: {vcr: 2h}\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.runtime_dir == Path("/tmp/vipr-run")
    assert cfg.logging.level == "debug" and cfg.logging.format == "json"
    assert cfg.pvp.listen == HostPort("::1", 0) and str(cfg.pvp.listen) == "[::1]:0"
    assert cfg.pvp.min_delay == 0.0 and cfg.pvp.max_delay == 90.0
    assert cfg.pvp.quantum == 0.25 and cfg.pvp.handshake_timeout == 2.5
    assert cfg.tickets.lifetime == 10 * 86400.0 and cfg.tickets.renewal_window == 86400.0


def test_yaml_merge_keys(tmp_path: Path) -> None:
    text = BASE + (
        "proxy:\n"
        "  interfaces:\n"
        "    internal: &loop {listen: '127.0.0.1:0', transport: tcp}\n"
        "    pstn:\n"
        "      <<: *loop\n"
        "      transport: udp\n"
        "      gateway: '127.0.0.1:5080'\n"
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.proxy.interfaces.pstn.transport == "udp"
    assert cfg.proxy.interfaces.pstn.listen == HostPort("127.0.0.1", 0)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    with pytest.raises(AttributeError):
        cfg.database = Path("/x")  # type: ignore[misc]


# ---------------------------------------------------------------- bad configs

# (extra YAML appended to BASE (or replacing it when it starts with "!"), line, message)
BAD = [
    ("pvpp: {}\n", 6, "pvpp: unknown key; did you mean 'pvp'?"),
    ("pvp:\n  min_dealy: 5s\n", 7, "pvp.min_dealy: unknown key; did you mean 'min_delay'?"),
    (
        "!provider:\n  name: p\n  domain: p.example\n  vservice: 0000000000000001\n"
        "database: db.sqlite\n",
        4,
        "provider.vservice: expected 16 hex digits as a quoted string (got number 1: YAML "
        'reads unquoted digits as a number; write it in quotes, like "0000000000000001")',
    ),
    (
        '!provider:\n  name: p\n  domain: p.example\n  vservice: "00aa"\ndatabase: db\n',
        4,
        "provider.vservice: expected 16 hex digits, like \"0000000000000001\" (got '00aa')",
    ),
    (
        '!provider:\n  name: p\n  domain: "-bad-.example"\n  vservice: "00000000000000aa"\n'
        "database: db\n",
        3,
        "provider.domain: expected a DNS domain name like 'a.example.net' (got '-bad-.example')",
    ),
    (
        "numbers:\n  - '+14085551234'\n  - +14085551235\n",
        8,
        'numbers[1]: expected an E.164 number in quotes, like "+14085551235" (got number '
        "14085551235: YAML reads an unquoted +number as an integer)",
    ),
    (
        "numbers:\n  - '+1408555[000-0999]'\n",
        7,
        "numbers[0]: expected an E.164 number or block: '+1408555[000-0999]': both ends of the "
        "range need the same number of digits",
    ),
    (
        "numbers: ['+44 20 7123 4567', '+442071234567']\n",
        6,
        "numbers[1]: duplicate of numbers[0]",
    ),
    (
        "pvp:\n  max_delay: 5 minutes\n",
        7,
        'pvp.max_delay: expected a duration like 30, "30s", "5m", "48h" or "90d" '
        "(got '5 minutes')",
    ),
    (
        "pvp:\n  min_delay: 2m\n  max_delay: 60\n",
        8,
        "pvp.max_delay: expected at least pvp.min_delay (2m) (got 1m)",
    ),
    ("pvp:\n  quantum: 0\n", 7, "pvp.quantum: expected a duration ≥ 2ms (got number 0)"),
    (
        "pvp:\n  listen: '::1:7061'\n",
        7,
        "pvp.listen: IPv6 addresses need brackets, like \"[::1]:5060\" (got '::1:7061')",
    ),
    (
        "overlay:\n  listen: 127.0.0.1:70000\n",
        7,
        "overlay.listen: port 70000 is outside 0..65535 (got '127.0.0.1:70000')",
    ),
    (
        "pvp:\n  max_vcr_failures: true\n",
        7,
        "pvp.max_vcr_failures: expected an integer 1..1000 (got boolean true)",
    ),
    (
        "proxy:\n  interfaces:\n    federation:\n      listen: '127.0.0.1:5061'\n",
        9,
        "proxy.interfaces.federation.tls: required with transport tls (cert, key and ca files)",
    ),
    (
        "proxy:\n  interfaces:\n    federation:\n      listen: '127.0.0.1:5061'\n"
        "      transport: tls\n      tls: {cert: a.crt, key: a.key}\n",
        11,
        "proxy.interfaces.federation.tls.ca: required key missing",
    ),
    (
        "proxy:\n  interfaces:\n    internal:\n      listen: '127.0.0.1:5060'\n"
        "      tls: {cert: a.crt, key: a.key, ca: ca.crt}\n",
        10,
        "proxy.interfaces.internal.tls: only allowed with transport tls (transport is udp)",
    ),
    (
        "proxy:\n  interfaces:\n    internal:\n      listn: '127.0.0.1:5060'\n",
        9,
        "proxy.interfaces.internal.listn: unknown key; did you mean 'listen'?",
    ),
    (
        "proxy:\n  interfaces:\n    internal: {listen: '127.0.0.1:5060', gateway: 'x.example:1'}\n",
        8,
        "proxy.interfaces.internal.gateway: only the pstn interface has a gateway",
    ),
    (
        "pvp:\n  listen: '127.0.0.1:7000'\noverlay:\n  listen: '127.0.0.1:7000'\n",
        7,
        "pvp.listen: TCP 127.0.0.1:7000 is also used by overlay.listen",
    ),
    (
        "overlay:\n  listen: '127.0.0.1:7000'\n  nodes: 3\npvp:\n  listen: '127.0.0.1:7002'\n",
        10,
        "pvp.listen: TCP 127.0.0.1:7002 is also used by overlay.listen",
    ),
    (
        "numbers: ['+1[000000000-059999999]']\n",
        6,
        "overlay.nodes: expected at most 4096 RELOAD nodes, but 60000000 numbers at "
        "10000 per node need 6000: raise overlay.numbers_per_node",
    ),
    (
        "numbers: ['+1[00000000000000-99999999999999]']\n",
        6,
        "numbers[0]: expected at most 100,000,000 numbers per provider in all, but this entry "
        "brings the total from 0 to 100,000,000,000,000",
    ),
    (
        "tickets:\n  lifetime: 99999999999999999999999d\n",
        7,
        "tickets.lifetime: expected a duration of at most 36500d (100 years) "
        "(got '99999999999999999999999d')",
    ),
    (
        "pvp:\n  level: debug\n",
        7,
        "pvp.level: unknown key here; it belongs under logging",
    ),
    (
        "listen: '127.0.0.1:1'\n",
        6,
        "listen: unknown key here; it belongs under overlay or under pvp or under "
        "proxy.interfaces.redirect or under proxy.interfaces.hook or under "
        "proxy.interfaces.<name>",
    ),
    ("logging:\n  format: xml\n", 7, "logging.format: expected one of text|json (got 'xml')"),
    (
        "overlay:\n  cert: node.crt\n",
        7,
        "overlay.key: required when overlay.cert is set",
    ),
    (
        "tickets:\n  lifetime: 30d\n  renewal_window: 30d\n",
        8,
        "tickets.renewal_window: expected less than tickets.lifetime (30d) (got 30d)",
    ),
    (
        "retention:\n  vcr: 30m\n",
        7,
        "retention.vcr: expected more than pvp.max_delay (1h), or VCRs are purged before "
        "they are validated (got 30m)",
    ),
    ("database: other.db\n", 6, "database: duplicate key (first at line 5)"),
    (
        "!provider: {name: p, domain: p.example, vservice: '00000000000000aa'}\n",
        1,
        "database: required key missing",
    ),
    ("!- provider\n", 1, "(document): expected a mapping (got a list)"),
    ("!", 1, "(document): expected a mapping with provider, database, … (got nothing)"),
    (
        "pvp:\n  listen: [::1]:7061\n",
        7,
        "(yaml): invalid YAML: expected the node content, but found ':'; put values with "
        '"[" in quotes, like "[::1]:5060" or "+1408555[0000-0999]"',
    ),
    (
        "overlay:\n  metrics: {listen: 70000}\n",
        7,
        "overlay.metrics.listen: port 70000 is outside 1..65535",
    ),
    (
        "proxy:\n  metrics: {listen: '127.0.0.1:0'}\n",
        7,
        "proxy.metrics.listen: port 0 is outside 1..65535 (got '127.0.0.1:0')",
    ),
    (
        "pvp:\n  metrics: {port: 9101}\n",
        7,
        "pvp.metrics.port: unknown key; expected one of: listen",
    ),
    (
        "pvp:\n  listen: '127.0.0.1:9101'\n  metrics: {listen: 9101}\n",
        8,
        "pvp.metrics.listen: TCP 127.0.0.1:9101 is also used by pvp.listen",
    ),
    (
        "pvp:\n  allow_domains: [a.example, 'no_underscores.example']\n",
        7,
        "pvp.allow_domains[1]: expected a domain name, optionally '*.' + domain "
        "(got 'no_underscores.example')",
    ),
]


@pytest.mark.parametrize(("extra", "line", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, extra: str, line: int, message: str
) -> None:
    text = extra[1:] if extra.startswith("!") else BASE + extra
    path = write(tmp_path, text)
    assert errors(path) == [f"{path}:{line}: {message}"]


def test_socket_path_too_long(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + f"runtime_dir: /{'x' * 100}\n")
    (msg,) = errors(path)
    assert msg.startswith(f"{path}:6: runtime_dir: expected a shorter path: socket /xxx")
    assert msg.endswith("is longer than 107 bytes (the AF_UNIX limit)")


def test_all_errors_reported_sorted_by_line(tmp_path: Path) -> None:
    text = (
        "provider:\n  name: p\n  domain: bad_domain\n  vservice: 1\n"
        "database: db\npvp:\n  quantum: -1\n  colour: blue\n"
    )
    path = write(tmp_path, text)
    msgs = errors(path)
    assert [m.split(":", 3)[1:3] for m in msgs] == [
        ["3", " provider.domain"],
        ["4", " provider.vservice"],
        ["7", " pvp.quantum"],
        ["8", " pvp.colour"],
    ]


def test_unreadable_and_non_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert errors(missing) == [f"{missing}:1: (file): cannot read: No such file or directory"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(BASE.encode() + b"# caf\xe9\n")
    assert errors(latin) == [f"{latin}:6: (file): expected UTF-8 text"]


def test_unknown_tag_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "runtime_dir: !!python/object:os.system run\n")
    (msg,) = errors(path)
    assert msg.startswith(f"{path}:6: (yaml): invalid YAML: could not determine a constructor")


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), (1.5, 1.5), ("30s", 30.0), ("5m", 300.0), ("48h", 172800.0),
     ("90d", 7776000.0), ("1.5h", 5400.0), ("250ms", 0.25), (" 7 ", 7.0)],
)  # fmt: skip
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1", "1w", True, None, float("inf"), [1]])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.5, 30.0, 300.0, 5400.0, 86400.0, 7776000.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "host", "port", "back"),
    [("127.0.0.1:5060", "127.0.0.1", 5060, "127.0.0.1:5060"),
     ("[::1]:5061", "::1", 5061, "[::1]:5061"),
     ("[2001:DB8::1]:0", "2001:db8::1", 0, "[2001:db8::1]:0"),
     ("Proxy.Example.net:5060", "proxy.example.net", 5060, "proxy.example.net:5060")],
)  # fmt: skip
def test_hostport(text: str, host: str, port: int, back: str) -> None:
    hp = HostPort.parse(text)
    assert (hp.host, hp.port, str(hp)) == (host, port, back)
    assert HostPort.parse(str(hp)) == hp


@pytest.mark.parametrize(
    "text", ["5060", ":5060", "host:", "[::1]5060", "[127.0.0.1]:1", "::1:5060", "a b:1", "h:-1"]
)
def test_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        HostPort.parse(text)


# ---------------------------------------------------------------- vipr check-config


def test_check_config_cli_ok() -> None:
    # The example configs name certificates each provider makes: they do not exist here.
    example = str(REPO / "config" / "provider-a.yaml")
    assert CliRunner().invoke(main, ["check-config", example]).exit_code == 2
    result = CliRunner().invoke(main, ["check-config", "--allow-missing-files", example])
    assert result.exit_code == 0, result.output
    assert "provider-a.yaml: ok" in result.stdout
    assert "numbers   1001 in 2 entries" in result.stdout
    assert "federation tls 127.0.0.1:5061" in result.stdout


def test_check_config_cli_bad(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "pvp:\n  quantum: 0\n  colour: red\n")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:7: pvp.quantum: expected a duration ≥ 2ms (got number 0)" in result.stderr
    assert f"{path}:8: pvp.colour: unknown key" in result.stderr
    assert f"{path}: 2 problems" in result.stderr
    assert result.stdout == ""


def test_check_config_json(tmp_path: Path) -> None:
    import json

    path = write(tmp_path, BASE + "bogus: 1\n")
    result = CliRunner().invoke(main, ["check-config", "--json", str(path)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["errors"] == [f"{path}:6: bogus: unknown key;"
                                                   " expected one of: provider, numbers, "
                                                   "runtime_dir, database, logging, overlay, "
                                                   "pvp, proxy, tickets, retention, "
                                                   "dialplan"]  # fmt: skip


def test_check_config_subprocess(tmp_path: Path) -> None:
    vipr = Path(sys.executable).parent / "vipr"
    good = subprocess.run(
        [str(vipr), "check-config", "--allow-missing-files",
         str(REPO / "config" / "provider-b.yaml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "provider-b (domain b.example.org" in good.stdout
    bad_path = write(tmp_path, BASE + "numbers: [+1]\n")
    bad = subprocess.run(
        [str(vipr), "check-config", str(bad_path)], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"{bad_path}:6: numbers[0]: expected an E.164 number in quotes")


def test_pure_python_yaml_gives_the_same_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    import vipr.config.yaml_reader

    monkeypatch.setattr(vipr.config.yaml_reader, "_Loader", yaml.SafeLoader)  # as without libyaml
    assert len(load_config(REPO / "config" / "provider-a.yaml").numbers) == 1001
    for i, (extra, line, message) in enumerate(BAD):
        text = extra[1:] if extra.startswith("!") else BASE + extra
        path = write(tmp_path, text, f"p{i}.yaml")
        assert errors(path) == [f"{path}:{line}: {message}"]


def test_database_may_be_a_postgresql_url(tmp_path: Path) -> None:
    """Issue 15: `database: postgresql://…` selects the PostgreSQL backend, kept as written."""
    url = "postgresql://vipr@127.0.0.1:5432/vipr"
    cfg = load_config(write(tmp_path, BASE.replace("db.sqlite", url)))
    assert cfg.database == url
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE.replace("db.sqlite", "mysql://h/db")))
    assert "postgresql:// URL" in "\n".join(info.value.messages)


def test_proxy_vcr_spool_max(tmp_path: Path) -> None:
    """Issue 15: the bound of the proxy's on-disk VCR spool (DESIGN §12)."""
    assert load_config(write(tmp_path, BASE)).proxy.vcr_spool_max == 250_000
    cfg = load_config(write(tmp_path, BASE + "proxy: {vcr_spool_max: 1000}\n"))
    assert cfg.proxy.vcr_spool_max == 1000
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + "proxy: {vcr_spool_max: 0}\n"))
    assert "vcr_spool_max" in "\n".join(info.value.messages)


def test_metrics_listen_per_role(tmp_path: Path) -> None:
    """`<role>.metrics.listen`: off by default; a bare port is on loopback (DESIGN §13)."""
    cfg = load_config(write(tmp_path, BASE))
    assert (cfg.overlay.metrics.listen, cfg.pvp.metrics.listen, cfg.proxy.metrics.listen) \
        == (None, None, None)
    cfg = load_config(write(tmp_path, BASE + (
        "overlay:\n  metrics: {listen: 9101}\n"
        "pvp:\n  metrics: {listen: '[::1]:9102'}\n"
        "proxy:\n  metrics:\n    listen: '127.0.0.2:9103'\n")))
    assert cfg.overlay.metrics.listen == HostPort("127.0.0.1", 9101)
    assert cfg.pvp.metrics.listen == HostPort("::1", 9102)
    assert cfg.proxy.metrics.listen == HostPort("127.0.0.2", 9103)


def test_check_config_lists_metrics_listeners(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "pvp:\n  metrics: {listen: 9102}\n")
    r = CliRunner().invoke(main, ["check-config", str(path)])
    assert r.exit_code == 0, r.output
    assert "metrics   pvp 127.0.0.1:9102" in r.output
    plain = CliRunner().invoke(main, ["check-config", str(write(tmp_path, BASE))])
    assert "metrics" not in plain.output
