"""The HTTP/JSON hook (DESIGN §11): a real `vipr proxy` process, real HTTP requests."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ports import free_port
from tests.proxy.proxy_helpers import (
    B_NUMBER,
    ProxyProcess,
    add_route,
    get_route,
    make_pki,
    mint_for,
    write_provider,
)
from vipr.proxy.hook.server import HookCredentials
from vipr.store import Store

A_DOMAIN = "a.example.net"
B_URI = "sip:127.0.0.1:5999;transport=tls"
TOKEN = "s3cret-token"


class Hook:
    def __init__(self, proc: ProxyProcess, port: int, token: str | None) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **self.headers, **kw.pop("headers", {})}
        async with self.session.post(self.base + path, data=data, headers=headers,
                                     **kw) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path, headers=self.headers) as r:
            return r.status, await r.text()


async def _start(tmp_path: Path, *, token: str | None = TOKEN,
                 routes: tuple[str, ...] = ()) -> tuple[ProxyProcess, Hook]:
    port = free_port()
    hook = [f'hook: {{listen: "127.0.0.1:{port}", max_body: 4096'
            + (f', token: "{token}"' if token else "") + "}"]
    p = write_provider(tmp_path, "a", A_DOMAIN, [B_NUMBER], None, interfaces=tuple(hook),
                       extra=("dialplan: {country_code: 44}",))
    for number in routes:
        ticket = await mint_for(p.db, number, A_DOMAIN)
        await add_route(p.db, number, B_URI, ticket, "b.example.net")
    proc = await ProxyProcess(p).start()
    return proc, Hook(proc, port, token)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[ProxyProcess, Hook]]:
    proc, hook = await _start(tmp_path, routes=("+33140000000",))
    try:
        yield proc, hook
    finally:
        await hook.session.close()
        await proc.stop()


async def test_route_answers_the_inline_decision(stack: tuple[ProxyProcess, Hook]) -> None:
    _, hook = stack
    # a national-format number of the dialplan's country, no route: the PSTN
    st, body = await hook.post("/v1/route", {"caller": "020 7123 0000", "callee": "02079460000",
                                             "call_id": "c1"})
    assert (st, body["action"], body["reason"], body["number"]) == (
        200, "pstn", "no-route", "+442079460000")
    # the learned route, as international digits and as a tel: URI
    for callee in ("0033140000000", "tel:+33-1-40-00-00-00"):
        st, body = await hook.post("/v1/route", {"callee": callee, "call_id": "c2"})
        assert st == 200 and body["action"] == "vipr", body
        assert body["uris"] == ["sip:+33140000000@127.0.0.1:5999;transport=tls;user=phone"]
        assert body["headers"]["VIPR-Ticket"]
        assert body["timeout_ms"] == 1000
    # our own number: not a route (the edge delivers it)
    st, body = await hook.post("/v1/route", {"callee": B_NUMBER, "call_id": "c3"})
    assert (body["action"], body["reason"]) == ("pstn", "our-number")


async def test_three_failures_drop_the_route(stack: tuple[ProxyProcess, Hook]) -> None:
    proc, hook = stack
    res = {"call_id": "x", "callee": "+33140000000"}
    st, body = await hook.post("/v1/route/result", {**res, "outcome": "answered",
                                                    "status": 200})
    assert (st, body) == (200, {"counted": False, "dropped": False})
    st, body = await hook.post("/v1/route/result", {**res, "outcome": "failed", "status": 486})
    assert body["counted"] is False   # busy is the callee's answer, not a route failure
    for i, outcome in enumerate(("timeout", "connect")):
        st, body = await hook.post("/v1/route/result", {**res, "outcome": outcome})
        assert (st, body["counted"], body["dropped"]) == (200, True, False), i
    st, body = await hook.post("/v1/route/result", {**res, "outcome": "failed", "status": 503})
    assert body == {"counted": True, "dropped": True}
    st, body = await hook.post("/v1/route", {"callee": "+33140000000", "call_id": "c"})
    assert (body["action"], body["reason"]) == ("pstn", "no-route")
    for _ in range(50):   # the store write runs off the request path
        if await get_route(proc.p.db, "+33140000000") is None:
            break
        await asyncio.sleep(0.05)
    assert await get_route(proc.p.db, "+33140000000") is None


async def test_admit_checks_the_ticket(stack: tuple[ProxyProcess, Hook]) -> None:
    proc, hook = stack
    good = await mint_for(proc.p.db, B_NUMBER, "c.example.org")
    req = {"callee": "sip:02071234567@edge", "ticket": good, "peer_domains": ["c.example.org"],
           "call_id": "in1"}
    st, body = await hook.post("/v1/admit", req)
    assert (st, body) == (200, {"admit": True})
    cases = {
        "domain-mismatch": {**req, "peer_domains": ["evil.example.org"]},
        "missing": {**req, "ticket": None},
        "not-tls": {**req, "peer_domains": []},
        "number-mismatch": {**req, "callee": "+442071234568"},
        "forged": {**req, "ticket": good[:-4] + ("AAAA" if not good.endswith("AAAA")
                                                 else "BBBB")},
    }
    for name, case in cases.items():
        st, body = await hook.post("/v1/admit", case)
        assert st == 200 and body["admit"] is False and body["status"] == 403, (name, body)
    status = await proc.status()
    assert status["counters"]["admission_ok"] == 1


async def _vcrs(db: Path) -> list[Any]:
    async with Store.open(db) as store:
        return await store.list_vcrs()


async def test_call_events_and_cdrs_become_vcrs(stack: tuple[ProxyProcess, Hook]) -> None:
    proc, hook = stack
    t = time.time() - 100
    # native events: the answer is committed as an open VCR before the 2xx
    st, body = await hook.post("/v1/calls", {"event": "answered", "call_id": "n1",
                                             "direction": "originating", "caller": "020 7123 0000",
                                             "callee": "0033140000000", "time": t})
    assert st == 200 and isinstance(body["vcr"], int)
    [v] = await _vcrs(proc.p.db)
    assert (v.state, v.start, v.caller, v.callee) == ("open", t, "+442071230000", "+33140000000")
    st, body = await hook.post("/v1/calls", {"event": "ended", "call_id": "n1",
                                             "direction": "originating", "time": t + 42})
    assert st == 200
    [v] = await _vcrs(proc.p.db)
    assert (v.state, v.start, v.stop) == ("complete", t, t + 42)
    # FreeSWITCH mod_json_cdr: answer time, not the setup time, is the start
    fs = {"core-uuid": "u", "channel_data": {"direction": "outbound"},
          "variables": {"uuid": "f-1", "sip_call_id": "fs-call%401",
                        "caller_id_number": "02071230000",
                        "destination_number": "0033140000001", "start_epoch": str(int(t)),
                        "answer_epoch": str(int(t) + 7), "answer_uepoch": str(int(t + 7) * 10**6),
                        "end_epoch": str(int(t) + 67), "end_uepoch": str(int(t + 67) * 10**6),
                        "vipr_direction": "originating"},
          "callflow": [{"times": {"created_time": str(int(t) * 10**6)}}]}
    st, body = await hook.post("/v1/calls", fs)
    assert st == 200 and body["vcr"]
    fsv = [v for v in await _vcrs(proc.p.db) if v.call_id == "fs-call@1"]
    assert [(v.start, v.stop, v.callee) for v in fsv] == [(int(t) + 7, int(t) + 67,
                                                            "+33140000001")]
    st, body = await hook.post("/v1/calls", {**fs, "variables": {**fs["variables"],
                                                                "answer_epoch": "0",
                                                                "answer_uepoch": "0"}})
    assert (st, body) == (200, {"vcr": None, "reason": "unanswered"})
    # Kamailio acc_json records: the 2xx INVITE, then the BYE
    acc = {"method": "INVITE", "callid": "k1", "sip_code": "200", "time": int(t) + 1,
           "src_user": "+442071230000", "dst_user": "+33140000002"}
    st, _ = await hook.post("/v1/calls?direction=terminating", acc)
    assert st == 200
    st, body = await hook.post("/v1/calls?direction=terminating",
                               {"method": "BYE", "callid": "k1", "time": int(t) + 31})
    assert st == 200 and body["vcr"]
    [kv] = [v for v in await _vcrs(proc.p.db) if v.call_id == "k1"]
    assert (kv.direction, kv.start, kv.stop, kv.state) == ("terminating", int(t) + 1,
                                                           int(t) + 31, "complete")
    st, body = await hook.post("/v1/calls", {"event": "ended", "call_id": "nope",
                                             "direction": "originating", "time": t})
    assert st == 404


async def test_bad_input_is_a_4xx_json_and_the_daemon_stays_up(
        stack: tuple[ProxyProcess, Hook]) -> None:
    proc, hook = stack
    bad: list[tuple[str, bytes | dict[str, Any], int]] = [
        ("/v1/route", b"{not json", 400),
        ("/v1/route", b"\xff\xfe", 400),
        ("/v1/route", b"[1, 2]", 400),
        ("/v1/route", b"[" * 5000 + b"]" * 5000, 413),
        ("/v1/route", {"callee": 5.5, "call_id": "x"}, 400),
        ("/v1/route", {"callee": ["+1"], "call_id": "x"}, 400),
        ("/v1/route", {"call_id": "x"}, 400),
        ("/v1/route/result", {"call_id": "x", "callee": "+1", "outcome": "odd"}, 400),
        ("/v1/route/result", {"call_id": "x", "callee": "+1", "outcome": "failed",
                              "status": "503"}, 400),
        ("/v1/admit", {"callee": "+1", "call_id": "x", "peer_domains": [1]}, 400),
        ("/v1/calls", {"event": "answered", "call_id": "x"}, 400),
        ("/v1/calls", {"event": "answered", "call_id": "x", "direction": "sideways",
                       "callee": "+1", "time": 1}, 400),
        ("/v1/calls", {"event": "ended", "call_id": "x", "direction": "originating",
                       "time": "soon"}, 400),
        ("/v1/calls", {"variables": {"uuid": "u", "destination_number": "bob",
                                     "vipr_direction": "originating"}}, 400),
        ("/v1/calls", {"method": "OPTIONS", "callid": "x", "direction": "originating"}, 400),
        ("/v1/route", b"x" * 10_000, 413),
        ("/v2/route", {}, 404),
    ]
    for path, body, want in bad:
        st, got = await hook.post(path, body)
        assert st == want and isinstance(got.get("error"), str), (path, body, st, got)
    st, got = await hook.post("/v1/route", b"{}", headers={"Content-Type": "text/plain"})
    assert st == 415
    async with hook.session.get(hook.base + "/v1/route", headers=hook.headers) as r:
        assert r.status == 405 and "error" in await r.json()
    # the bearer token: required everywhere but /healthz
    async with hook.session.post(hook.base + "/v1/route", json={"callee": "+1", "call_id": "x"},
                                 headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401 and (await r.json())["error"]
    # the same token as Basic credentials, user "vipr" (RFC 7617): a wrong user, a wrong
    # password or a wrong bearer token is 401 with both challenges
    for user, pw in (("vipr", TOKEN), ("admin", TOKEN), ("vipr", "wrong"), ("vipr", "")):
        async with hook.session.post(hook.base + "/v1/route",
                                     json={"callee": "+1", "call_id": "x"},
                                     auth=aiohttp.BasicAuth(user, pw)) as r:
            want = 200 if (user, pw) == ("vipr", TOKEN) else 401
            assert r.status == want, (user, pw, r.status)
            if want == 401:
                assert sorted(c.split()[0] for c in r.headers.getall("WWW-Authenticate")) \
                    == ["Basic", "Bearer"]
    async with hook.session.get(hook.base + "/healthz") as r:
        assert r.status == 200 and (await r.json())["ok"] is True
    st, text = await hook.get("/metrics")
    assert st == 200
    assert 'vipr_hook_requests_total{path="/v1/route",status="400"}' in text
    assert "vipr_proxy_route_cache_routes 1.0" in text
    assert proc.proc is not None and proc.proc.returncode is None
    assert "Traceback" not in proc.log_text()


async def test_connection_cap_and_mutual_tls(tmp_path: Path) -> None:
    """DESIGN §10 for the hook's listener: connections over max_connections are refused at
    accept; with tls configured, a client needs a certificate from the CA."""
    pki = make_pki(tmp_path / "pki")
    cert, key = pki.leaf("hook.a.example.net")
    port = free_port()
    hook = [f'hook: {{listen: "127.0.0.1:{port}", max_connections: 2,'
            f' tls: {{cert: "{cert}", key: "{key}", ca: "{pki.ca}"}}}}']
    p = write_provider(tmp_path, "a", A_DOMAIN, [B_NUMBER], None, interfaces=tuple(hook))
    proc = await ProxyProcess(p).start()
    held: list[asyncio.StreamWriter] = []
    try:
        ctx = pki.client_ctx("edge.a.example.net")
        ctx.check_hostname = False
        async with aiohttp.ClientSession() as s:
            async with s.get(f"https://127.0.0.1:{port}/healthz", ssl=ctx) as r:
                assert r.status == 200
            bare = ssl.create_default_context(cafile=str(pki.ca))
            bare.check_hostname = False
            with pytest.raises(aiohttp.ClientError):   # no client certificate
                async with s.get(f"https://127.0.0.1:{port}/healthz", ssl=bare) as r:
                    await r.read()
        for _ in range(2):
            _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                 server_hostname="hook.a.example.net")
            held.append(w)
        status = await proc.status()
        assert status["hook"]["connections"]["open"] == 2   # type: ignore[index]
        with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
            r3, w3 = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="hook.a.example.net"), 10)
            w3.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(r3.readexactly(12), 10)
        status = await proc.status()
        assert sum(status["hook"]["connections"]["refused"].values()) >= 1  # type: ignore[index]
    finally:
        for w in held:
            w.close()
        await proc.stop()


def test_hook_credentials_compare_the_whole_secret() -> None:
    """Bearer TOKEN or Basic vipr:TOKEN (RFC 6750 §2.1, RFC 7617 §2), nothing else."""
    creds = HookCredentials("t0k-en")

    def basic(raw: bytes) -> str:
        return "Basic " + base64.b64encode(raw).decode()

    good = ["Bearer t0k-en", "bearer t0k-en", basic(b"vipr:t0k-en"),
            "BASIC " + basic(b"vipr:t0k-en")[6:]]
    bad = ["", "Bearer", "Bearer t0k-e", "Bearer t0k-enx", "t0k-en", "Basic t0k-en",
           basic(b"vipr:t0k-e"), basic(b"root:t0k-en"), basic(b"t0k-en"), basic(b":t0k-en"),
           basic(b"vipr:t0k-en\n"), "Basic !!!notbase64", "Basic dmlwcjp0MGstZW4",
           "Basic \u00e9", "Digest vipr:t0k-en"]
    assert all(creds.check(h) for h in good)
    assert not any(creds.check(h) for h in bad), [h for h in bad if creds.check(h)]
