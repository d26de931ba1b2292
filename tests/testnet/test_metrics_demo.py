"""Acceptance (issue 16, metrics): the demo network with every role's Prometheus listener on,
scraped with prometheus_client's text parser before and after each step of the story; the
series for validations, admissions, fallbacks and overlay lookups move as the story says."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import requires_tool
from tests.ports import free_port
from vipr.metrics import metric_names
from vipr.testnet.demo import Step, Story, Timeline
from vipr.testnet.network import TestNetwork
from vipr.testnet.workdir import Layout, make_workdir

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ROLES = ("overlay", "pvp", "proxy")
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "vipr-alerts.yml"


FAMILIES: set[str] = set()   # every family name seen in any scrape of this run


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200, url
        assert resp.headers["Content-Type"].startswith("text/plain"), url
        text = await resp.text()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        FAMILIES.add(fam.name)
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Scrapes:
    def __init__(self, lay: Layout, session: aiohttp.ClientSession) -> None:
        self.lay = lay
        self.session = session

    async def all(self) -> dict[tuple[str, str], Samples]:
        keys = list(self.lay.metrics)
        got = await asyncio.gather(*(scrape(self.session, self.lay.metrics_url(*k))
                                     for k in keys))
        return dict(zip(keys, got, strict=True))


@pytest.fixture
async def workdir() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vm", dir="/tmp") as d:   # short AF_UNIX paths
        yield Path(d)


@pytest.mark.timeout(240)
async def test_demo_series_move_as_the_story_runs(workdir: Path) -> None:
    lay = await asyncio.to_thread(make_workdir, workdir / "wd", metrics_port=free_port)
    assert len(lay.metrics) == 9
    net = TestNetwork(lay)
    tl = Timeline(True)
    try:
        async with aiohttp.ClientSession() as session:
            await net.start()
            assert not net.failed, net.failed
            sc = Scrapes(lay, session)
            story = Story(net, tl)
            a, b, c = story.a, story.b, story.c

            async def step(n: int) -> Step:
                s = Step(n, f"step {n}")
                await getattr(story, f"step{n}")(s)
                assert s.passed, (n, s.problems)
                return s

            # the overlays join one after the other (their sockets answer while joining):
            # vipr_overlay_joined goes to 1 on each
            async def all_joined() -> dict[tuple[str, str], Samples] | None:
                got = await sc.all()
                ok = all(value(got[(k, "overlay")], "vipr_overlay_joined") == 1.0
                         for k in (a, b, c))
                return got if ok else None

            s0 = await net.wait_for("every overlay joined (metrics)", all_joined, 30.0, 0.3)
            for key in (a, b, c):
                assert value(s0[(key, "overlay")], "vipr_overlay_nodes", state="joined") == 1
                assert value(s0[(key, "overlay")], "vipr_overlay_neighbours",
                             kind="successors") >= 1
                assert value(s0[(key, "proxy")], "vipr_proxy_route_cache_routes") == 0
                # every role's listeners are watched: the gate's series exist from the start
                assert (("vipr_listener_connections", frozenset({("listener", "pvp")}))
                        in s0[(key, "pvp")])
                assert (("vipr_listener_connections", frozenset({("listener", "reload")}))
                        in s0[(key, "overlay")])
                assert (("vipr_listener_connections",
                         frozenset({("listener", "sip_federation")})) in s0[(key, "proxy")])

            # step 1: over the PSTN; A's pvp then validates the VCR against B's and C's claims
            await step(1)
            await step(2)
            s2 = await sc.all()
            oa0, oa2 = s0[(a, "overlay")], s2[(a, "overlay")]
            found = (value(oa2, "vipr_overlay_lookups_total", result="found")
                     - value(oa0, "vipr_overlay_lookups_total", result="found"))
            assert found >= 2, "the story's and A's pvp lookups of B's number"
            lookups = total(oa2, "vipr_overlay_lookups_total") - \
                total(oa0, "vipr_overlay_lookups_total")
            timed = value(oa2, "vipr_overlay_lookup_duration_seconds_count") - \
                value(oa0, "vipr_overlay_lookup_duration_seconds_count")
            assert timed == lookups, "every lookup is timed once"
            assert value(oa2, "vipr_overlay_lookup_duration_seconds_sum") > \
                value(oa0, "vipr_overlay_lookup_duration_seconds_sum")
            # one VCR, two claims: B's server said ok once, C's failed once; A learned once
            def delta(key: str, role: str, name: str, **labels: str) -> float:
                return total(s2[(key, role)], name, **labels) - \
                    total(s0[(key, role)], name, **labels)

            assert delta(b, "pvp", "vipr_pvp_validations_total", side="server",
                         outcome="ok") == 1
            assert delta(b, "pvp", "vipr_pvp_validations_total", side="server") == 1
            assert delta(c, "pvp", "vipr_pvp_validations_total", side="server",
                         outcome="ok") == 0
            assert delta(c, "pvp", "vipr_pvp_validations_total", side="server") == 1
            assert delta(a, "pvp", "vipr_pvp_validations_total", side="client",
                         outcome="learned", reason="ticket") == 1
            assert delta(a, "pvp", "vipr_pvp_validations_total", side="client",
                         outcome="failed") == 1
            assert delta(a, "pvp", "vipr_pvp_vcr_validations_total", outcome="learned") == 1
            assert delta(a, "pvp", "vipr_store_transaction_duration_seconds_count",
                         backend="sqlite", operation="write") >= 1
            # the call's VCR was written by both proxies; A's proxy caches the learned route
            for key in (a, b):
                assert delta(key, "proxy", "vipr_proxy_vcr_changes_total", state="written") >= 1
                assert delta(key, "proxy", "vipr_proxy_vcr_changes_total", state="failed") == 0
            assert value(s2[(a, "proxy")], "vipr_proxy_route_cache_routes") == 1
            assert value(s2[(a, "proxy")], "vipr_proxy_route_cache_oldest_age_seconds") < 120

            # step 3: direct SIP/TLS with the ticket: B admits it, reason ok
            await step(3)
            s3 = await sc.all()
            pb2, pb3 = s2[(b, "proxy")], s3[(b, "proxy")]
            assert value(pb3, "vipr_proxy_admissions_total", reason="ok") - \
                value(pb2, "vipr_proxy_admissions_total", reason="ok") == 1
            assert total(pb3, "vipr_proxy_admissions_total") - \
                total(pb2, "vipr_proxy_admissions_total") == 1

            # step 4: C's rogue INVITEs: no ticket, forged, replayed: three refusals, no ok
            await step(4)
            s4 = await sc.all()
            pb4 = s4[(b, "proxy")]
            assert total(pb4, "vipr_proxy_admissions_total") - \
                total(pb3, "vipr_proxy_admissions_total") == 3
            assert value(pb4, "vipr_proxy_admissions_total", reason="ok") == \
                value(pb3, "vipr_proxy_admissions_total", reason="ok")
            assert value(pb4, "vipr_proxy_admissions_total", reason="missing") - \
                value(pb3, "vipr_proxy_admissions_total", reason="missing") == 1
            assert value(pb4, "vipr_proxy_admissions_total", reason="domain-mismatch") - \
                value(pb3, "vipr_proxy_admissions_total", reason="domain-mismatch") == 1

            # step 5: B's federation listener is gone: A's call falls back to the PSTN once
            await step(5)
            pa4, pa5 = s4[(a, "proxy")], (await scrape(session, lay.metrics_url(a, "proxy")))
            assert total(pa5, "vipr_proxy_pstn_fallbacks_total") - \
                total(pa4, "vipr_proxy_pstn_fallbacks_total") == 1
            assert value(pa5, "vipr_proxy_pstn_fallbacks_total", cause="connect") - \
                value(pa4, "vipr_proxy_pstn_fallbacks_total", cause="connect") == 1
            # every family vipr.metrics declares was exported by some role (the hook's only
            # when a hook is configured, which the demo has not)
            missing = {n for n in metric_names() if not n.startswith("vipr_hook_")} - FAMILIES
            assert not missing, missing
            # B's proxy came back without its federation interface: no such listener now
            pb5 = await scrape(session, lay.metrics_url(b, "proxy"))
            assert not any(ls == frozenset({("listener", "sip_federation")})
                           for n, ls in pb5 if n == "vipr_listener_connections")
    finally:
        await net.stop()


def _prometheus_config(lay: Layout, interval: str) -> dict[str, object]:
    jobs = []
    for role in ROLES:
        targets = [f"127.0.0.1:{lay.metrics[(p.key, role)]}" for p in lay.providers]
        jobs.append({"job_name": f"vipr-{role}", "scrape_interval": interval,
                     "static_configs": [{"targets": targets}]})
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(ALERTS)], "scrape_configs": jobs}


async def _query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql},
                           timeout=aiohttp.ClientTimeout(total=10)) as resp:
        doc = await resp.json()
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


@pytest.mark.slow
@requires_tool("prometheus")
@pytest.mark.timeout(240)
async def test_real_prometheus_scrapes_every_role(workdir: Path) -> None:
    """Debian's Prometheus scrapes the nine endpoints of the demo network (with the shipped
    alert rules loaded); PromQL sees the story's admission and every target up."""
    lay = await asyncio.to_thread(make_workdir, workdir / "wd", metrics_port=free_port)
    web = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(_prometheus_config(lay, "1s")))
    net = TestNetwork(lay)
    prom_log = (workdir / "prometheus.log").open("wb")
    prom = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{web}", stdout=asyncio.subprocess.DEVNULL,
        stderr=prom_log)
    base = f"http://127.0.0.1:{web}"
    try:
        async with aiohttp.ClientSession() as session:
            await net.start()
            assert not net.failed, net.failed
            story = Story(net, Timeline(True))

            async def all_up() -> bool:
                got = await _query(session, base, 'up{job=~"vipr-.*"} == 1')
                return len(got) == 9

            async def aio_check(promql: str, want: float) -> bool:
                got = await _query(session, base, promql)
                return bool(got) and float(got[0]["value"][1]) == want

            await net.wait_for("Prometheus scrapes all nine endpoints", all_up, 60.0, 0.5)
            await net.wait_for("every overlay joined (PromQL)",
                               lambda: aio_check("sum(vipr_overlay_joined)", 3.0), 30.0, 0.5)
            for n in (1, 2, 3):
                s = Step(n, f"step {n}")
                await getattr(story, f"step{n}")(s)
                assert s.passed, (n, s.problems)
            b_proxy = f"127.0.0.1:{lay.metrics[(story.b, 'proxy')]}"
            await net.wait_for(
                "B's ok admission in Prometheus",
                lambda: aio_check(f'sum(vipr_proxy_admissions_total{{instance="{b_proxy}",'
                                  f'reason="ok"}})', 1.0), 20.0, 0.5)
            async with session.get(f"{base}/api/v1/rules") as resp:
                rules = (await resp.json())["data"]["groups"][0]["rules"]
            assert sorted(r["name"] for r in rules) == [
                "ViprListenerDown", "ViprOverlayNotJoined", "ViprPstnFallbackRateHigh",
                "ViprValidationSuccessRateLow"]
            assert all(r["health"] == "ok" for r in rules), rules
            assert not [r for r in rules if r["state"] == "firing"], rules
    finally:
        await net.stop()
        prom.terminate()
        try:
            await asyncio.wait_for(prom.wait(), 20.0)
        except TimeoutError:
            prom.kill()
            await prom.wait()
        prom_log.close()
