"""The commented provider configuration `vipr init-provider` writes (README "Running one
provider"); config/provider-a.yaml is this template rendered for provider A (a test checks).

The file names it gives are the ones the README's commands write: `vipr ca issue --name NAME`
→ overlay/NAME.crt/.key, `vipr tls ca --out fed/` → fed/ca.pem, `vipr tls issue --domain DOMAIN
--out tls/` → tls/DOMAIN.pem/.key.
"""

from __future__ import annotations

import json
import secrets
from string import Template

__all__ = ["render_example"]

_TEMPLATE = Template("""\
# Provider configuration ($name), written by `vipr init-provider`; it documents every key.
# Relative paths resolve against this file. Durations: integer seconds, or a number with
# s/m/h/d ("30s", "48h", "90d"). Addresses: "host:port", IPv6 as "[::1]:5060".
# `vipr check-config FILE` checks it and the files it names.
provider:
  name: $name
  domain: $domain$domain_pad# SIP domain; the dNSName of its federation TLS certificate
  vservice: "$vservice"     # 16 hex digits (quote it: YAML would read it as a number)

# E.164 numbers this provider serves; a block like "+1408555[0000-0999]" is 1000 numbers,
# expanded lazily
numbers:
$numbers
runtime_dir: $runtime_dir$run_pad# Unix sockets overlay.sock, pvp.sock, proxy.sock
database: $database$db_pad# SQLite (WAL), shared by all roles of this provider
# database: postgresql://vipr@db.example.net/vipr   # several hosts: one PostgreSQL (DESIGN §12)

logging:
  level: info                      # debug|info|warning|error
  format: text                     # text|json (one JSON object per line)

overlay:
  configuration: overlay/overlay.xml   # RFC 6940 overlay configuration document (vipr ca init)
  cert: overlay/$name.crt$cert_pad# node certificate (vipr ca issue --name $name)
  key: overlay/$name.key$key_pad# its key (0600)
  listen: "127.0.0.1:6084"         # RELOAD link (TLS over TCP); node i listens on port + i
  # true on the one node that creates a new overlay (the first provider; its address is the
  # bootstrap node in overlay.xml); false joins through the bootstrap nodes and retries until
  # one answers
  create: $create
  nodes: null                      # RELOAD nodes to run; null = ceil(numbers / numbers_per_node)
  numbers_per_node: 10000
  record_lifetime: 24h             # lifetime of stored claims
  republish_interval: 12h
  replication_hold_down: 30s       # after a neighbor change, wait this long before re-replicating
  # metrics:                       # Prometheus GET /metrics of this role (DESIGN §13); off
  #   listen: "127.0.0.1:9101"     # unless set; a bare port (9101) means 127.0.0.1
  # debug:                         # off by default; a WARNING is logged while on (DESIGN §13)
  #   capture:
  #     pcap: /var/lib/vipr/$name/overlay.pcap   # decrypted RELOAD traffic, for tshark
  #     keylog: /var/lib/vipr/$name/tls.keys     # TLS session keys (NSS key log format)

pvp:
  listen: "127.0.0.1:7061"         # PVP server (TCP, then TLS-SRP)
  min_delay: 30s                   # validation starts a random delay after the call
  max_delay: 1h
  min_duration: 5s                 # shorter calls are not used
  quantum: 10s                     # Q: time rounding grid
  max_attempts_per_minute: 30      # per remote address
  max_vcr_failures: 3              # then the VCR is burned
  handshake_timeout: 10s           # one validation connection's whole life, each side
  allow_domains: []                # empty: every domain not denied
  deny_domains: []
  # metrics:
  #   listen: "127.0.0.1:9102"

proxy:
  interfaces:
    internal:                      # the provider's own call agent / phones
      listen: "127.0.0.1:5060"
      transport: udp
      target: "127.0.0.1:5090"     # where calls for our own numbers are delivered
    pstn:                          # trunk to the PSTN gateway
      listen: "127.0.0.1:5062"
      transport: udp
      gateway: "127.0.0.1:5080"
    federation:                    # SIP/TLS from and to other VIPR providers (mutual TLS)
      listen: "127.0.0.1:5061"
      transport: tls
      advertise: "sip:127.0.0.1:5061;transport=tls"   # the route handed out in tickets' valinfo
      tls:
        cert: tls/$domain.pem$tls_cert_pad# vipr tls issue --domain $domain --out tls/
        key: tls/$domain.key
        ca: fed/ca.pem             # the CA of the federation's certificates (vipr tls ca)
  route_timeout: 4s                # no final answer from a learned route in this time → PSTN
  max_call_duration: 12h           # answered, no BYE this long → VCR "unterminated" (no PVP)
  vcr_spool_max: 250000            # PostgreSQL away: VCR changes kept on disk, at most this many
  limits:                          # what an unauthenticated peer may hold (DESIGN §10)
    max_connections: 512           # per TCP/TLS interface; more are closed at accept
    max_connections_per_address: 32   # from one source (IPv4 address, IPv6 /64)
    handshake_timeout: 5s          # TLS handshake, or (TCP) first whole message, within this
    max_message_size: 65535        # bytes; a larger request → 513, then the stream closes
    max_headers: 256               # header fields in one message; more → 400
    max_vias: 70                   # Via entries in one message; more → 400
  # metrics:                       # also served on the hook's /metrics when it is enabled
  #   listen: "127.0.0.1:9103"

tickets:
  lifetime: 90d                    # route and ticket lifetime (numbers get reassigned)
  renewal_window: 30d              # inside it, the next call goes via the PSTN on purpose
  rotate_interval: 30d

retention:
  vcr: 48h
  validation_log: 30d

# DESIGN §11: numbers from a PBX or an edge (R-URI, To, P-Asserted-Identity, From, hook fields,
# imported CDR columns) are normalised to E.164 before routing or storing. Without a dialplan
# only "+…" and "00…" are numbers; uncomment for national numbers (NANP values shown).
# dialplan:
#   country_code: "1"              # national numbers get this country code
#   national_prefix: "1"           # trunk prefix of national numbers ("0" in most countries)
#   international_prefix: "011"    # exit code ("00" in most countries)
""")

_COMMENT_COLUMN = 35


def _pad(text_before: str) -> str:
    """Spaces that put the comment after `text_before` in the template's comment column."""
    return " " * max(1, _COMMENT_COLUMN - len(text_before))


def render_example(name: str, domain: str, numbers: list[str], *, create: bool,
                   vservice: str | None = None, runtime_dir: str | None = None,
                   database: str | None = None) -> str:
    """The commented configuration for one provider. `vservice` None: 16 random hex digits;
    `runtime_dir`/`database` None: run/NAME and state/NAME/vipr.db beside the file."""
    vs = vservice if vservice is not None else secrets.token_hex(8)
    rundir = runtime_dir if runtime_dir is not None else f"run/{name}"
    db = database if database is not None else f"state/{name}/vipr.db"
    listed = "".join(f"  - {json.dumps(n)}\n" for n in numbers)
    return _TEMPLATE.substitute(
        name=name, domain=domain, vservice=vs, numbers=listed, runtime_dir=rundir,
        database=db,
        create="true" if create else "false",
        domain_pad=_pad(f"  domain: {domain}"),
        run_pad=_pad(f"runtime_dir: {rundir}"),
        db_pad=_pad(f"database: {db}"),
        cert_pad=_pad(f"  cert: overlay/{name}.crt"),
        key_pad=_pad(f"  key: overlay/{name}.key"),
        tls_cert_pad=_pad(f"        cert: tls/{domain}.pem"),
    )
