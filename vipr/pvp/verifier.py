"""SRP verifiers with a fixed-base table (RFC 5054 §2.4: x = SHA1(s | SHA1(I | ":" | P)),
v = g^x % N), the same values as tlslite-ng's `mathtls.makeVerifier`.

The PVP server computes a verifier with a fresh salt for every attempt, decoys included
(DESIGN §5), so g^x is on every validation's path. g and N are fixed per group and x is a
160-bit SHA-1 value, so g^x is the product of one precomputed power per 6-bit digit of x:
`_TABLE_ROWS` rows of 64 entries g^(d * 2^(6i)) (~440 KB for 2048 bits, built once per group
on first use, ~3 ms), 27 modular multiplications instead of a 160-bit exponentiation
(56 µs against 190-210 µs with gmpy2; docs/benchmarks.md ## PVP, "Third round"). Every digit
costs one multiplication, zero digits too, so the work does not depend on x's digits beyond
what the big-number library's own multiplication reveals (its `powmod` is not constant-time
either).
"""

from __future__ import annotations

from typing import Any

from tlslite.mathtls import goodGroupParameters, makeX
from tlslite.utils import cryptomath

__all__ = ["SRP_GROUPS", "VerifierEntry", "make_verifier"]

VerifierEntry = tuple[int, int, bytearray, int]  # (N, g, salt, verifier) as tlslite stores it

# RFC 5054 Appendix A groups by modulus size, as tlslite numbers them.
SRP_GROUPS: dict[int, tuple[int, int]] = {
    bits: goodGroupParameters[i]
    for i, bits in enumerate((1024, 1536, 2048, 3072, 4096, 6144, 8192))
}
_DIGIT_BITS = 6
_X_BITS = 160  # SHA-1
_TABLE_ROWS = (_X_BITS + _DIGIT_BITS - 1) // _DIGIT_BITS

if cryptomath.GMPY2_LOADED:
    from gmpy2 import mpz as _num
else:  # pragma: no cover - gmpy2 is a declared dependency; tlslite falls back without it
    _num = int

_tables: dict[int, list[list[Any]]] = {}


def _table(g: int, n: int) -> list[list[Any]]:
    t = _tables.get(n)
    if t is None:
        mod = _num(n)
        base = _num(g)
        t = []
        for _ in range(_TABLE_ROWS):
            row = [_num(1)]
            for _ in range((1 << _DIGIT_BITS) - 1):
                row.append(row[-1] * base % mod)
            t.append(row)
            base = pow(base, 1 << _DIGIT_BITS, mod)
        _tables[n] = t
    return t


def fixed_base_pow(g: int, x: int, n: int) -> int:
    """g^x % n for 0 <= x < 2^160 through the table of (g, n)."""
    if not 0 <= x < 1 << _X_BITS:
        raise ValueError("exponent out of the table's range")
    table = _table(g, n)
    mod = _num(n)
    mask = (1 << _DIGIT_BITS) - 1
    r = _num(1)
    for row in table:
        r = r * row[x & mask] % mod
        x >>= _DIGIT_BITS
    return int(r)


def make_verifier(
    username: str | bytes, password: str | bytes, bits: int = 2048
) -> VerifierEntry:
    """A tlslite verifier entry for `username`/`password` with a fresh random 16-byte salt."""
    user = username.encode("utf-8") if isinstance(username, str) else username
    pw = password.encode("utf-8") if isinstance(password, str) else password
    g, n = SRP_GROUPS[bits]
    salt = cryptomath.getRandomBytes(16)
    x = makeX(salt, bytearray(user), bytearray(pw))
    return (n, g, salt, fixed_base_pow(g, x, n))
