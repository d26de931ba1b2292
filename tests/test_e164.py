"""vipr.e164: normalisation, blocks and lazy number sets (examples + hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipr.e164 import E164Error, NumberBlock, NumberSet, normalize_e164, parse_entry


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("+14085551234", "+14085551234"),
        (" +1 (408) 555-1234 ", "+14085551234"),
        ("+44.20.7123.4567", "+442071234567"),
        ("0033 1 40 00 00 00", "+33140000000"),
        ("+1", "+1"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_normalize(text: str, want: str) -> None:
    assert normalize_e164(text) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("14085551234", "must start with '+'"),
        ("011 1 408 555 1234", "must start with '+'"),
        ("+", "no digits"),
        ("+0123", "never start with 0"),
        ("+1234567890123456", "16 digits"),
        ("+1408abc", "invalid character 'a'"),
        ("+1408\u0661", "invalid character"),  # Arabic-Indic digit: not ASCII
        ("+1+2", "invalid character '+'"),
        ("", "must start with '+'"),
    ],
)
def test_normalize_rejects(text: str, why: str) -> None:
    with pytest.raises(E164Error, match=why.replace("(", r"\(").replace("+", r"\+")):
        normalize_e164(text)


def test_normalize_rejects_non_strings() -> None:
    with pytest.raises(E164Error):
        normalize_e164(14085551234)  # type: ignore[arg-type]


def test_block_parse_and_lazy_ops() -> None:
    b = NumberBlock.parse("+1408555[0000-0999]")
    assert (b.prefix, b.low, b.high, b.width, b.length) == ("+1408555", 0, 999, 4, 11)
    assert str(b) == "+1408555[0000-0999]"
    assert len(b) == 1000
    assert "+14085550000" in b and "+14085550999" in b and "+1 408 555 0123" in b
    assert "+14085551000" not in b and "+1408555099" not in b and "+140855500000" not in b
    assert 14085550000 not in b and "garbage" not in b
    assert list(itertools.islice(b, 3)) == ["+14085550000", "+14085550001", "+14085550002"]
    huge = NumberBlock.parse("+1[00000000000000-99999999999999]")
    assert len(huge) == 10**14 and "+123456789012345" in huge  # never expanded


@pytest.mark.parametrize(
    "text",
    ["+1408555", "+1408555[0999-0000]", "+1408555[00-999]", "+1408555[a-b]", "+[0-9]",
     "+0408[0-9]", "+1408555[0000-0999]9", "+12345678901234[00-99]", "1408[0-9]"],
)  # fmt: skip
def test_block_rejects(text: str) -> None:
    with pytest.raises(E164Error):
        NumberBlock.parse(text)


def test_number_set_merges_and_counts_distinct() -> None:
    s = NumberSet(["+14085551234", "+1408555[0000-0999]", "+1408555[0500-1999]", "+1408555"])
    assert len(s) == 2000 + 1  # 1234 lies inside the merged block; +1408555 is a shorter number
    assert "+14085551234" in s and "+1408555" in s and "+14085551999" in s
    assert "+14085552000" not in s and "+140855" not in s
    assert s.entries[0] == "+14085551234"
    got = list(s)
    assert got[0] == "+1408555" and got[1] == "+14085550000" and got[-1] == "+14085551999"
    assert len(got) == len(set(got)) == len(s)
    assert NumberSet(["+1408555[0000-1999]", "+1408555"]) == s
    assert hash(NumberSet(["+1408555[0000-1999]", "+1408555"])) == hash(s)
    assert len(NumberSet()) == 0 and "+1" not in NumberSet()


# ---------------------------------------------------------------- properties

numbers = st.builds(
    lambda first, rest: "+" + first + rest,
    st.sampled_from("123456789"),
    st.text("0123456789", min_size=0, max_size=14),
)


@settings(max_examples=100)
@given(numbers, st.lists(st.sampled_from([" ", "-", ".", "(", ")"]), max_size=20), st.randoms())
def test_normalize_ignores_separators(number: str, seps: list[str], rnd: object) -> None:
    chars = list(number)
    for sep in seps:
        chars.insert(1 + rnd.randrange(len(chars)), sep)  # type: ignore[attr-defined]
    assert normalize_e164("".join(chars)) == number
    assert normalize_e164("00" + number[1:]) == number
    assert normalize_e164(normalize_e164(number)) == number  # idempotent


@settings(max_examples=150)
@given(st.text(max_size=25))
def test_normalize_raises_only_its_own_error(text: str) -> None:
    try:
        out = normalize_e164(text)
    except E164Error:
        return
    assert out[0] == "+" and out[1:].isdigit() and out[1:].isascii() and len(out) <= 16


@settings(max_examples=150)
@given(st.text(alphabet="+0123456789[]-() x", max_size=25))
def test_parse_entry_raises_only_its_own_error(text: str) -> None:
    try:
        entry = parse_entry(text)
    except E164Error:
        return
    assert parse_entry(str(entry)) == entry  # canonical form round-trips


def _block(prefix: str, width: int, a: int, b: int) -> str:
    lo, hi = sorted((a % 10**width, b % 10**width))
    return f"{prefix}[{lo:0{width}d}-{hi:0{width}d}]"


blocks = st.builds(
    _block,
    st.sampled_from(["+1", "+14", "+140", "+1408"]),
    st.integers(1, 2),
    st.integers(0, 99),
    st.integers(0, 99),
)

small_numbers = st.builds(lambda d: f"+1{d}", st.text("0123456789", min_size=0, max_size=4))


@settings(max_examples=100)
@given(st.lists(st.one_of(blocks, small_numbers), max_size=6), small_numbers)
def test_number_set_matches_brute_force(entries: list[str], probe: str) -> None:
    expanded: set[str] = set()
    for e in entries:
        parsed = parse_entry(e)
        expanded |= set(parsed) if isinstance(parsed, NumberBlock) else {parsed}
    s = NumberSet(entries)
    assert len(s) == len(expanded)
    assert set(s) == expanded
    assert (probe in s) == (probe in expanded)
    for n in itertools.islice(expanded, 20):
        assert n in s
