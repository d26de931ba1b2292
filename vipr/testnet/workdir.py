"""The demo's working directory: overlay CA, certificates and configs for providers A, B, C
and the PSTN simulator, all on loopback with distinct ports and demo timers.

    layout = make_workdir(Path("demo"))      # fresh ports, returns what it wrote
    layout.configs["b"], layout.pstn_config, layout.phones["a"], layout.b_number

Files::

    overlay/ca.crt ca.key signer.crt signer.key overlay.xml (signed, RFC 6940 §11.1)
            provider-{a,b,c}.crt/.key   (vipr.reload.ca)
    tls/ca.pem ca.key {a.example.net,b.example.org,c.example.com}.pem/.key   (federation_tls)
    provider-{a,b,c}.yaml   provider-b-nofed.yaml (B without its federation listener)
    pstn.yaml               run/<x>/ state/<x>/ logs/

C's config also lists the number of B's that A calls: C claims it in the overlay but the PSTN
routes it to B, so only B can prove the call (story step 2).
"""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vipr.private_files import private_dir, write_private
from vipr.proxy.federation_tls import create_federation_ca, issue_federation_cert
from vipr.reload.ca import configuration_signer, create_ca, issue_node_cert, random_node_id
from vipr.reload.config_signature import sign_document, with_signers
from vipr.reload.overlay_config import (
    BootstrapNode,
    vipr_overlay_configuration,
    write_overlay_document,
)

__all__ = ["DEMO_TIMERS", "Layout", "ProviderSpec", "make_workdir"]

OVERLAY_NAME = "vipr-demo.example"

# pvp/overlay timers of the demo (DESIGN §5: "the demo uses seconds")
DEMO_TIMERS: dict[str, dict[str, object]] = {
    # min_delay > PSTN_SKEW + the time B's proxy takes to write its VCR: validating before the
    # terminating side has its VCR fails for good (a wrong password is never retried)
    "pvp": {"min_delay": "1s", "max_delay": "1500ms", "min_duration": "500ms", "quantum": "10s",
            "handshake_timeout": "10s",
            # every provider of the test network validates from 127.0.0.1: the per-address
            # limit (default 30/min) would count them all as one peer
            "max_attempts_per_minute": 600},
    "overlay": {"record_lifetime": "2m", "republish_interval": "30s"},
}
# RFC 6940 §10.7.4.3 stabilisation timers of the demo overlay (the document's defaults are
# 400 s / 3600 s): the ring converges in seconds after each join
DEMO_CHORD = {"chord_update_interval": 3.0, "chord_ping_interval": 10.0,
              "overlay_reliability_timer": 2.0}
PSTN_SKEW = "200ms"   # the PSTN is this much late towards provider B (less than quantum/2)


@dataclass(frozen=True)
class ProviderSpec:
    key: str            # "a", "b", "c"
    name: str
    domain: str
    vservice: str
    numbers: tuple[str, ...]     # config entries (numbers or blocks)
    pstn_numbers: tuple[str, ...]  # what the PSTN number plan routes to it
    phone_number: str


def default_providers(count: int = 10) -> list[ProviderSpec]:
    """A (US), B (UK), C (France); C also claims B's first number."""
    b_first = "+442071230000"
    return [
        ProviderSpec("a", "provider-a", "a.example.net", "00000000000000a1",
                     (f"+1408555[0000-{count - 1:04d}]",), (f"+1408555[0000-{count - 1:04d}]",),
                     "+14085550000"),
        ProviderSpec("b", "provider-b", "b.example.org", "00000000000000b2",
                     (f"+4420712[30000-{30000 + count - 1}]",),
                     (f"+4420712[30000-{30000 + count - 1}]",), b_first),
        ProviderSpec("c", "provider-c", "c.example.com", "00000000000000c3",
                     ("+33142[000000-000009]", b_first), ("+33142[000000-000009]",),
                     "+33142000000"),
    ]


@dataclass
class Ports:
    internal: int
    federation: int
    pstn: int
    overlay: int
    pvp: int
    phone: int


