"""Tickets (DESIGN §6): round trips, every rejection reason, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipr.tickets import (
    MAX_TICKET_LEN,
    TicketError,
    TicketVerifier,
    decode_ticket,
    mint_ticket,
)


@dataclass(frozen=True)
class Key:
    epoch: int
    secret: bytes


K1 = Key(1, b"\x01" * 32)
K2 = Key(2, b"\x02" * 32)
NOW = 1_800_000_000.0
NUM = "+14085551234"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(tok: str) -> bytes:
    return base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))


def verify(token: str | None, *, number: str = NUM, domain: str | None = "a.example.net",
           now: float = NOW + 60, keys: tuple[Key, ...] = (K1, K2)) -> str:
    return TicketVerifier(keys).verify(token, number=number, peer_domain=domain, now=now).reason


def test_mint_decode_fields() -> None:
    tok = mint_ticket(K1, NUM, "A.Example.NET", NOW, 90 * 86400, nonce=b"n" * 16)
    t = decode_ticket(tok)
    assert (t.version, t.epoch, t.issued, t.expires) == (1, 1, int(NOW), int(NOW) + 90 * 86400)
    assert (t.number, t.domain, t.nonce) == (NUM, "a.example.net", b"n" * 16)
    assert "=" not in tok and "+" not in tok and "/" not in tok


def test_valid_ticket_accepted_case_insensitive_domain() -> None:
    tok = mint_ticket(K2, NUM, "a.example.net", NOW, 3600)
    verdict = TicketVerifier([K1, K2]).verify(tok, number=NUM, peer_domain="A.example.net",
                                              now=NOW + 1)
    assert verdict.ok and verdict.reason == "ok" and verdict.ticket is not None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("not a ticket!", "bad-base64"),
        ("abcde", "bad-base64"),
        ("A" * 5000, "garbage"),
    ],
)
def test_undecodable(token: str | None, reason: str) -> None:
    assert verify(token) == reason


def test_every_reason_in_order() -> None:
    good = mint_ticket(K1, NUM, "a.example.net", NOW, 3600)
    raw = unb64(good)
    assert verify(good) == "ok"
    assert verify(b64(raw[:20])) == "truncated"
    assert verify(b64(raw[:-1])) == "truncated"
    assert verify(b64(raw + b"x")) == "garbage"
    assert verify(b64(b"\x02" + raw[1:])) == "bad-version"
    assert verify(good, keys=(K2,)) == "unknown-epoch"
    flipped = raw[:-1] + bytes([raw[-1] ^ 1])
    assert verify(b64(flipped)) == "bad-mac"
    tampered = raw[:30] + bytes([raw[30] ^ 1]) + raw[31:]
    assert verify(b64(tampered)) == "bad-mac"
    assert verify(good, now=NOW + 3600) == "expired"
    assert verify(good, number="+14085550000") == "number-mismatch"
    assert verify(good, domain="c.example.org") == "domain-mismatch"
    assert verify(good, domain=None) == "domain-mismatch"


def test_wrong_key_same_epoch_is_bad_mac() -> None:
    tok = mint_ticket(Key(1, os.urandom(32)), NUM, "a.example.net", NOW, 3600)
    assert verify(tok) == "bad-mac"


@given(
    epoch=st.integers(0, 255),
    number=st.text(min_size=1, max_size=60).filter(lambda s: 0 < len(s.encode()) <= 255),
    domain=st.text(min_size=1, max_size=60).filter(lambda s: 0 < len(s.encode()) <= 255),
    now=st.integers(0, 2**40),
    lifetime=st.integers(1, 2**30),
)
@settings(max_examples=200)
def test_roundtrip(epoch: int, number: str, domain: str, now: int, lifetime: int) -> None:
    key = Key(epoch, b"k" * 32)
    tok = mint_ticket(key, number, domain, now, lifetime)
    t = decode_ticket(tok)
    assert (t.epoch, t.number, t.domain, t.expires - t.issued) == (
        epoch, number, domain.lower(), lifetime)
    v = TicketVerifier([key]).verify(tok, number=number, peer_domain=domain, now=now)
    assert v.ok or v.reason == "domain-mismatch"  # str.lower() is not idempotent on all text


@given(st.binary(max_size=MAX_TICKET_LEN + 10))
@settings(max_examples=200)
def test_fuzz_random_bytes_only_ticket_error(raw: bytes) -> None:
    with contextlib.suppress(TicketError):
        decode_ticket(b64(raw))
    assert not TicketVerifier([K1]).verify(b64(raw), number=NUM, peer_domain="x", now=NOW).ok


@given(st.text(max_size=300))
@settings(max_examples=200)
def test_fuzz_random_text_only_ticket_error(text: str) -> None:
    with contextlib.suppress(TicketError):
        decode_ticket(text)


@given(st.integers(0, 10_000), st.integers(0, 7))
@settings(max_examples=300)
def test_bit_flips_never_accepted(pos_seed: int, bit: int) -> None:
    raw = bytearray(unb64(mint_ticket(K1, NUM, "a.example.net", NOW, 3600)))
    pos = pos_seed % len(raw)
    raw[pos] ^= 1 << bit
    assert verify(b64(bytes(raw))) != "ok"
