"""`vipr check-config` fails (exit 2, FILE:LINE) on every config that would start and then
fail, or never start (issue 13 #10); the daemons refuse the same configs before they start.

Each case edits a copy of the demo network's provider A (real certificates, real overlay
document) and runs the real command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vipr.cli import main
from vipr.config import ConfigError, load_config
from vipr.reload.overlay_config import OverlayConfigError, parse_overlay_document
from vipr.testnet.workdir import Layout, make_workdir


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_workdir(tmp_path_factory.mktemp("net"))


@pytest.fixture
def a(net: Layout, tmp_path: Path) -> Path:
    """A copy of the demo network; returns provider A's config in it."""
    root = tmp_path / "w"
    shutil.copytree(net.root, root, ignore=shutil.ignore_patterns("state", "run", "logs"))
    return root / "provider-a.yaml"


def edit(cfg: Path, old: str, new: str) -> None:
    text = cfg.read_text()
    assert old in text, old
    cfg.write_text(text.replace(old, new, 1))


def line_of(cfg: Path, needle: str) -> int:
    for i, line in enumerate(cfg.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def check(cfg: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["check-config", *args, str(cfg)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output


def fails_at(cfg: Path, needle: str, key: str, *words: str) -> str:
    code, out = check(cfg)
    assert code == 2, out
    want = f"{cfg}:{line_of(cfg, needle)}: {key}: "
    assert want in out, out
    for w in words:
        assert re.search(w, out), out
    return out


def test_the_demo_configs_pass(net: Layout) -> None:
    for cfg in net.configs.values():
        code, out = check(cfg)
        assert code == 0, out


def test_missing_files_fail_unless_allowed(a: Path) -> None:
    cert = a.parent / "tls" / "a.example.net.pem"
    cert.unlink()
    fails_at(a, "cert: tls/", "proxy.interfaces.federation.tls.cert", "file not found")
    code, out = check(a, "--allow-missing-files")
    assert code == 0, out
    assert "warning: proxy.interfaces.federation.tls.cert: file not found" in out


def test_garbage_cert(a: Path) -> None:
    (a.parent / "tls" / "a.example.net.pem").write_text("not a certificate\n")
    fails_at(a, "cert: tls/", "proxy.interfaces.federation.tls.cert", "no certificate")


def test_directory_as_cert(a: Path) -> None:
    (a.parent / "certdir").mkdir()
    edit(a, "cert: overlay/provider-a.crt", "cert: certdir")
    fails_at(a, "cert: certdir", "overlay.cert", "is a directory")


def test_federation_key_of_another_cert(a: Path) -> None:
    tls = a.parent / "tls"
    shutil.copy(tls / "b.example.org.key", tls / "a.example.net.key")
    fails_at(a, "key: tls/", "proxy.interfaces.federation.tls.key", "does not match")


def test_overlay_key_of_another_cert(a: Path) -> None:
    ov = a.parent / "overlay"
    shutil.copy(ov / "provider-b.key", ov / "provider-a.key")
    fails_at(a, "key: overlay/", "overlay.key", "does not match")


def test_per_node_cert_of_another_key(a: Path) -> None:
    ov = a.parent / "overlay"
    shutil.copy(ov / "provider-b.crt", ov / "provider-a-1.crt")
    edit(a, "nodes: 1", "nodes: 2")
    fails_at(a, "cert: overlay/", "overlay.cert", r"provider-a-1\.crt \(node 1\) does not match")


def test_garbage_ca(a: Path) -> None:
    (a.parent / "tls" / "ca.pem").write_bytes(b"\x00\x01garbage")
    fails_at(a, "ca: tls/", "proxy.interfaces.federation.tls.ca", "no certificate")


def test_garbage_overlay_document(a: Path) -> None:
    (a.parent / "overlay" / "overlay.xml").write_text("<overlay><unclosed></overlay>")
    fails_at(a, "configuration:", "overlay.configuration", "not well-formed")


BOMB = """<?xml version="1.0"?>
<!DOCTYPE overlay [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base">
 <configuration instance-name="bomb.example" sequence="1"><shared-secret>&c;</shared-secret>
 </configuration>
</overlay>
"""


def test_entity_bomb_overlay_document(a: Path) -> None:
    (a.parent / "overlay" / "overlay.xml").write_text(BOMB)
    fails_at(a, "configuration:", "overlay.configuration", "DOCTYPE")


def test_the_daemons_parser_refuses_a_dtd() -> None:
    with pytest.raises(OverlayConfigError, match="DOCTYPE"):
        parse_overlay_document(BOMB.encode())
    with pytest.raises(OverlayConfigError, match="DOCTYPE"):
        parse_overlay_document('<!DOCTYPE overlay SYSTEM "file:///etc/passwd"><overlay/>')


def test_ticket_lifetime_beyond_what_a_ticket_encodes(a: Path) -> None:
    edit(a, "lifetime: 90d", "lifetime: 99999999999999999999999d")
    fails_at(a, "lifetime: 9999", "tickets.lifetime", "at most 36500d")


def test_a_block_of_ten_to_the_fourteen_numbers(a: Path) -> None:
    edit(a, "- +1408555[0000-0009]", '- "+1[00000000000000-99999999999999]"')
    edit(a, "nodes: 1", "nodes: 1\n  numbers_per_node: 1000000000000000")
    fails_at(a, "+1[0000", "numbers[0]", "at most 100,000,000 numbers")


def test_not_creating_an_overlay_whose_only_bootstrap_is_this_node(a: Path) -> None:
    edit(a, "create: true", "create: false")
    fails_at(a, "create: false", "overlay.create", "bootstrap", "127.0.0.1:")


def test_the_daemon_commands_refuse_a_bad_key(a: Path) -> None:
    """`vipr proxy` and `vipr up` check the same files before anything starts (#9)."""
    tls = a.parent / "tls"
    shutil.copy(tls / "b.example.org.key", tls / "a.example.net.key")
    for argv in (["proxy", "--config", str(a)], ["up", "--config", str(a)]):
        p = subprocess.run([sys.executable, "-m", "vipr", *argv], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stdout + p.stderr
        want = f"{a}:{line_of(a, 'key: tls/')}: proxy.interfaces.federation.tls.key: "
        assert want in p.stderr and "does not match" in p.stderr, p.stderr


def test_load_config_without_files_of_reads_no_file(a: Path) -> None:
    """Inspection commands (routes, vcrs …) need not read certificates."""
    (a.parent / "tls" / "a.example.net.pem").unlink()
    assert load_config(a).provider.name == "provider-a"
    with pytest.raises(ConfigError):
        load_config(a, files_of=("proxy",))


def test_overlay_document_whose_max_message_size_cannot_carry_a_full_answer(a: Path) -> None:
    """DESIGN §4: with 5000 bytes (RFC 6940's default) 13 VIPR entries no longer fit one
    FetchAns, so one member could hide every other claim; `vipr overlay` refuses such a
    document, and check-config says so first."""
    doc = a.parent / "overlay" / "overlay.xml"
    text = doc.read_text()
    assert "<max-message-size>102400</max-message-size>" in text
    doc.write_text(text.replace("102400", "5000"))
    # a wanted change: re-signed by the overlay CA's signer (RFC 6940 §11.1)
    res = CliRunner().invoke(main, ["ca", "sign-overlay-doc", "--config", str(doc)])
    assert res.exit_code == 0, res.output
    fails_at(a, "configuration:", "overlay.configuration", "max-message-size 5000",
             "at least")
