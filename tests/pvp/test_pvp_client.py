"""PVP client behaviour (DESIGN §5): scheduling, claims, retries, what is kept or dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pvp_harness import (
    CALLEE,
    T0,
    Provider,
    assert_learned,
    claim,
    cleanup,
    connect,
    provider,
    short_dir,
    vcr,
)

from vipr.config import HostPort
from vipr.ipc import ipc_call
from vipr.pvp.client import PvpClient
from vipr.pvp.daemon import PvpDaemon
from vipr.store import Vcr

NODE_A, NODE_B = "a" * 32, "b" * 32


@pytest.fixture
async def base() -> AsyncIterator[Path]:
    d = short_dir()
    yield d
    cleanup(d)


async def _orig(a: Provider, **kw: object) -> Vcr:
    oid = await a.store.add_vcr(vcr("originating", **kw))  # type: ignore[arg-type]
    assert oid is not None
    v = await a.store.get_vcr(oid)
    assert v is not None
    return v


async def test_no_claims_drops_the_vcr_silently(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a:
        v = await _orig(a)
        out = await a.client.validate_vcr(v)
        assert out.outcome == "no-claims"
        assert await a.store.get_vcr(v.id or 0) is None
        await a.client.vlog.flush()
        (rec,) = await a.store.list_validations()
        assert rec.outcome == "no-claims"


async def test_own_claims_are_skipped(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a:
        a.overlay.claims[CALLEE] = [claim(NODE_A)]
        v = await _orig(a)
        assert (await a.client.validate_vcr(v)).outcome == "no-claims"
        assert not [c for c in a.overlay.calls if c[0] == "attach"]


async def test_all_claimants_failed_keeps_the_vcr(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        v = await _orig(a)  # B has no VCR: fails
        assert (await a.client.validate_vcr(v)).outcome == "failed"
        kept = await a.store.get_vcr(v.id or 0)
        assert kept is not None and kept.validated is None and not kept.burned


async def test_network_errors_are_retried_with_backoff(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        a.overlay.unreachable[NODE_B] = 2
        await b.store.add_vcr(vcr("terminating"))
        out = await a.client.validate_vcr(await _orig(a))
        assert out.outcome == "learned"
        assert a.client.counters.retries == 2


async def test_network_errors_exhausted_keep_the_vcr(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        a.overlay.unreachable[NODE_B] = 10
        v = await _orig(a)
        out = await a.client.validate_vcr(v)
        assert out.outcome == "failed" and "unreachable" in out.detail
        assert await a.store.get_vcr(v.id or 0) is not None


async def test_connection_refused_is_a_network_error(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        a.overlay.peers[NODE_B] = ("127.0.0.1", 1)  # nobody listens there
        out = await a.client.validate_vcr(await _orig(a))
        assert out.outcome == "failed" and "connect" in out.detail
        assert a.client.counters.retries == 2


async def test_wrong_password_is_never_retried_with_the_same_vcr(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        await b.store.add_vcr(vcr("terminating", start=T0 + 7))
        v = await _orig(a)
        assert (await a.client.validate_vcr(v)).outcome == "failed"
        assert b.server.counters.attempts == 1
        again = await a.client.validate_vcr(v)
        assert again.outcome == "failed" and "wrong-password before" in again.detail
        # a restarted client remembers it from the validation log
        await a.client.vlog.flush()
        fresh = PvpClient(a.cfg, a.store, tls=a.tls, backoff=(0.01,))
        await fresh.start()
        assert (await fresh.validate_vcr(v)).outcome == "failed"
        await fresh.close()
        assert b.server.counters.attempts == 1
        await b.server.wait_logged(1)
        b_vcr = (await b.store.list_vcrs())[0]
        assert b_vcr.failures == 1


async def test_short_calls_are_not_used(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a:
        v = await _orig(a, duration=4.0)
        assert not await a.client.enqueue(v.id or 0)
        assert (await a.client.validate_vcr(v)).outcome == "skipped"
        assert a.overlay.calls == []


async def test_absent_proxy_socket_is_logged_and_learning_goes_on(base: Path) -> None:
    async with provider(base, "a", NODE_A, proxy=False) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        await b.store.add_vcr(vcr("terminating"))
        assert (await a.client.validate_vcr(await _orig(a))).outcome == "learned"
        await assert_learned(a, b)


class _Rng(random.Random):
    def __init__(self) -> None:
        super().__init__(1)
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return 0.0


async def test_startup_scan_validates_pending_vcrs_after_a_random_delay(base: Path) -> None:
    async with provider(base, "a", NODE_A, pvp={"min_delay": 1, "max_delay": 7}) as a, \
            provider(base, "b", NODE_B) as b:
        connect(a, b)
        await b.store.add_vcr(vcr("terminating"))
        await _orig(a)
        await _orig(a, duration=3.0, call_id="short")  # too short: not queued
        rng = _Rng()
        client = PvpClient(a.cfg, a.store, tls=a.tls, rng=rng)
        await client.start()
        await client.wait_idle()
        await client.close()
        assert rng.asked == [(1.0, 7.0)]
        assert client.counters.learned == 1
        await assert_learned(a, b)


async def test_daemon_ipc_vcr_added_validate_status(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        a.overlay.claims[CALLEE] = [claim(NODE_B)]
        a.overlay.peers[NODE_B] = b.server.address
        await b.store.add_vcr(vcr("terminating"))
        cfg = dataclasses.replace(a.cfg, pvp=dataclasses.replace(
            a.cfg.pvp, listen=HostPort("127.0.0.1", 0)))
        d = PvpDaemon(cfg, a.store, tls=a.tls)
        await d.start()
        try:
            sock = cfg.runtime_dir / "pvp.sock"
            assert (await ipc_call(sock, "validate", {"number": "+99"}))["outcome"] == "no-vcr"
            v = await _orig(a)
            assert (await ipc_call(sock, "vcr_added", {"id": v.id})) == {"queued": True}
            assert (await ipc_call(sock, "vcr_added", {"id": v.id})) == {"queued": False}
            await d.client.wait_idle()
            await assert_learned(a, b)
            ans = await ipc_call(sock, "validate", {"number": CALLEE})
            assert ans["outcome"] == "learned"
            st = await ipc_call(sock, "status", {})
            assert st["client"]["learned"] == 2 and "server" in st
            # refusals at accept, by reason (issue 13 defect 4): one over the per-address cap
            cap = cfg.pvp.limits.max_connections_per_address
            idle = [await asyncio.open_connection(*d.server.address, local_addr=("127.0.0.2", 0))
                    for _ in range(cap + 1)]
            assert await asyncio.wait_for(idle[-1][0].read(), 10) == b""
            conns = (await ipc_call(sock, "status", {}))["server"]["connections"]
            assert conns["refused"] == {"address_full": 1} and conns["open"] == cap
            for _, w in idle:
                w.close()
            await a.store.add_vcr(vcr("originating", start=T0 - 3 * 86400, call_id="old"))
            vcrs, _ = await d.purge()
            assert vcrs == 1
        finally:
            await d.close()


async def test_store_learn_route_and_log_batch(base: Path) -> None:
    from vipr.store import Route, ValidationRecord

    async with provider(base, "a", NODE_A) as a:
        v = await _orig(a)
        r = Route(CALLEE, ("sip:x;transport=tls",), "T", 2e9, 2e9, NODE_B, "x", 1000.0)
        await a.store.learn_route(r, v.id)
        assert await a.store.get_route(CALLEE) == r
        got = await a.store.get_vcr(v.id or 0)
        assert got is not None and got.validated == 1000.0
        recs = [ValidationRecord(None, float(i), "client", CALLEE, None, "p", "ok", str(i))
                for i in range(3)]
        assert await a.store.log_validations(recs) == 3
        assert await a.store.log_validations([]) == 0
        assert [x.reason for x in await a.store.list_validations()] == ["2", "1", "0"]


async def test_several_claims_of_one_peer_are_tried_once(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        a.overlay.claims[CALLEE].append({"node_id": "d" * 32, "vservice": "00000000000000bb",
                                         "peer_id": NODE_B})
        assert (await a.client.validate_vcr(await _orig(a))).outcome == "failed"
        assert [c for c in a.overlay.calls if c[0] == "attach"] == [
            ("attach", {"peer_id": NODE_B, "application": 61441})]


async def test_claims_whose_peers_never_answer_do_not_hold_the_owner_back(base: Path) -> None:
    """Issue 13 (squatting): a member stores claims for B's number whose peers never answer
    AppAttach, listed before B's. Tried one after another, each cost an attach timeout (15 s,
    retried): the owner's validation came too late. All claimants are tried at once."""
    squatters = [f"{i:x}" * 32 for i in range(4)]
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        a.overlay.claims[CALLEE] = [claim(s) for s in squatters]
        a.overlay.silent.update(squatters)
        connect(a, b)
        await b.store.add_vcr(vcr("terminating"))
        async with asyncio.timeout(12):  # one squatter's attach timeout alone is 15 s
            out = await a.client.validate_vcr(await _orig(a))
        assert out.outcome == "learned", out
        await assert_learned(a, b)
        attached = {c[1]["peer_id"] for c in a.overlay.calls if c[0] == "attach"}
        assert attached == {*squatters, NODE_B}


