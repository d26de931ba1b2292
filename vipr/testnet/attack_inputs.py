"""Hostile inputs for the attack suite (issue 13): bytes only, no sockets, no clocks.

SIP: the RFC 4475/5118 torture corpus when it is present, random mutations of a valid INVITE,
oversized requests (body, header count, Via count), and the datagrams of defect 1 (an
unparseable request whose top Via host holds a NUL or bytes that are not UTF-8).
RELOAD: framed messages (RFC 6940 §5.6.3.1) with random or mutated contents.
PVP: garbage in place of a TLS ClientHello.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from pathlib import Path

from vipr.reload.core.framing import FRAME_ACK, encode_data_frame
from vipr.reload.tools.fuzz import mutations as reload_mutations

__all__ = [
    "crash_datagrams", "invite", "oversized_requests", "reload_frames", "sip_mutations",
    "torture_corpus", "tls_garbage", "UNSERVED",
]

UNSERVED = "+15559990000"  # a number nobody serves: a parsed INVITE ends in 404/403/503


def torture_dir() -> Path | None:
    """The RFC 4475/5118 corpus: `$VIPR_SIP_TORTURE`, else the repository's test vectors
    (tests/vectors/sip-torture, as tests/test_sip_torture.py reads them); None if neither."""
    env = os.environ.get("VIPR_SIP_TORTURE")
    repo = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "sip-torture"
    for d in ([Path(env)] if env else []) + [repo]:
        if (d / "INDEX.tsv").is_file():
            return d
    return None


def torture_corpus() -> list[bytes]:
    """Every message of the corpus (valid and invalid alike), or [] when it is missing."""
    d = torture_dir()
    if d is None:
        return []
    with open(d / "INDEX.tsv", newline="") as f:
        names = [row["file"] for row in csv.DictReader(f, delimiter="\t")]
    return [(d / n).read_bytes() for n in names if (d / n).is_file()]


def _token(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def invite(transport: str, src: str, dst: tuple[str, int], rng: random.Random, *,
           callee: str = UNSERVED, extra: list[str] | None = None,
           vias: int = 1, body: bytes = b"v=0\r\n") -> bytes:
    """A well-formed INVITE (RFC 3261 §8.1.1) from `src` to `dst` over `transport`."""
    host, port = dst
    lines = [f"INVITE sip:{callee}@{host}:{port} SIP/2.0"]
    for i in range(vias):
        lines.append(f"Via: SIP/2.0/{transport.upper()} {src}:5060;branch=z9hG4bK{_token(rng)}"
                     f"{i}")
    lines += [
        "Max-Forwards: 70",
        f"From: <sip:+14085550009@{src}>;tag={_token(rng)}",
        f"To: <sip:{callee}@{host}>",
        f"Call-ID: {_token(rng, 16)}@attack",
        "CSeq: 1 INVITE",
        f"Contact: <sip:+14085550009@{src}:5060>",
        "Content-Type: application/sdp",
        *(extra or []),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sip_mutations(seed: bytes, rng: random.Random) -> Iterator[bytes]:
    """Bit flips, truncations, duplicated/deleted lines, NULs and huge values of `seed`."""
    lines = seed.split(b"\r\n")
    while True:
        c = rng.random()
        if c < 0.25:
            b = bytearray(seed)
            for _ in range(rng.randrange(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            yield bytes(b)
        elif c < 0.4:
            yield seed[: rng.randrange(len(seed))]
        elif c < 0.55:
            ls = list(lines)
            i = rng.randrange(1, max(2, len(ls) - 2))
            if rng.random() < 0.5:
                del ls[i]
            else:
                ls.insert(i, ls[i] * rng.randrange(1, 4))
            yield b"\r\n".join(ls)
        elif c < 0.7:
            ls = list(lines)
            i = rng.randrange(len(ls))
            ls[i] = ls[i][: rng.randrange(len(ls[i]) + 1)] + rng.choice(
                [b"\x00", b"\xff\xfe", b"\r", b"\n", b"%00", b";;;", b"<<>>"]) + ls[i]
            yield b"\r\n".join(ls)
        elif c < 0.85:
            ls = list(lines)
            i = rng.randrange(len(ls))
            ls[i] = ls[i] + b"x" * rng.choice([100, 1000, 10000])
            yield b"\r\n".join(ls)
        else:
            yield rng.randbytes(rng.randrange(1, 1500))


def crash_datagrams(src: str, dst: tuple[str, int]) -> list[bytes]:
    """Defect 1: unparseable requests (a bad Content-Length; everything else readable, so a
    stateless 400 is due) whose top Via host is not a usable name (NUL, not UTF-8, …)."""
    out = []
    for host in (b"exa\x00mple.com", b"\xff\xfe\xfd", b"xn--\xc3(", b"a" * 300 + b"\x00",
                 b"\x00"):
        out.append(b"INVITE sip:" + UNSERVED.encode() + b"@" + dst[0].encode() +
                   b" SIP/2.0\r\nVia: SIP/2.0/UDP " + host + b":5060;branch=z9hG4bKx\r\n"
                   b"Max-Forwards: 70\r\nFrom: <sip:x@" + src.encode() + b">;tag=1\r\n"
                   b"To: <sip:y@b>\r\nCall-ID: crash\r\nCSeq: 1 INVITE\r\n"
                   b"Content-Length: -999\r\n\r\n")
    return out


def oversized_requests(transport: str, src: str, dst: tuple[str, int],
                       rng: random.Random, *, stream: bool) -> dict[str, bytes]:
    """The defect-2 shapes: 5,000 headers (~60 KB), 800 Vias, and (stream only) a 70 KB
    body over `max_message_size` (a datagram cannot carry it)."""
    out = {
        "headers_5000": invite(transport, src, dst, rng,
                               extra=[f"X-H{i}: v" for i in range(5000)]),
        "vias_800": invite(transport, src, dst, rng, vias=800),
    }
    if stream:
        out["body_70k"] = invite(transport, src, dst, rng, body=b"a=x\r\n" * 14000)
    return out


def tls_garbage(rng: random.Random) -> bytes:
    """Not a TLS record (or a record header announcing a huge length)."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randrange(1, 2000))
    return bytes([0x16, 0x03, 0x01, 0xFF, 0xFF]) + rng.randbytes(rng.randrange(0, 500))


def reload_frames(rng: random.Random) -> Iterator[bytes]:
    """RFC 6940 §5.6.3.1 frames: data frames around random or mutated RELOAD messages
    (0xd2454c4f token first, §6.3.2.1), ACK frames, and broken frame headers."""
    seed = (bytes.fromhex("d2454c4f") + bytes(4) + (0).to_bytes(4, "big") + bytes([100, 0]) +
            bytes(26))
    muts = reload_mutations([seed, encode_data_frame(1, seed)], rng)
    seq = 1
    while True:
        c = rng.random()
        seq += 1
        if c < 0.5:
            yield encode_data_frame(seq, next(muts))
        elif c < 0.7:
            yield bytes([FRAME_ACK]) + rng.randbytes(8)
        elif c < 0.85:  # a frame header announcing more than will ever come
            yield bytes([0x80]) + seq.to_bytes(4, "big") + b"\xff\xff\xff" + rng.randbytes(20)
        else:
            yield next(muts)
