"""RELOAD codec benchmark: encode+decode msgs/s, signed msgs/s vs raw RSA-2048 signing.

Baseline (same run): `cryptography` RSA-2048 PKCS#1 v1.5 SHA-256 signatures/s over a 64-byte
input. Target: signed messages/s >= 0.8 x raw signatures/s. Medians of several rounds.
`--fuzz N` additionally runs N mutated inputs per decoder entry point (the 100k fuzz run).

    python bench/reload_codec.py --quick        # prints one JSON line last
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from vipr.reload.ca import create_ca, issue_node_cert
from vipr.reload.wire import bodies as m
from vipr.reload.wire import storage_bodies as sc
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.envelope import MessageContents, decode_message, encode_message
from vipr.reload.wire.forwarding import (
    ForwardingHeader,
    NodeDestination,
    ResourceDestination,
    resource_id,
)
from vipr.reload.wire.security import TrustStore, sign_stored_data

OVERLAY = "bench.example.org"


def rate(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Median operations per second over `rounds` runs of `n` calls."""
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append(n / (time.perf_counter() - t))
    return statistics.median(out)


def paired(base: Callable[[], object], subject: Callable[[], object], batch: int,
           pairs: int) -> list[tuple[float, float]]:
    """(baseline ops/s, subject ops/s) for `pairs` back-to-back batches of `batch` calls."""
    out = []
    for _ in range(pairs):
        out.append((rate(base, batch, 1), rate(subject, batch, 1)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts (CI)")
    ap.add_argument("--fuzz", type=int, default=0, help="fuzz inputs per decoder entry point")
    args = ap.parse_args()
    n_codec, n_sign, rounds = (2000, 150, 5) if args.quick else (20000, 1000, 7)

    ca_cert, ca_key = create_ca(OVERLAY)
    a = issue_node_cert(ca_cert, ca_key, OVERLAY, "a@bench.example")
    b = issue_node_cert(ca_cert, ca_key, OVERLAY, "b@bench.example")
    trust = TrustStore([ca_cert], overlay=OVERLAY)
    ctx = ReloadContext(OVERLAY, a, trust)
    rx = ReloadContext(OVERLAY, b, trust)

    rid = resource_id("+14085551234")
    key = (a.node_id.hex() + "+0011223344556677").encode()
    val = sc.DictionaryEntry(key, sc.DataValue(True, bytes.fromhex("20080010") + a.node_id))
    sd = sign_stored_data(a, rid, sc.KIND_VIPR, 1_700_000_000_000, 86400, val)
    store = sc.StoreReq(rid, 0, (sc.StoreKindData(sc.KIND_VIPR, 0, (sd,)),))
    _, store_bytes = ctx.request(store, (ResourceDestination(rid),))
    store_msg = decode_message(store_bytes)
    sec = store_msg.security.encode()
    dests = (ResourceDestination(rid),)

    def codec_roundtrip() -> None:
        # encode (header + contents + an existing security block), then decode fully
        data = _encode_unsigned()
        msg = decode_message(data)
        m.decode_body(msg.code, msg.contents.body)

    hdr = ForwardingHeader(overlay=ctx.overlay_id, transaction_id=1, destination_list=dests)

    def _encode_unsigned() -> bytes:
        return encode_message(hdr, MessageContents(m.MessageCode.STORE_REQ,
                                                   store.encode()).encode(), sec)

    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    blob = bytes(64)
    to_b = (NodeDestination(b.node_id),)
    _, ping = ctx.request(m.PingReq(), to_b)
    sig = a.key.sign(blob, pkcs1, sha256)
    pub = a.cert.public_key()

    codec = rate(codec_roundtrip, n_codec, rounds)
    # Interleave baseline and subject in small batches so machine load hits both alike; the
    # ratio is taken per batch pair and the median reported.
    pairs_sign = paired(lambda: a.key.sign(blob, pkcs1, sha256),
                        lambda: ctx.request(m.PingReq(), to_b), 10, n_sign // 10 * rounds // 2)
    pairs_verify = paired(lambda: pub.verify(sig, blob, pkcs1, sha256),  # type: ignore
                          lambda: rx.decode(ping), 40, n_sign // 10 * rounds // 2)
    raw_sign = [x for x, _ in pairs_sign]
    signed = [y for _, y in pairs_sign]
    raw_verify = [x for x, _ in pairs_verify]
    verified = [y for _, y in pairs_verify]
    res = {
        "bench": "reload_codec",
        "quick": args.quick,
        "codec_store_encode_decode_msgs_per_s": round(codec),
        "raw_rsa2048_sign_per_s": round(statistics.median(raw_sign)),
        "signed_ping_msgs_per_s": round(statistics.median(signed)),
        "signed_ratio": round(statistics.median(y / x for x, y in pairs_sign), 3),
        "raw_rsa2048_verify_per_s": round(statistics.median(raw_verify)),
        "verified_ping_msgs_per_s": round(statistics.median(verified)),
        "verify_ratio": round(statistics.median(y / x for x, y in pairs_verify), 3),
        "signed_target": 0.8,
    }
    res["signed_target_met"] = res["signed_ratio"] >= 0.8
    if args.fuzz:
        from vipr.reload.tools.fuzz import entry_points, fuzz

        t = time.perf_counter()
        from vipr.reload.core.framing import encode_data_frame
        from vipr.reload.tools.pcap import sample_messages

        msgs = [data for _, data in sample_messages(ctx, rx)]
        bodies: dict[int, list[bytes]] = {}
        for data in msgs:
            dm = decode_message(data)
            bodies.setdefault(dm.code, []).append(dm.contents.body)
        total = 0
        for name, fn in sorted(entry_points().items()):
            if name.startswith("body_"):
                seeds = bodies.get(int(m.MessageCode[name[5:].upper()]), [b""])
            elif name == "framing":
                seeds = [encode_data_frame(i, d) for i, d in enumerate(msgs)]
            else:
                seeds = msgs
            fuzz(fn, seeds, args.fuzz, seed=len(name))
            total += args.fuzz
        res["fuzz_inputs"] = total
        res["fuzz_only_decode_errors"] = True
        res["fuzz_seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
