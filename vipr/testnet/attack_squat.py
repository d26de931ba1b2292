"""RELOAD squatting for the attack suite (issue 13, defect 3): an enrolled member stores many
claims under another provider's number so that the number's FetchAns grows past the overlay's
max-message-size and, on today's code, the lookup fails and the real claim is not found.

The member is the rogue certificate of the attack layout ("provider-m", attack_net.py): a real
RELOAD node in this process joins the ring from 127.0.0.9 and stores `entries` dictionary
entries (its own Node-ID, a different VService-ID each, RFC 6940 §7.2.3) under N, COPY1N and
COPY2N of a fresh number of B. A legitimate call and validation of that number follow.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from vipr.ipc import IpcError
from vipr.reload.aio.node import ReloadNode
from vipr.reload.aio.storage_service import StorageService
from vipr.reload.aio.vipr_usage import ViprPublisher
from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.storage import DataStore
from vipr.reload.core.topology import to_int
from vipr.reload.overlay_config import load_overlay_config
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.security import NodeCredentials, cert_node_ids, load_certificate
from vipr.reload.wire.vipr_kind import resource_ids
from vipr.testnet.attack_flood import ATTACK_SOURCES
from vipr.testnet.attack_net import AttackNet

__all__ = ["squat"]

SQUAT_SOURCE = ATTACK_SOURCES[-1]


def _responsible(resource: bytes, nodes: list[bytes]) -> bytes:
    """RFC 6940 §10.3: a resource belongs to the first node at or after it on the ring."""
    r = to_int(resource)
    ring = sorted(nodes, key=to_int)
    return next((n for n in ring if to_int(n) >= r), ring[0])


def _node_ids(anet: AttackNet) -> dict[str, tuple[bytes, ...]]:
    d = anet.lay.root / "overlay"
    return {p.key: tuple(cert_node_ids(load_certificate((d / f"{p.name}.crt").read_bytes())))
            for p in anet.lay.providers}


def _victim(anet: AttackNet, rogue: bytes, tries: int = 40) -> str:
    """A fresh number of B none of whose three copies (N, COPY1N, COPY2N) A's own node holds:
    A's lookups then need FetchAns messages over a link (a local fetch has no size limit)."""
    ids = _node_ids(anet)
    nodes = [n for v in ids.values() for n in v] + [rogue]
    own = set(ids[anet.a])
    number = anet.fresh_number()
    for _ in range(tries):
        if all(_responsible(r, nodes) not in own for r in resource_ids(number)):
            return number
        number = anet.fresh_number()
    return number


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def squat(anet: AttackNet, during: Any, *, entries: int = 31, lifetime: float = 300.0,
                legit: bool = True) -> dict[str, Any]:
    """Join as the rogue member, store `entries` claims under a fresh number of B, look it up
    from A, then (`legit`) make a legitimate call to that very number: it must still
    validate against B."""
    d = anet.lay.root / "overlay"
    crt, key = d / "provider-m.crt", d / "provider-m.key"
    conf = load_overlay_config(d / "overlay.xml")
    creds = NodeCredentials.load(crt, key, overlay=conf.instance_name)
    trust = conf.trust_store()
    ctx = ReloadContext(conf.instance_name, creds, trust,
                        configuration_sequence=conf.sequence, initial_ttl=conf.initial_ttl,
                        models=conf.models())
    svc = StorageService(DataStore(conf.kinds, trust))
    boot = [("127.0.0.1", anet.lay.ports[anet.a].overlay)]
    node = ReloadNode(context=ctx, creds_files=(crt, key),
                      listen=(SQUAT_SOURCE, _free_port(SQUAT_SOURCE)), bootstrap=boot,
                      timers=ChordTimers.from_config(conf), storage=svc)
    victim = _victim(anet, creds.node_id)
    stored = 0
    out: dict[str, Any] = {"victim": victim, "entries": entries}
    t0 = time.monotonic()
    try:
        await node.start()
        svc.attach(node)
        for i in range(entries):   # one member, many VService-IDs: one entry each
            pub = ViprPublisher(node, f"{0xA77AC000 + i:016x}", lifetime=lifetime)
            stored += await pub.publish(victim)
        out["stored"] = stored
        out["store_s"] = round(time.monotonic() - t0, 1)
        try:
            ans = await anet.net.ipc(anet.a, "overlay", "lookup", {"number": victim},
                                     timeout=20.0)
            claims = ans.get("claims", [])
            out["lookup_claims"] = len(claims)
            out["lookup_error"] = None
        except IpcError as exc:
            claims, out["lookup_claims"], out["lookup_error"] = [], 0, str(exc)
        b_ids = {n.hex() for n in _node_ids(anet)[anet.b]}
        out["b_claim_found"] = any(str(c.get("node_id", "")).lower() in b_ids for c in claims)
        if legit:
            r = await anet.legit(victim)
            out["victim_call_ok"], out["victim_validation_ok"] = r.call_ok, r.validation_ok
            out["victim_detail"] = r.detail
        await during()
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
        with contextlib.suppress(Exception):
            await svc.close()
    out["inputs"] = {f"{anet.b}.overlay:store": stored}
    return out