@dataclass
class Layout:
    root: Path
    providers: list[ProviderSpec]
    ports: dict[str, Ports]
    configs: dict[str, Path]
    nofed_configs: dict[str, Path]
    pstn_config: Path
    pstn_port: int
    tls_dir: Path
    tls_ca: Path
    b_number: str                       # B's number that A calls (C claims it too)
    tls_certs: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # key → cert, key
    # (key, role) → port of the role's Prometheus listener (make_workdir(metrics_port=...))
    metrics: dict[tuple[str, str], int] = field(default_factory=dict)

    def metrics_url(self, key: str, role: str) -> str:
        return f"http://127.0.0.1:{self.metrics[(key, role)]}/metrics"

    def spec(self, key: str) -> ProviderSpec:
        return next(p for p in self.providers if p.key == key)

    def phone_listen(self, key: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[key].phone)

    def proxy_internal(self, key: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[key].internal)

    def runtime_dir(self, key: str) -> Path:
        return self.root / "run" / key

    def database(self, key: str) -> Path:
        return self.root / "state" / key / "vipr.db"


# ---------------------------------------------------------------------- ports


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` binds for both TCP and UDP right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_base_port(span: int = 400, tries: int = 50) -> int:
    """A base port whose whole block [base, base+span) is free for TCP and UDP right now."""
    rng = random.SystemRandom()
    for _ in range(tries):
        base = rng.randrange(20000, 32000 - span, 100)   # below the ephemeral range
        if all(port_free(base + off) for off in _offsets(span)):
            return base
    raise OSError("no free block of loopback ports found")


def _offsets(span: int) -> list[int]:
    out = []
    for i in range(3):
        out += [i * 100 + o for o in (0, 1, 2, 4, 61, 90)]
    return [o for o in out if o < span] + [380]


def _ports(base: int, i: int) -> Ports:
    b = base + 100 * i
    return Ports(internal=b, federation=b + 1, pstn=b + 2, overlay=b + 4, pvp=b + 61,
                 phone=b + 90)


# ---------------------------------------------------------------------- certificates


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _make_overlay(root: Path, providers: list[ProviderSpec], ports: dict[str, Ports]) -> None:
    d = private_dir(root / "overlay")
    cert, key = create_ca(OVERLAY_NAME)
    (d / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(d / "ca.key", key)
    boot = [BootstrapNode("127.0.0.1", ports[providers[0].key].overlay)]
    conf = dataclasses.replace(vipr_overlay_configuration(OVERLAY_NAME, [cert], boot),
                               chord_update_interval=DEMO_CHORD["chord_update_interval"],
                               chord_ping_interval=DEMO_CHORD["chord_ping_interval"],
                               overlay_reliability_timer=DEMO_CHORD["overlay_reliability_timer"])
    # RFC 6940 §11.1: signed by the CA's configuration signer, checked by every node
    signer = configuration_signer(cert, key, OVERLAY_NAME)
    signer.write(d, "signer")
    (d / "overlay.xml").write_bytes(
        sign_document(write_overlay_document([with_signers(conf, signer)]), signer))
    # Node-IDs in descending provider order: overlays list a number's claims by dictionary
    # key (Node-ID first), so A tries C's false claim on B's number before B's (story step 2)
    ids = sorted((random_node_id() for _ in providers), reverse=True)
    for p, nid in zip(providers, ids, strict=True):
        creds = issue_node_cert(cert, key, OVERLAY_NAME, f"overlay@{p.domain}", [nid])
        creds.write(d, p.name)


# ---------------------------------------------------------------------- configs


def provider_config(p: ProviderSpec, ports: Ports, pstn_port: int, *, create: bool,
                    tls: dict[str, str] | None = None,
                    metrics: dict[str, int] | None = None) -> dict[str, Any]:
    """The YAML document of one provider (paths relative to the workdir); `metrics`: role →
    port of its Prometheus listener on 127.0.0.1 (`<role>.metrics.listen`)."""
    interfaces: dict[str, Any] = {
        "internal": {"listen": f"127.0.0.1:{ports.internal}", "transport": "udp",
                     "target": f"127.0.0.1:{ports.phone}"},
        "pstn": {"listen": f"127.0.0.1:{ports.pstn}", "transport": "udp",
                 "gateway": f"127.0.0.1:{pstn_port}"},
    }
    if tls is not None:        # cert, key, ca (paths relative to the workdir)
        interfaces["federation"] = {
            "listen": f"127.0.0.1:{ports.federation}", "transport": "tls",
            "advertise": f"sip:127.0.0.1:{ports.federation};transport=tls", "tls": tls,
        }
    doc: dict[str, Any] = {
        "provider": {"name": p.name, "domain": p.domain, "vservice": p.vservice},
        "numbers": list(p.numbers),
        "runtime_dir": f"run/{p.key}",
        "database": f"state/{p.key}/vipr.db",
        "logging": {"level": "info", "format": "text"},
        "overlay": {
            "configuration": "overlay/overlay.xml",
            "cert": f"overlay/{p.name}.crt", "key": f"overlay/{p.name}.key",
            "listen": f"127.0.0.1:{ports.overlay}", "create": create, "nodes": 1,
            **DEMO_TIMERS["overlay"],
        },
        "pvp": {"listen": f"127.0.0.1:{ports.pvp}", **DEMO_TIMERS["pvp"]},
        "proxy": {"interfaces": interfaces, "route_timeout": "3s"},
        "tickets": {"lifetime": "90d", "renewal_window": "30d", "rotate_interval": "30d"},
        "retention": {"vcr": "48h", "validation_log": "30d"},
    }
    for role, port in (metrics or {}).items():
        doc[role]["metrics"] = {"listen": f"127.0.0.1:{port}"}
    return doc


def pstn_config(providers: list[ProviderSpec], ports: dict[str, Ports], pstn_port: int,
                skew: str | None = PSTN_SKEW) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "listen": f"127.0.0.1:{pstn_port}",
        "providers": {p.name: {"trunk": f"127.0.0.1:{ports[p.key].pstn}",
                               "numbers": list(p.pstn_numbers)} for p in providers},
        "answer_timeout": "20s",
    }
    if skew:
        doc["skew"] = {"provider": providers[1].name, "delay": skew}
    return doc


def _dump(path: Path, doc: dict[str, Any], comment: str) -> Path:
    path.write_text(f"# {comment}\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def make_workdir(root: Path, *, base_port: int | None = None,
                 providers: list[ProviderSpec] | None = None,
                 metrics_port: Callable[[], int] | None = None) -> Layout:
    """Write everything the demo needs under `root` (created; existing files overwritten).

    `metrics_port`: a source of free ports (tests lease them): every role of every provider
    then serves Prometheus metrics on 127.0.0.1 at one (`Layout.metrics`)."""
    root = private_dir(root.resolve(), warn=False)   # keys, state and sockets below
    providers = providers or default_providers()
    base = base_port if base_port is not None else pick_base_port()
    ports = {p.key: _ports(base, i) for i, p in enumerate(providers)}
    pstn_port = base + 380
    _make_overlay(root, providers, ports)
    tls = private_dir(root / "tls")
    ca_cert, ca_key = create_federation_ca(tls)
    configs: dict[str, Path] = {}
    nofed: dict[str, Path] = {}
    certs: dict[str, tuple[Path, Path]] = {}
    metrics: dict[tuple[str, str], int] = {}
    if metrics_port is not None:
        metrics = {(p.key, role): metrics_port() for p in providers
                   for role in ("overlay", "pvp", "proxy")}
    for i, p in enumerate(providers):
        mp = {role: port for (k, role), port in metrics.items() if k == p.key}
        cp, kp = issue_federation_cert(ca_cert, ca_key, p.domain, tls)
        certs[p.key] = (cp, kp)
        files = {"cert": str(cp.relative_to(root)), "key": str(kp.relative_to(root)),
                 "ca": str(ca_cert.relative_to(root))}
        doc = provider_config(p, ports[p.key], pstn_port, create=i == 0, tls=files, metrics=mp)
        configs[p.key] = _dump(root / f"{p.name}.yaml", doc,
                               f"VIPR demo: {p.name} ({p.domain}), written by vipr demo")
        doc = provider_config(p, ports[p.key], pstn_port, create=i == 0, metrics=mp)
        nofed[p.key] = _dump(root / f"{p.name}-nofed.yaml", doc,
                             f"VIPR demo: {p.name} without its federation listener")
    pstn_path = _dump(root / "pstn.yaml", pstn_config(providers, ports, pstn_port),
                      "VIPR demo: PSTN simulator number plan")
    for sub in ("logs", *(f"run/{p.key}" for p in providers),
                *(f"state/{p.key}" for p in providers)):
        private_dir(root / sub)
    b_number = providers[1].phone_number if len(providers) > 1 else providers[0].phone_number
    return Layout(root, providers, ports, configs, nofed, pstn_path, pstn_port, tls, ca_cert,
                  b_number, certs, metrics)
