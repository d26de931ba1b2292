"""Calls through a real `vipr proxy` while it is killed with SIGKILL (issue 13 defect 6).

`Phones` places calls on the proxy's `internal` interface (the provider's phones) and
`Gateway` answers them on the PSTN gateway address, both on the project's SIP core over UDP,
so a call can stay up across a kill and be hung up after the restart. `kill_under_load` is
the "kills under load" loop the VCR tests and bench/attack.py share: it counts answered calls
(the caller saw a 2xx) that do not end with exactly one complete VCR.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.proxy.proxy_helpers import A_NUMBER, B_NUMBER, Provider, ProxyProcess
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.transport import Source
from vipr.store import Store
from vipr.store.models import Vcr


@dataclass
class PlacedCall:
    """One call as the caller saw it (wall-clock times, comparable with the VCR's)."""

    call_id: str
    from_tag: str
    answered_at: float | None = None
    to: str = ""
    bye_sent_at: float | None = None
    bye_status: int | None = None


class Phones:
    """A UAC on its own UDP port calling `callee` through the proxy at host:port."""

    def __init__(self, host: str, port: int, callee: str = B_NUMBER) -> None:
        self.host, self.port, self.callee = host, port, callee
        self.ep = SipEndpoint(lambda req, src, srv: None)
        self.local_port = 0

    async def start(self) -> Phones:
        tr = await self.ep.listen("udp", "127.0.0.1", 0)
        self.local_port = tr.local_port
        return self

    async def close(self) -> None:
        await self.ep.close()

    def _request(self, method: str, c: PlacedCall, cseq: int, to: str) -> SipRequest:
        return SipRequest(method, f"sip:{self.callee}@{self.host}:{self.port};user=phone",
                          Headers([
                              ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.local_port}"
                                      f";branch={new_branch()}"),
                              ("Max-Forwards", "70"),
                              ("From", f"<sip:{A_NUMBER}@127.0.0.1>;tag={c.from_tag}"),
                              ("To", to), ("Call-ID", c.call_id), ("CSeq", f"{cseq} {method}"),
                              ("Contact", f"<sip:phone@127.0.0.1:{self.local_port}>")]))

    async def call(self, timeout: float = 5.0) -> PlacedCall:
        """INVITE; on a 2xx note the time and ACK it. No answer within `timeout`: not answered
        (the proxy may have been killed with the INVITE in flight)."""
        c = PlacedCall(secrets.token_hex(8) + "@phones.test", secrets.token_hex(4))
        inv = self._request("INVITE", c, 1, f"<sip:{self.callee}@b.test>")
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            client = await self.ep.send_request(inv, "udp", self.host, self.port)
            final = await client.final(timeout)
            if 200 <= final.status < 300:
                c.answered_at = time.time()
                c.to = final.headers.get("to") or ""
                await self.ep.send_stateless(self._request("ACK", c, 1, c.to), "udp",
                                             self.host, self.port)
        return c

    async def hang_up(self, c: PlacedCall, timeout: float = 40.0) -> int | None:
        """BYE through the proxy (UDP retransmissions carry it over a restart); its status."""
        bye = self._request("BYE", c, 2, c.to)
        c.bye_sent_at = time.time()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            client = await self.ep.send_request(bye, "udp", self.host, self.port)
            c.bye_status = (await client.final(timeout)).status
        return c.bye_status


class Gateway:
    """The PSTN gateway: answers every INVITE with 200 at once, and every BYE with 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ep = SipEndpoint(self._on_request)
        self.invites = 0
        self.byes = 0

    async def start(self) -> Gateway:
        await self.ep.listen("udp", "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        await self.ep.close()

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:
            return   # ACK
        if req.method == "INVITE":
            self.invites += 1
            server.respond(200, to_tag=secrets.token_hex(4),
                           headers=(("Contact", f"<sip:gw@127.0.0.1:{self.port}>"),))
        else:
            self.byes += int(req.method == "BYE")
            server.respond(200)


async def stored_vcrs(db: Path) -> dict[str, list[Vcr]]:
    """Every VCR in the store by Call-ID."""
    out: dict[str, list[Vcr]] = {}
    async with Store.open(db) as store:
        for v in await store.list_vcrs(limit=None):
            out.setdefault(v.call_id, []).append(v)
    return out


@dataclass
class KillReport:
    kills: int = 0
    calls_placed: int = 0
    calls_answered: int = 0
    byes_ok: int = 0
    answered_without_vcr: int = 0        # the acceptance figure: must be 0
    answered_without_complete_vcr: int = 0
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "missing"}


async def kill_under_load(p: Provider, proxy: ProxyProcess, *, kills: int = 5,
                          calls_per_round: int = 30, spacing: float = 0.01,
                          answer_timeout: float = 5.0) -> KillReport:
    """`kills` rounds: place `calls_per_round` calls `spacing` s apart while hanging up the
    previous round's calls, SIGKILL the proxy halfway through, restart it. Then hang up every
    answered call and check the store. `proxy` must be running; it is running afterwards."""
    rep = KillReport()
    gw = await Gateway(p.gateway).start()
    phones = await Phones("127.0.0.1", p.internal).start()
    up: list[PlacedCall] = []          # answered, not hung up yet
    answered: list[PlacedCall] = []
    byes: list[asyncio.Task[int | None]] = []
    try:
        for _ in range(kills):
            placing: list[asyncio.Task[PlacedCall]] = []
            ending, up = up, []
            for i in range(calls_per_round):
                placing.append(asyncio.create_task(phones.call(answer_timeout)))
                if i < len(ending):
                    byes.append(asyncio.create_task(phones.hang_up(ending[i])))
                if i == calls_per_round // 2:
                    await proxy.stop(signal.SIGKILL)
                    rep.kills += 1
                    await proxy.start()
                await asyncio.sleep(spacing)
            byes += [asyncio.create_task(phones.hang_up(c)) for c in ending[calls_per_round:]]
            for c in await asyncio.gather(*placing):
                rep.calls_placed += 1
                if c.answered_at is not None:
                    answered.append(c)
                    up.append(c)
        byes += [asyncio.create_task(phones.hang_up(c)) for c in up]
        statuses = await asyncio.gather(*byes)
        rep.byes_ok = sum(s == 200 for s in statuses)
    finally:
        for t in byes:
            t.cancel()
        await phones.close()
        await gw.close()
    rep.calls_answered = len(answered)
    vcrs = await stored_vcrs(p.db)
    for c in answered:
        got = vcrs.get(c.call_id, [])
        if not got:
            rep.answered_without_vcr += 1
            rep.missing.append(c.call_id)
        if len(got) != 1 or got[0].state != "complete":
            rep.answered_without_complete_vcr += 1
    return rep
