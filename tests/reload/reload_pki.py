"""Shared RELOAD test PKI: one CA, node certificates, and the broken ones the tests reject."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from vipr.reload import ca
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.security import NodeCredentials, TrustStore

OVERLAY = "vipr-test.example.org"


@dataclass
class Pki:
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    other_ca_cert: x509.Certificate
    node_a: NodeCredentials
    node_b: NodeCredentials
    node_multi: NodeCredentials
    foreign: NodeCredentials  # issued by another CA
    expired: NodeCredentials  # issued by our CA, validity in the past
    files: dict[str, tuple[Path, Path]]

    def trust(self) -> TrustStore:
        return TrustStore([self.ca_cert], overlay=OVERLAY)

    def context(self, creds: NodeCredentials) -> ReloadContext:
        return ReloadContext(OVERLAY, creds, self.trust(), configuration_sequence=1)


def make_pki(directory: Path) -> Pki:
    ca_cert, ca_key = ca.create_ca(OVERLAY)
    other_cert, other_key = ca.create_ca(OVERLAY)
    node_a = ca.issue_node_cert(ca_cert, ca_key, OVERLAY, "a@provider-a.example")
    node_b = ca.issue_node_cert(ca_cert, ca_key, OVERLAY, "b@provider-b.example")
    multi = ca.issue_node_cert(ca_cert, ca_key, OVERLAY, "m@provider-m.example", 3,
                               key=node_a.key)
    foreign = ca.issue_node_cert(other_cert, other_key, OVERLAY, "x@evil.example",
                                 key=node_b.key)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = ca.issue_node_cert(ca_cert, ca_key, OVERLAY, "old@provider-a.example",
                                 key=node_a.key, not_before=past,
                                 not_after=past + dt.timedelta(days=1))
    d = directory
    files = {name: c.write(d, name) for name, c in
             [("a", node_a), ("b", node_b), ("foreign", foreign), ("expired", expired)]}
    return Pki(ca_cert, ca_key, other_cert, node_a, node_b, multi, foreign, expired, files)
