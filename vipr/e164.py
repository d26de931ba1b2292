"""E.164 numbers: normalisation to "+digits", number blocks and lazy number sets.

Accepted input (ITU-T E.164 §6; visual separators as in RFC 3966 §5.1.1): a leading "+"
or the international prefix "00" (read as "+"; NANP's "011" is not accepted because
"011..." is ambiguous with national numbers elsewhere), then 1..15 digits of which the
first (the country code's) is not 0. Spaces, "-", "." and parentheses are ignored.
Everything else raises `E164Error`.

A block "+1408555[0000-0999]" is a prefix plus a range of fixed-width suffixes. Every
normalised number of a given length is a distinct integer (no leading zero), so a block is
one integer interval per length; `NumberSet` merges numbers and blocks into sorted
intervals and answers membership by bisection without expanding anything.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["E164Error", "NumberBlock", "NumberSet", "normalize_e164", "parse_entry"]

MAX_DIGITS = 15  # ITU-T E.164 §6.1
_DIGITS = frozenset("0123456789")
_SEPARATORS = str.maketrans("", "", " -.()")
_BLOCK_RE = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<low>[^\]-]*)-(?P<high>[^\]]*)\]$")


class E164Error(ValueError):
    """A string is not an E.164 number or number block."""


def _is_canonical(s: str) -> bool:
    return (
        1 < len(s) <= MAX_DIGITS + 1
        and s[0] == "+"
        and s[1] != "0"
        and s.isascii()
        and s[1:].isdigit()
    )


def normalize_e164(s: str) -> str:
    """Return `s` as "+digits"; raise `E164Error` saying what is wrong."""
    if not isinstance(s, str):
        raise E164Error(f"expected a string, got {type(s).__name__}")
    if _is_canonical(s):
        return s
    t = s.strip().translate(_SEPARATORS)
    if t.startswith("+"):
        digits = t[1:]
    elif t.startswith("00"):
        digits = t[2:]
    else:
        raise E164Error(f"{s!r}: must start with '+' and the country code")
    if not digits:
        raise E164Error(f"{s!r}: no digits")
    for c in digits:
        if c not in _DIGITS:
            raise E164Error(f"{s!r}: invalid character {c!r}")
    if len(digits) > MAX_DIGITS:
        raise E164Error(f"{s!r}: {len(digits)} digits (E.164 allows at most {MAX_DIGITS})")
    if digits[0] == "0":
        raise E164Error(f"{s!r}: country codes never start with 0")
    return "+" + digits


def _fast_normal(number: object) -> str | None:
    """`number` normalised, or None when it is not a number at all (membership → False)."""
    if not isinstance(number, str):
        return None
    try:
        return normalize_e164(number)
    except E164Error:
        return None


@dataclass(frozen=True)
class NumberBlock:
    """Numbers `prefix` + suffix for every `width`-digit suffix in [low, high]."""

    prefix: str
    low: int
    high: int
    width: int

    @classmethod
    def parse(cls, text: str) -> NumberBlock:
        """Parse "+1408555[0000-0999]"; raise `E164Error`."""
        if not isinstance(text, str):
            raise E164Error(f"expected a string, got {type(text).__name__}")
        m = _BLOCK_RE.match(text.strip())
        if m is None:
            raise E164Error(f"{text!r}: expected a block like '+1408555[0000-0999]'")
        try:
            prefix = normalize_e164(m["prefix"])
        except E164Error as exc:
            raise E164Error(f"{text!r}: prefix: {exc}") from None
        lo, hi = m["low"].strip(), m["high"].strip()
        if not lo or not hi or not set(lo) <= _DIGITS or not set(hi) <= _DIGITS:
            raise E164Error(f"{text!r}: range ends must be digits")
        if len(lo) != len(hi):
            raise E164Error(f"{text!r}: both ends of the range need the same number of digits")
        if int(lo) > int(hi):
            raise E164Error(f"{text!r}: range start {lo} is after its end {hi}")
        total = len(prefix) - 1 + len(lo)
        if total > MAX_DIGITS:
            raise E164Error(f"{text!r}: {total} digits (E.164 allows at most {MAX_DIGITS})")
        return cls(prefix, int(lo), int(hi), len(lo))

    @property
    def length(self) -> int:
        """Digits in every number of the block."""
        return len(self.prefix) - 1 + self.width

    @property
    def interval(self) -> tuple[int, int]:
        """The block as an inclusive interval of integers (all of `length` digits)."""
        base = int(self.prefix[1:]) * 10**self.width
        return base + self.low, base + self.high

    def __contains__(self, number: object) -> bool:
        n = _fast_normal(number)
        if n is None or len(n) - 1 != self.length or not n.startswith(self.prefix):
            return False
        return self.low <= int(n[len(self.prefix) :]) <= self.high

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __iter__(self) -> Iterator[str]:
        for i in range(self.low, self.high + 1):
            yield f"{self.prefix}{i:0{self.width}d}"

    def __str__(self) -> str:
        return f"{self.prefix}[{self.low:0{self.width}d}-{self.high:0{self.width}d}]"


def parse_entry(text: str) -> str | NumberBlock:
    """One configured entry: a number (normalised) or a block; raise `E164Error`."""
    if isinstance(text, str) and "[" in text:
        return NumberBlock.parse(text)
    return normalize_e164(text)


class NumberSet:
    """Numbers and blocks; membership by bisection over merged intervals, iteration lazy.

    Normalised numbers have no leading zero, so each one is a distinct integer and the
    numbers of one length form the integer range [10**(L-1), 10**L); one sorted list of
    disjoint intervals therefore covers every length at once.
    """

    __slots__ = ("_ends", "_len", "_starts", "entries")

    def __init__(self, entries: Iterable[str | NumberBlock] = ()) -> None:
        parsed = [e if isinstance(e, NumberBlock) else parse_entry(e) for e in entries]
        self.entries: tuple[str, ...] = tuple(str(e) for e in parsed)
        spans = sorted(
            e.interval if isinstance(e, NumberBlock) else (int(e), int(e)) for e in parsed
        )
        starts: list[int] = []
        ends: list[int] = []
        for a, b in spans:
            if ends and a <= ends[-1] + 1:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        self._starts = starts
        self._ends = ends
        self._len = sum(b - a + 1 for a, b in zip(starts, ends, strict=True))

    def __contains__(self, number: object) -> bool:
        if type(number) is str and _is_canonical(number):
            v = int(number)
        else:
            n = _fast_normal(number)
            if n is None:
                return False
            v = int(n)
        i = bisect.bisect_right(self._starts, v) - 1
        return i >= 0 and v <= self._ends[i]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        """Every number once, shortest first, ascending."""
        for a, b in zip(self._starts, self._ends, strict=True):
            for v in range(a, b + 1):
                yield f"+{v}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumberSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __hash__(self) -> int:
        return hash((tuple(self._starts), tuple(self._ends)))

    def __repr__(self) -> str:
        return f"NumberSet({list(self.entries)!r})"
