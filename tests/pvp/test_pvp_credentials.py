"""PVP credentials (DESIGN §5): grid offsets, buckets, login/password, server search rule."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vipr.pvp.credentials import (
    Login,
    LoginError,
    client_credentials,
    parse_login,
    search_range,
    server_password,
)

Q = 10.0
START = 1_764_720_000.250  # an arbitrary call start (unix s)


def test_exact_login_and_password_text() -> None:
    c = client_credentials("+14085551000", "+4930123456", 1000.3, 1065.0, Q)
    # o_s = (1000.3 - 5) mod 10 = 5.3; o_e = (1065 - 5) mod 10 = 0; w = floor(1000.3/600) = 1
    assert c.username == "pvp1;+14085551000;+4930123456;1;5.300;0.000"
    # b_s = floor((1000.3 - 5.3)/10) = 99; b_e = floor((1065 - 0)/10) = 106
    assert c.password == "99;106"


def test_offsets_have_three_decimals_and_round_to_ms() -> None:
    c = client_credentials("+15550001", "+15550002", 12.3456, 30.0004, Q)
    assert c.username.endswith(";7.346;5.000")


def test_server_password_matches_on_exact_times() -> None:
    c = client_credentials("+15550001", "+15550002", START, START + 42.5, Q)
    login = parse_login(c.username, Q)
    assert login == c.login
    assert server_password(login, START, START + 42.5, Q) == c.password


@pytest.mark.parametrize("skew", [Q / 2 - 0.001, -(Q / 2), 0.0, 1.234, -4.999])
def test_skew_below_half_quantum_gives_the_same_password(skew: float) -> None:
    c = client_credentials("+15550001", "+15550002", START, START + 60, Q)
    assert server_password(c.login, START + skew, START + 60 + skew, Q) == c.password


@pytest.mark.parametrize("skew", [Q / 2 + 0.001, -(Q / 2) - 0.001])
def test_skew_over_half_quantum_changes_the_password(skew: float) -> None:
    c = client_credentials("+15550001", "+15550002", START, START + 60, Q)
    assert server_password(c.login, START + skew, START + 60, Q) != c.password
    assert server_password(c.login, START, START + 60 + skew, Q) != c.password


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start_ms=st.integers(0, 4_000_000_000_000),
    dur_ms=st.integers(0, 10_000_000),
    skew_s=st.integers(-4999, 4999),
    skew_e=st.integers(-4999, 4999),
)
def test_any_skew_under_half_q_matches(
    start_ms: int, dur_ms: int, skew_s: int, skew_e: int
) -> None:
    start, stop = start_ms / 1000, (start_ms + dur_ms) / 1000
    c = client_credentials("+15550001", "+15550002", start, stop, Q)
    login = parse_login(c.username, Q)
    assert server_password(login, start + skew_s / 1000, stop + skew_e / 1000, Q) == c.password


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.floats(0, 4e9), dur=st.floats(0, 1e5), q=st.sampled_from([0.25, 1.0, 10.0, 60.0]))
def test_login_round_trips(start: float, dur: float, q: float) -> None:
    c = client_credentials("+15550001", "+15550002", start, start + dur, q)
    assert parse_login(c.username, q) == c.login
    assert parse_login(c.username.encode(), q).encode() == c.username


def test_search_range_is_windows_w_minus_1_to_w_plus_1() -> None:
    login = Login("+15550001", "+15550002", 10, 0, 0)
    assert search_range(login) == (5400.0, 7200.0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pvp2;+15550001;+15550002;1;0.000;0.000", "bad-version"),
        ("pvp1;+15550001;+15550002;1;0.000", "malformed"),
        ("pvp1;15550001;+15550002;1;0.000;0.000", "malformed"),
        ("pvp1;+15550001;+15550002;01;0.000;0.000", "malformed"),
        ("pvp1;+15550001;+15550002;1;0.00;0.000", "malformed"),
        ("pvp1;+15550001;+15550002;1;0.000;0.000;", "malformed"),
        ("pvp1;+15550001;+15550002;-1;0.000;0.000", "malformed"),
        ("pvp1;+15550001;+15550002;1;10.000;0.000", "bad-offset"),
        ("pvp1;+15550001;+15550002;1;0.000;99.999", "bad-offset"),
        ("pvp1;+1555\u00e90001;+15550002;1;0.000;0.000", "malformed"),
        ("x" * 300, "too-long"),
        ("", "bad-version"),
    ],
)
def test_bad_logins_raise_login_error(text: str, reason: str) -> None:
    with pytest.raises(LoginError) as ei:
        parse_login(text, Q)
    assert ei.value.reason == reason


def test_non_ascii_bytes_login() -> None:
    with pytest.raises(LoginError, match="not-ascii"):
        parse_login(b"pvp1;\xff", Q)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_login_bytes_only_login_error(data: bytes) -> None:
    with contextlib.suppress(LoginError):
        parse_login(data, Q)