async def test_open_or_unterminated_vcr_is_never_validated(base: Path) -> None:
    """DESIGN §7: no real stop time, so no password can be made from it (issue 13 defect 6)."""
    async with provider(base, "a", NODE_A) as a:
        a.overlay.claims[CALLEE] = [claim(NODE_B)]
        v = dataclasses.replace(vcr("originating"), state="open")
        v = dataclasses.replace(v, stop=v.start)
        oid = await a.store.open_vcr(v)
        assert oid is not None
        assert not await a.client.enqueue(oid)
        stored = await a.store.get_vcr(oid)
        assert stored is not None
        out = await a.client.validate_vcr(stored)
        assert out.outcome == "skipped" and not a.overlay.calls
        await a.store.close_unterminated(stored.start + 1)
        stored = await a.store.get_vcr(oid)
        assert stored is not None and stored.state == "unterminated"
        assert (await a.client.validate_vcr(stored)).outcome == "skipped"


async def test_late_terminating_vcr_is_learned_on_a_late_retry(base: Path) -> None:
    """DESIGN §11: the terminating VCR arrives (CDR import) after the first attempt failed as
    a decoy; the claimant is tried again on the late schedule and the route is learned."""
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        client = PvpClient(a.cfg, a.store, tls=a.tls, backoff=(0.01,), late_retries=(0.5, 30.0))
        await client.start()
        try:
            v = await _orig(a)
            client._schedule(v, 0.0)
            first = client._scheduled[v.id or 0]
            assert (await first).outcome == "failed"     # b has no VCR yet: a decoy answer
            assert b.server.counters.attempts == 1
            await b.store.add_vcr(vcr("terminating"))   # the hourly CDR import
            retry = client._scheduled[v.id or 0]             # scheduled by the failure
            assert retry is not first
            assert (await asyncio.wait_for(retry, 10)).outcome == "learned"
            assert client.counters.late_retries == 1
            await assert_learned(a, b)
        finally:
            await client.close()


async def test_late_retries_stop_at_the_schedule_and_the_retention(base: Path) -> None:
    async with provider(base, "a", NODE_A) as a, provider(base, "b", NODE_B) as b:
        connect(a, b)
        client = PvpClient(a.cfg, a.store, tls=a.tls, backoff=(0.01,), late_retries=(0.05, 0.1))
        await client.start()
        try:
            v = await _orig(a)
            client._schedule(v, 0.0)
            while v.id in client._scheduled:   # first attempt + 2 late retries, all decoys
                await asyncio.wait_for(client._scheduled[v.id or 0], 10)
            assert client.counters.late_retries == 2
            assert b.server.counters.attempts == 3
            assert v.id in client._finished
            # a retry that would fall after the VCR's retention is not scheduled
            now = client.clock()
            client._late_done.clear()
            client._first_wrong[v.id or 0] = now
            assert client._next_late(v) is not None
            old = dataclasses.replace(v, start=now - a.cfg.retention.vcr + 0.01)
            assert client._next_late(old) is None   # 0.05 s from now is past its retention
        finally:
            await client.close()
