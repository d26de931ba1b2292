"""PVP credentials: SRP login and password from a VCR (DESIGN §5). Pure code, no I/O.

The client (originating side) chooses grid offsets that put its own start and stop in the
middle of a Q-second bucket:

    o_s = (start − Q/2) mod Q,  o_e = (stop − Q/2) mod Q      (milliseconds, three decimals)
    b_s = floor((start − o_s) / Q),  b_e = floor((stop − o_e) / Q)

and sends `pvp1;<caller>;<callee>;<w>;<o_s>;<o_e>` as the SRP login, with
`w = floor(start / 600)`. The password is `<b_s>;<b_e>`. The server (terminating side) reads
caller, callee, w and the offsets from the login, finds its own VCR of that call and computes
the buckets from its own start and stop: any skew in [−Q/2, Q/2 − 1 ms] gives the same password.

All time arithmetic is done on integer milliseconds so that both sides round identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LOGIN_VERSION",
    "WINDOW",
    "Credentials",
    "Login",
    "LoginError",
    "bucket",
    "client_credentials",
    "grid_offset",
    "parse_login",
    "search_range",
    "server_password",
    "to_ms",
]

LOGIN_VERSION = "pvp1"
WINDOW = 600  # seconds: w = floor(start / 600) (DESIGN §5)
MAX_LOGIN = 255  # TLS SRP extension: srp_I is <1..2^8-1> (RFC 5054 §2.8.1)

_E164 = r"\+[1-9][0-9]{1,14}"
_LOGIN_RE = re.compile(
    rf"pvp1;(?P<caller>{_E164});(?P<callee>{_E164});(?P<w>0|[1-9][0-9]{{0,11}});"
    r"(?P<o_s>(?:0|[1-9][0-9]{0,8})\.[0-9]{3});(?P<o_e>(?:0|[1-9][0-9]{0,8})\.[0-9]{3})"
)


class LoginError(ValueError):
    """An SRP login that is not a valid `pvp1` login; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def to_ms(t: float) -> int:
    """Seconds → integer milliseconds (round half away from zero is not needed: Python's round
    to even is deterministic, and both sides use this function)."""
    return round(t * 1000)


def grid_offset(t_ms: int, q_ms: int) -> int:
    """The offset (ms, in [0, Q)) that puts `t_ms` in the middle of its Q-bucket."""
    return (t_ms - q_ms // 2) % q_ms


def bucket(t_ms: int, offset_ms: int, q_ms: int) -> int:
    """b = floor((t − o) / Q), on integer milliseconds."""
    return (t_ms - offset_ms) // q_ms


def _fmt_ms(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


@dataclass(frozen=True, slots=True)
class Login:
    """A parsed `pvp1` login; offsets in integer milliseconds."""

    caller: str
    callee: str
    window: int
    o_s_ms: int
    o_e_ms: int

    def encode(self) -> str:
        return (
            f"{LOGIN_VERSION};{self.caller};{self.callee};{self.window};"
            f"{_fmt_ms(self.o_s_ms)};{_fmt_ms(self.o_e_ms)}"
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client sends: the login and the password (both ASCII strings)."""

    login: Login
    password: str

    @property
    def username(self) -> str:
        return self.login.encode()


def _quantum_ms(quantum: float) -> int:
    q_ms = to_ms(quantum)
    if q_ms < 2:
        raise ValueError(f"quantum {quantum!r} s is too small")
    return q_ms


def client_credentials(
    caller: str, callee: str, start: float, stop: float, quantum: float
) -> Credentials:
    """The originating side's login and password for the call caller → callee."""
    q_ms = _quantum_ms(quantum)
    s_ms, e_ms = to_ms(start), to_ms(stop)
    if s_ms < 0 or e_ms < 0:
        raise ValueError("start and stop must not be negative")
    o_s, o_e = grid_offset(s_ms, q_ms), grid_offset(e_ms, q_ms)
    login = Login(caller, callee, s_ms // (WINDOW * 1000), o_s, o_e)
    return Credentials(login, f"{bucket(s_ms, o_s, q_ms)};{bucket(e_ms, o_e, q_ms)}")


def parse_login(text: str | bytes | bytearray, quantum: float) -> Login:
    """Parse and check a login from the wire; LoginError names what is wrong."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_LOGIN:
            raise LoginError("too-long", f"{len(text)} bytes")
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise LoginError("not-ascii") from None
    if len(text) > MAX_LOGIN:
        raise LoginError("too-long", f"{len(text)} characters")
    if not text.startswith(LOGIN_VERSION + ";"):
        raise LoginError("bad-version", text.split(";", 1)[0][:16])
    m = _LOGIN_RE.fullmatch(text)
    if m is None:
        raise LoginError("malformed", text[:80])
    q_ms = _quantum_ms(quantum)
    o_s, o_e = _parse_ms(m["o_s"]), _parse_ms(m["o_e"])
    if o_s >= q_ms or o_e >= q_ms:
        raise LoginError("bad-offset", f"offsets must be below Q = {_fmt_ms(q_ms)} s")
    return Login(m["caller"], m["callee"], int(m["w"]), o_s, o_e)


def _parse_ms(s: str) -> int:
    whole, frac = s.split(".")
    return int(whole) * 1000 + int(frac)


def search_range(login: Login) -> tuple[float, float]:
    """The server's candidate search: VCR start in windows w−1..w+1, as [from, to) seconds."""
    return float((login.window - 1) * WINDOW), float((login.window + 2) * WINDOW)


def server_password(login: Login, start: float, stop: float, quantum: float) -> str:
    """The password the server expects, from its own VCR's start and stop."""
    q_ms = _quantum_ms(quantum)
    return (
        f"{bucket(to_ms(start), login.o_s_ms, q_ms)};{bucket(to_ms(stop), login.o_e_ms, q_ms)}"
    )
