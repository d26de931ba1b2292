"""A test phone on our SIP core (UDP): places wideband calls, answers, reports the SDP.

    phone = Phone("a-phone", "+14085550001", "a.example.net", listen=("127.0.0.1", 5090),
                  outbound=("127.0.0.1", 5060))     # the provider proxy's internal interface
    await phone.start()
    result = await phone.call("+442071230001", hold=1.0)
    result.status, result.answer.audio, result.answer.video, result.ringing
    phone.rings                                      # calls it answered, with the offer it got

Outgoing calls offer opus, G.722, PCMU, PCMA and H.264/VP8 video (sdp.phone_offer); incoming
calls ring (180), are answered at once with what the phone supports of the offer, and the
200 OK is retransmitted until the ACK (RFC 3261 §13.3.1.4). In-dialog requests go to the
outbound proxy with the dialog's route set (RFC 3261 §12.2.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse, make_cancel
from vipr.proxy.sip.transport import Source
from vipr.proxy.sip.uri import format_host
from vipr.testnet.dialog import Dialog, LocalAddress, new_tag, user_of
from vipr.testnet.sdp import SdpError, SdpSummary, answer_for, phone_offer, summarize

__all__ = ["CallResult", "Phone", "Ring"]

log = logging.getLogger("vipr.testnet.phone")


@dataclass
class CallResult:
    """What the caller saw: the final status, whether it rang, the SDP it finally got."""

    callee: str
    status: int
    reason: str = ""
    ringing: bool = False
    offered: SdpSummary | None = None
    answer: SdpSummary | None = None
    setup_time: float | None = None      # INVITE → final answer, seconds
    bye_status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.bye_status == 200

    def as_dict(self) -> dict[str, object]:
        return {
            "callee": self.callee, "status": self.status, "reason": self.reason,
            "ringing": self.ringing, "bye_status": self.bye_status, "error": self.error,
            "setup_ms": None if self.setup_time is None else round(self.setup_time * 1000, 1),
            "offered": self.offered.as_dict() if self.offered else None,
            "answer": self.answer.as_dict() if self.answer else None,
        }


@dataclass
class Ring:
    """An incoming call the phone answered."""

    caller: str
    callee: str
    call_id: str
    offer: SdpSummary | None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Phone:
    """One phone line: `number` at `domain`, listening on `listen`, calls via `outbound`."""

    def __init__(self, name: str, number: str, domain: str, *, listen: tuple[str, int],
                 outbound: tuple[str, int], answer_delay: float | None = 0.0) -> None:
        """`answer_delay`: seconds of ringing before answering (None: never answers)."""
        self.name = name
        self.answer_delay = answer_delay
        self.number = number
        self.domain = domain
        self.listen = listen
        self.outbound = outbound
        self.endpoint: SipEndpoint | None = None
        self.local = LocalAddress("udp", listen[0], listen[1])
        self.rings: list[Ring] = []
        self._rang = asyncio.Condition()
        self._dialogs: dict[str, Dialog] = {}
        self._acked: dict[str, asyncio.Event] = {}
        self._hung_up: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        self.endpoint = SipEndpoint(self._on_request, validate=False)
        tr = await self.endpoint.listen("udp", self.listen[0], self.listen[1])
        self.local = LocalAddress("udp", self.listen[0], tr.local_port)

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.close()

    def offer_summary(self) -> SdpSummary:
        """What this phone offers on outgoing calls."""
        return summarize(phone_offer(self.local.host))

    async def wait_rings(self, count: int, timeout: float) -> bool:
        """True once `count` calls have rung in total, False after `timeout`."""
        async with self._rang:
            try:
                await asyncio.wait_for(self._rang.wait_for(lambda: len(self.rings) >= count),
                                       timeout)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ placing calls

    async def call(self, callee: str, *, hold: float = 1.0, timeout: float = 20.0,
                   video: bool = True, cancel_after: float | None = None) -> CallResult:
        """Call `callee`; on 200 ACK it, keep it `hold` seconds, hang up. `cancel_after`:
        CANCEL the call if it has no final answer by then. Never raises for call failures:
        they are in the result."""
        assert self.endpoint is not None
        ep, loop = self.endpoint, asyncio.get_running_loop()
        host = format_host(self.outbound[0])
        offer = phone_offer(self.local.host, video=video)
        invite = SipRequest("INVITE", f"sip:{callee}@{host}:{self.outbound[1]}", Headers([
            ("Via", self.local.via()), ("Max-Forwards", "70"),
            ("From", f"<sip:{self.number}@{self.domain}>;tag={new_tag()}"),
            ("To", f"<sip:{callee}@{self.domain}>"),
            ("Call-ID", f"{secrets.token_hex(8)}@{self.name}"), ("CSeq", "1 INVITE"),
            ("Contact", self.local.contact(self.number)),
            ("Content-Type", "application/sdp")]), offer)
        result = CallResult(callee, 0, offered=summarize(offer))
        dialog: Dialog | None = None

        def on_response(resp: SipResponse) -> None:
            if resp.status in (180, 183):
                result.ringing = True
            elif 200 <= resp.status < 300 and dialog is not None:
                # a retransmitted 2xx: our ACK was lost, send it again (§13.2.2.4)
                loop.create_task(self._ack(dialog))

        started = loop.time()
        try:
            client = await ep.send_request(invite, "udp", *self.outbound,
                                           on_response=on_response)
            if cancel_after is not None:
                try:
                    final = await client.final(cancel_after)
                except TimeoutError:
                    cancel = await ep.send_request(make_cancel(invite), "udp", *self.outbound)
                    result.reason = f"CANCEL {(await cancel.final(timeout)).status}"
                    final = await client.final(timeout)
            else:
                final = await client.final(timeout)
        except (TimeoutError, ConnectionError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.status = 408
            return result
        result.setup_time = loop.time() - started
        result.status = final.status
        result.reason = f"{final.reason}, {result.reason}" if result.reason else final.reason
        if final.status >= 300:
            return result
        with contextlib.suppress(SdpError):
            result.answer = summarize(final.body)
        dialog = Dialog.as_uac(invite, final, self.outbound)
        hung_up = self._hung_up.setdefault(dialog.call_id, asyncio.Event())
        self._dialogs[dialog.call_id] = dialog
        await self._ack(dialog)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hung_up.wait(), hold)
        try:
            if hung_up.is_set():
                result.bye_status = 200        # the other side hung up first
                return result
            bye = dialog.request("BYE", self.local.via())
            try:
                bye_client = await ep.send_request(bye, "udp", *self.outbound)
                result.bye_status = (await bye_client.final(timeout)).status
            except (TimeoutError, ConnectionError) as exc:
                result.error = f"BYE: {type(exc).__name__}: {exc}"
            return result
        finally:
            self._dialogs.pop(dialog.call_id, None)
            self._hung_up.pop(dialog.call_id, None)

    async def _ack(self, dialog: Dialog) -> None:
        assert self.endpoint is not None
        await self.endpoint.send_stateless(dialog.request("ACK", self.local.via()), "udp",
                                           *dialog.next_hop)

    # ------------------------------------------------------------------ answering

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:
            ev = self._acked.get(req.call_id)
            if ev is not None:
                ev.set()
            return
        if req.method == "INVITE" and req.to_tag is None:
            asyncio.get_running_loop().create_task(self._answer(req, source, server))
        elif req.method == "BYE":
            known = req.call_id in self._dialogs
            server.respond(200 if known else 481)
            if known:
                self._dialogs.pop(req.call_id, None)
                self._hung_up.setdefault(req.call_id, asyncio.Event()).set()
                for ring in self.rings:
                    if ring.call_id == req.call_id:
                        ring.ended.set()
        elif req.method == "CANCEL":
            assert self.endpoint is not None
            inv = self.endpoint.find_invite_server(req)
            server.respond(200 if inv is not None else 481)
            if inv is not None and inv.txn.state == "proceeding":
                inv.respond(487)
        elif req.method in ("OPTIONS", "ACK"):
            server.respond(200)
        else:
            server.respond(488 if req.method == "INVITE" else 405)

    async def _answer(self, req: SipRequest, source: Source, server: ServerHandle) -> None:
        try:
            offer = summarize(req.body) if req.body else None
            answer = answer_for(req.body, self.local.host)
        except SdpError:
            server.respond(488, to_tag=new_tag())
            return
        ring = Ring(user_of(str(req.from_.uri)), user_of(req.uri), req.call_id, offer)
        async with self._rang:
            self.rings.append(ring)
            self._rang.notify_all()
        tag = new_tag()
        server.respond(180, to_tag=tag)
        log.info("%s: call from %s rings (%s)", self.name, ring.caller, offer)
        if self.answer_delay is None:
            return                     # rings until the caller gives up (CANCEL → 487)
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if server.txn.state != "proceeding":
            return                     # cancelled meanwhile
        self._dialogs[req.call_id] = Dialog.as_uas(req, tag, (source.host, source.port))
        acked = self._acked[req.call_id] = asyncio.Event()
        ok = server.respond(200, to_tag=tag, headers=(
            ("Contact", self.local.contact(self.number)), ("Content-Type", "application/sdp")),
            body=answer)
        interval = 0.5
        try:
            for _ in range(7):
                try:
                    await asyncio.wait_for(acked.wait(), interval)
                    return
                except TimeoutError:
                    server.send(ok)
                    interval = min(interval * 2, 4.0)
        finally:
            self._acked.pop(req.call_id, None)
