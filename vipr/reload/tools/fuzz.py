"""Decoder entry points and a mutation fuzzer (shared by tests and bench/reload_codec.py)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from vipr.reload.core.framing import FramingState
from vipr.reload.wire.bodies import (
    ChordLeaveData,
    ErrorResponse,
    MessageCode,
    decode_body,
)
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.envelope import decode_header, decode_message
from vipr.reload.wire.storage_bodies import DataModel

FUZZ_MODELS = {1: DataModel.SINGLE, 2: DataModel.ARRAY, 3: DataModel.DICTIONARY,
               0xF0000101: DataModel.DICTIONARY}


def _framing(data: bytes) -> object:
    return FramingState(max_message_size=5000).receive(data, 0.0)


def entry_points() -> dict[str, Callable[[bytes], object]]:
    """Every public decoder: name → function(bytes)."""
    eps: dict[str, Callable[[bytes], object]] = {
        "message": decode_message,
        "header": decode_header,
        "chord_leave_data": ChordLeaveData.decode,
        "unknown_kinds": lambda d: ErrorResponse(12, d).decode_unknown_kinds(),
        "framing": _framing,
    }
    for code in MessageCode:
        eps[f"body_{code.name.lower()}"] = _body_decoder(int(code))
    return eps


def _body_decoder(code: int) -> Callable[[bytes], object]:
    def fn(data: bytes) -> object:
        return decode_body(code, data, FUZZ_MODELS)

    return fn


def mutations(seeds: list[bytes], rng: random.Random) -> Iterator[bytes]:
    """Random bytes, bit flips, truncations, splices and length-field smashes of seeds."""
    while True:
        choice = rng.random()
        seed = rng.choice(seeds) if seeds else b""
        if choice < 0.2 or not seed:
            yield rng.randbytes(rng.randrange(0, 200))
        elif choice < 0.6:
            b = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            yield bytes(b)
        elif choice < 0.75:
            yield seed[: rng.randrange(len(seed))]
        elif choice < 0.9:
            b = bytearray(seed)
            i = rng.randrange(len(b))
            b[i : i + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff", b"\x80\x00"])
            yield bytes(b)
        else:
            other = rng.choice(seeds)
            yield seed[: rng.randrange(len(seed))] + other[rng.randrange(len(other)) :]


def fuzz(fn: Callable[[bytes], object], seeds: list[bytes], n: int, seed: int = 1) -> int:
    """Run n inputs; return how many decoded. Any exception but ReloadDecodeError propagates."""
    rng = random.Random(seed)
    ok = 0
    gen = mutations(seeds, rng)
    for _ in range(n):
        data = next(gen)
        try:
            fn(data)
            ok += 1
        except ReloadDecodeError:
            pass
    return ok
