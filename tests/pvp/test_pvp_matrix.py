"""Acceptance matrix of issue 7 (DESIGN §5): one test each, real TLS-SRP over loopback TCP
between a PvpClient (provider A, originating) and PvpServer(s) (B terminating, C squatter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pvp_harness import (
    CALLEE,
    CALLER,
    T0,
    Provider,
    assert_learned,
    cleanup,
    connect,
    provider,
    short_dir,
    vcr,
)

from vipr.pvp.client import Outcome
from vipr.pvp.credentials import client_credentials
from vipr.pvp.messages import ValInfo
from vipr.tickets import TicketVerifier

Q = 10.0
NODE_A, NODE_B, NODE_C = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _run(a: Provider, b: Provider, *, orig: dict[str, object] | None = None,
               term: dict[str, object] | None = None) -> Outcome:
    """Import an originating VCR at A and a terminating one at B, validate from A."""
    oid = await a.store.add_vcr(vcr("originating", **(orig or {})))  # type: ignore[arg-type]
    await b.store.add_vcr(vcr("terminating", **(term or {})))  # type: ignore[arg-type]
    assert oid is not None
    v = await a.store.get_vcr(oid)
    assert v is not None
    return await a.client.validate_vcr(v)


async def _server_log(p: Provider, n: int = 1) -> list[tuple[str, str]]:
    await p.server.wait_logged(n)
    return [(r.outcome, r.reason) for r in await p.store.list_validations()
            if r.role == "server"]


async def test_exact_times_learn_route_and_a_ticket_that_verifies(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        out = await _run(a, b)
        assert out.outcome == "learned", out
        assert b.server.counters.attempts == 1
        route = await assert_learned(a, b)
        verifier = TicketVerifier(await b.store.ticket_keys())
        verdict = verifier.verify(route.ticket, number=CALLEE, peer_domain="a.example.net",
                                  now=T0 + 3600)
        assert verdict.ok, verdict
        assert a.learned == [CALLEE]  # route_learned reached proxy.sock
        (orig,) = await a.store.list_vcrs(direction="originating")
        assert orig.validated is not None
        assert (await _server_log(b))[0][0] == "ok"


@pytest.mark.parametrize("where", ["start", "stop"])
async def test_skew_just_under_half_q_passes_with_one_handshake(base: Path, where: str) -> None:
    skew = Q / 2 - 0.002
    term = {"start": T0 + skew, "duration": 60.0 - skew} if where == "start" else {
        "duration": 60.0 + skew}
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        assert (await _run(a, b, term=term)).outcome == "learned"
        assert b.server.counters.attempts == 1


@pytest.mark.parametrize("where", ["start", "stop"])
async def test_skew_just_under_half_q_negative(base: Path, where: str) -> None:
    skew = -(Q / 2) + 0.002
    term = {"start": T0 + skew, "duration": 60.0 - skew} if where == "start" else {
        "duration": 60.0 + skew}
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        assert (await _run(a, b, term=term)).outcome == "learned"
        assert b.server.counters.attempts == 1


async def test_skew_just_over_half_q_fails(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        out = await _run(a, b, term={"start": T0 + Q / 2 + 0.002, "duration": 60.0})
        assert out.outcome == "failed" and "wrong-password" in out.detail
        assert await a.store.get_route(CALLEE) is None
        assert (await _server_log(b))[0][1].startswith("wrong-password")


async def test_wrong_caller_fails(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        out = await _run(a, b, term={"caller": "+14085559999"})
        assert out.outcome == "failed"
        assert (await _server_log(b))[0] == ("failed", "no-vcr")


async def test_unknown_caller_on_terminating_side_is_accepted(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        assert (await _run(a, b, term={"caller": ""})).outcome == "learned"


async def test_unknown_callee_fails_with_a_decoy(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        out = await _run(a, b, term={"callee": "+4930999999"})
        assert out.outcome == "failed" and "wrong-password" in out.detail
        assert (await _server_log(b))[0] == ("failed", "no-vcr")


async def test_vcr_outside_the_window_fails(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        # three 10-minute windows later: never searched (windows w-1..w+1 only)
        out = await _run(a, b, term={"start": T0 + 1800.0})
        assert out.outcome == "failed"
        assert (await _server_log(b))[0] == ("failed", "no-vcr")


async def test_burned_vcr_is_refused_even_with_the_right_password(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        tid = await b.store.add_vcr(vcr("terminating"))
        assert tid is not None
        host, port = b.server.address
        right = client_credentials(CALLER, CALLEE, T0, T0 + 60, Q)
        wrong = client_credentials(CALLER, CALLEE, T0 + 20, T0 + 60, Q)
        for _ in range(3):
            with pytest.raises(Exception, match="wrong-password"):
                await a.client.validate_at(host, port, wrong, b.node)
        await b.server.wait_logged(3)
        burned = await b.store.get_vcr(tid)
        assert burned is not None and burned.burned and burned.failures == 3
        with pytest.raises(Exception, match="wrong-password"):
            await a.client.validate_at(host, port, right, b.node)
        log = await _server_log(b, 4)
        assert log[0] == ("failed", "no-vcr")
        assert "burned after 3 failures" in log[1][1]


async def test_rate_limit_per_remote_address(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(
            base, "b", NODE_B, pvp={"max_attempts_per_minute": 2}) as b:
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        right = client_credentials(CALLER, CALLEE, T0, T0 + 60, Q)
        for _ in range(2):
            assert isinstance(await a.client.validate_at(host, port, right, b.node), ValInfo)
        with pytest.raises(Exception, match="closed"):
            await a.client.validate_at(host, port, right, b.node)
        assert b.server.counters.rate_limited == 1
        assert (await _server_log(b, 3))[0] == ("refused", "rate-limited")


async def test_squatter_fails_owner_succeeds_only_owner_route_learned(base: Path) -> None:
    async with (provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b,
                provider(base, "c", NODE_C) as c):
        connect(a, c, b)  # the squatter C is tried first
        out = await _run(a, b)
        assert out.outcome == "learned"
        await assert_learned(a, b)   # the owner's route, not the squatter's
        assert (await _server_log(c))[0] == ("failed", "no-vcr")
        await a.client.vlog.flush()
        client_log = [(r.peer, r.outcome) for r in await a.store.list_validations()]
        assert (NODE_C, "failed") in client_log and (NODE_B, "learned") in client_log
        assert await c.store.ticket_keys() == []  # the squatter never minted anything


async def test_denied_domain_gets_an_error_and_no_ticket(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(
            base, "b", NODE_B, pvp={"deny_domains": ["a.example.net"]}) as b:
        connect(a, b)
        out = await _run(a, b)
        assert out.outcome == "failed" and "refused 403" in out.detail
        assert await a.store.get_route(CALLEE) is None
        assert await b.store.ticket_keys() == []
        outcome, reason = (await _server_log(b))[0]
        assert outcome == "refused" and reason.startswith("domain-denied a.example.net from "
                                                          f"node {NODE_A} user pvp@a."), reason


async def test_allow_list_admits_listed_domain_only(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(
            base, "b", NODE_B, pvp={"allow_domains": ["*.example.org"]}) as b:
        connect(a, b)
        out = await _run(a, b)
        assert out.outcome == "failed" and "refused 403" in out.detail


async def test_decoy_does_the_same_work_as_a_real_verifier(base: Path) -> None:
    """Known and unknown logins both compute one 2048-bit verifier and run the handshake."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        seen: list[tuple[bytes, int]] = []
        real = b.server._verifier

        async def spy(username: bytes, password: str) -> Any:
            entry = await real(username, password)
            seen.append((username, entry[0].bit_length()))
            return entry

        b.server._verifier = spy  # type: ignore[method-assign]
        await b.store.add_vcr(vcr("terminating"))
        host, port = b.server.address
        right = client_credentials(CALLER, CALLEE, T0, T0 + 60, Q)
        unknown = client_credentials(CALLER, "+4930999999", T0, T0 + 60, Q)
        assert isinstance(await a.client.validate_at(host, port, right, b.node), ValInfo)
        with pytest.raises(Exception, match="wrong-password"):
            await a.client.validate_at(host, port, unknown, b.node)
        assert [bits for _, bits in seen] == [2048, 2048]
        assert [u.decode() for u, _ in seen] == [right.username, unknown.username]
