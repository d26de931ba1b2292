"""PSTN simulator: a back-to-back UA between providers' PSTN trunks (`vipr pstn`).

A call arrives from a provider's `pstn` interface; the number plan (numberplan.py) names the
provider serving the Request-URI number, and a second call leg goes to that provider's trunk
with an offer narrowed to PCMU/PCMA (sdp.py): like the real PSTN, no wideband audio and no
video survive. Ringing, the answer, BYE (either side) and CANCEL are relayed; the caller's
number travels in From. `skew` delays the 200 OK and BYE relayed towards one provider, so the
two providers' VCRs differ in time as they do between real switches.

The SIP logic is in the pure modules (sdp.py, dialog.py, numberplan.py); this module only
moves messages through a `SipEndpoint` and arms timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from dataclasses import dataclass, field

from vipr.e164 import E164Error, normalize_e164
from vipr.proxy.sip.endpoint import ClientHandle, ServerHandle, SipEndpoint
from vipr.proxy.sip.message import Headers, SipRequest, SipResponse, make_cancel
from vipr.proxy.sip.transport import Source
from vipr.proxy.sip.uri import format_host
from vipr.testnet.dialog import Dialog, LocalAddress, new_tag, user_of
from vipr.testnet.numberplan import Provider, PstnConfig
from vipr.testnet.sdp import SdpError, narrowband_answer, narrowband_offer

__all__ = ["PstnSimulator", "run_pstn"]

log = logging.getLogger("vipr.pstn")


@dataclass
class _Call:
    number: str
    caller: str
    source: tuple[str, int]
    from_provider: Provider | None
    to_provider: Provider
    server: ServerHandle
    offer: bytes
    kept: list[int]
    tag: str = field(default_factory=new_tag)
    out: SipRequest | None = None
    client: ClientHandle | None = None
    a_leg: Dialog | None = None
    b_leg: Dialog | None = None
    answered: bool = False
    ended: bool = False
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    timeout: asyncio.TimerHandle | None = None


class PstnSimulator:
    """The B2BUA. `start()` binds the UDP gateway socket; `stats` counts what happened."""

    def __init__(self, cfg: PstnConfig) -> None:
        self.cfg = cfg
        self.endpoint: SipEndpoint | None = None
        self.local = LocalAddress("udp", cfg.listen.host, cfg.listen.port)
        self._calls: dict[str, _Call] = {}     # by the Call-ID of either leg
        self.stats = {"invites": 0, "answered": 0, "rejected": 0, "byes": 0, "cancels": 0}

    async def start(self) -> tuple[str, int]:
        self.endpoint = SipEndpoint(self._on_request, validate=False)
        tr = await self.endpoint.listen("udp", self.cfg.listen.host, self.cfg.listen.port)
        self.local = LocalAddress("udp", self.cfg.listen.host, tr.local_port)
        log.info("PSTN gateway on %s:%d, %d providers", self.cfg.listen.host, tr.local_port,
                 len(self.cfg.plan.providers))
        return self.cfg.listen.host, tr.local_port

    async def close(self) -> None:
        for call in list(self._calls.values()):
            self._end(call)
        if self.endpoint is not None:
            await self.endpoint.close()

    # ------------------------------------------------------------------ requests

    def _on_request(self, req: SipRequest, source: Source, server: ServerHandle | None) -> None:
        if server is None:                        # ACK for our 2xx
            call = self._calls.get(req.call_id)
            if call is not None:
                call.acked.set()
            return
        m = req.method
        if m == "INVITE" and req.to_tag is None:
            self._new_call(req, source, server)
        elif m == "INVITE":
            server.respond(488, "Not Acceptable Here (no re-INVITE on the PSTN)")
        elif m == "BYE":
            self._bye(req, server)
        elif m == "CANCEL":
            self._cancel(req, server)
        elif m == "OPTIONS":
            server.respond(200)
        else:
            server.respond(405 if m != "ACK" else 200)

    def _new_call(self, req: SipRequest, source: Source, server: ServerHandle) -> None:
        self.stats["invites"] += 1
        number = user_of(req.uri)
        dest = self.cfg.plan.route(number)
        if dest is None:
            log.info("INVITE for %s: not in the number plan → 404", number or req.uri)
            self.stats["rejected"] += 1
            server.respond(404, "Not Found (number plan)", to_tag=new_tag())
            return
        try:
            offer, kept = narrowband_offer(req.body)
        except SdpError as exc:
            log.info("INVITE for %s: %s → 488", number, exc)
            self.stats["rejected"] += 1
            server.respond(488, to_tag=new_tag())
            return
        call = _Call(number=dest_number(number), caller=user_of(str(req.from_.uri)),
                     source=(source.host, source.port),
                     from_provider=self.cfg.plan.by_trunk(source.host, source.port),
                     to_provider=dest, server=server, offer=req.body, kept=kept)
        self._calls[req.call_id] = call
        self._spawn(call, self._place(call, offer))

    async def _place(self, call: _Call, offer: bytes) -> None:
        assert self.endpoint is not None
        trunk = call.to_provider.trunk
        host = format_host(trunk.host)
        call_id = f"{secrets.token_hex(8)}@pstn"
        out = SipRequest("INVITE", f"sip:{call.number}@{host}:{trunk.port}", Headers([
                ("Via", self.local.via()), ("Max-Forwards", "70"),
                ("From", f"<sip:{call.caller or 'anonymous'}@pstn.invalid>;tag={new_tag()}"),
                ("To", f"<sip:{call.number}@{host}>"), ("Call-ID", call_id),
                ("CSeq", "1 INVITE"), ("Contact", self.local.contact("pstn")),
                ("Content-Type", "application/sdp")]), offer)
        call.out = out
        self._calls[call_id] = call
        log.info("call %s → %s: %s → %s, narrowband offer", call.caller, call.number,
                 call.from_provider.name if call.from_provider else "?", call.to_provider.name)
        try:
            call.client = await self.endpoint.send_request(
                out, "udp", trunk.host, trunk.port,
                on_response=lambda r: self._on_response(call, r),
                on_failure=lambda exc: self._on_failure(call, exc))
        except ConnectionError as exc:
            self._on_failure(call, exc)
            return
        call.timeout = asyncio.get_running_loop().call_later(
            self.cfg.answer_timeout, self._answer_timeout, call)

    # ------------------------------------------------------------------ callee leg answers

    def _on_response(self, call: _Call, resp: SipResponse) -> None:
        if resp.status < 200:
            if resp.status in (180, 183) and not call.answered and not call.ended:
                with contextlib.suppress(Exception):
                    call.server.respond(180, to_tag=call.tag)
            return
        if call.timeout is not None:
            call.timeout.cancel()
        if resp.status >= 300:
            if not call.answered and not call.ended:
                call.server.respond(resp.status, resp.reason, to_tag=call.tag)
                self.stats["rejected"] += 1
            self._forget(call)
            return
        assert call.out is not None
        if call.b_leg is None:
            call.b_leg = Dialog.as_uac(call.out, resp, (call.to_provider.trunk.host,
                                                        call.to_provider.trunk.port))
        self._spawn(call, self._send_ack(call))
        if call.ended:                 # cancelled meanwhile: hang the callee up
            self._spawn(call, self._send_bye(call.b_leg, 0.0, call))
            return
        if call.answered:
            return
        call.answered = True
        self.stats["answered"] += 1
        try:
            answer = narrowband_answer(resp.body, call.offer, call.kept)
        except SdpError:
            answer = b""
        self._spawn(call, self._answer(call, answer))

    async def _send_ack(self, call: _Call) -> None:
        assert self.endpoint is not None and call.b_leg is not None
        ack = call.b_leg.request("ACK", self.local.via())
        await self.endpoint.send_stateless(ack, "udp", *call.b_leg.next_hop)

    async def _answer(self, call: _Call, answer: bytes) -> None:
        delay = self.cfg.delay_towards(call.from_provider)
        if delay:
            await asyncio.sleep(delay)   # the configured clock skew towards the caller's side
        if call.ended:
            return
        ok = call.server.respond(200, to_tag=call.tag, headers=(
            ("Contact", self.local.contact("pstn")), ("Content-Type", "application/sdp")),
            body=answer)
        call.a_leg = Dialog.as_uas(call.server.request, call.tag, call.source)
        log.info("call %s → %s answered", call.caller, call.number)
        # RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx until the ACK arrives
        interval = 0.5
        for _ in range(7):
            try:
                await asyncio.wait_for(call.acked.wait(), interval)
                return
            except TimeoutError:
                call.server.send(ok)
                interval = min(interval * 2, 4.0)

    def _on_failure(self, call: _Call, exc: Exception) -> None:
        log.info("call %s → %s: callee side failed: %s", call.caller, call.number, exc)
        if not call.answered and not call.ended:
            with contextlib.suppress(Exception):
                call.server.respond(408 if isinstance(exc, TimeoutError) else 503,
                                    to_tag=call.tag)
            self.stats["rejected"] += 1
        self._forget(call)

    def _answer_timeout(self, call: _Call) -> None:
        if call.answered or call.ended:
            return
        log.info("call %s → %s: no answer in %.0f s", call.caller, call.number,
                 self.cfg.answer_timeout)
        call.server.respond(408, to_tag=call.tag)
        self._cancel_out(call)

    # ------------------------------------------------------------------ BYE / CANCEL

    def _bye(self, req: SipRequest, server: ServerHandle) -> None:
        call = self._calls.get(req.call_id)
        if call is None or call.ended:
            server.respond(481)
            return
        self.stats["byes"] += 1
        server.respond(200)
        from_caller = call.server.request.call_id == req.call_id
        other = call.b_leg if from_caller else call.a_leg
        towards = call.to_provider if from_caller else call.from_provider
        log.info("call %s → %s: BYE from the %s side", call.caller, call.number,
                 "caller" if from_caller else "callee")
        call.ended = True
        if other is not None:
            self._spawn(call, self._send_bye(other, self.cfg.delay_towards(towards), call))
        else:
            self._forget(call)

    async def _send_bye(self, leg: Dialog, delay: float, call: _Call | None = None) -> None:
        assert self.endpoint is not None
        if delay:
            await asyncio.sleep(delay)   # clock skew towards that side
        bye = leg.request("BYE", self.local.via())
        try:
            client = await self.endpoint.send_request(bye, "udp", *leg.next_hop)
            await client.final(40.0)
        except (TimeoutError, ConnectionError) as exc:
            log.info("BYE to %s:%d failed: %s", *leg.next_hop, exc)
        finally:
            if call is not None:
                self._forget(call)

    def _cancel(self, req: SipRequest, server: ServerHandle) -> None:
        assert self.endpoint is not None
        call = self._calls.get(req.call_id)
        inv = self.endpoint.find_invite_server(req)
        server.respond(200 if inv is not None else 481)
        if call is None or inv is None:
            return
        self.stats["cancels"] += 1
        if not call.answered and inv.txn.state == "proceeding":
            inv.respond(487, to_tag=call.tag)
        self._cancel_out(call)

    def _cancel_out(self, call: _Call) -> None:
        call.ended = True
        if call.out is not None and call.b_leg is None:
            self._spawn(call, self._send_cancel(call.out, call))

    async def _send_cancel(self, invite: SipRequest, call: _Call) -> None:
        assert self.endpoint is not None
        trunk = call.to_provider.trunk
        try:
            client = await self.endpoint.send_request(make_cancel(invite), "udp",
                                                      trunk.host, trunk.port)
            await client.final(40.0)
        except (TimeoutError, ConnectionError) as exc:
            log.info("CANCEL to %s failed: %s", trunk, exc)

    # ------------------------------------------------------------------ bookkeeping

    def _spawn(self, call: _Call, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        call.tasks.add(task)
        task.add_done_callback(call.tasks.discard)

    def _forget(self, call: _Call) -> None:
        for key in [k for k, c in self._calls.items() if c is call]:
            del self._calls[key]

    def _end(self, call: _Call) -> None:
        call.ended = True
        for t in list(call.tasks):
            t.cancel()
        self._forget(call)


def dest_number(number: str) -> str:
    """The number as delivered (E.164 form when it is one)."""
    try:
        return normalize_e164(number)
    except E164Error:
        return number


async def _serve(cfg: PstnConfig) -> None:
    from vipr.daemon import notify_ready, notify_stopping

    sim = PstnSimulator(cfg)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify_ready(f"PSTN gateway on {cfg.listen}")
    await stop.wait()
    notify_stopping()
    log.info("stopping: %s", sim.stats)
    await sim.close()


def run_pstn(cfg: PstnConfig, level: str = "info") -> None:
    """`vipr pstn`: serve until SIGTERM/SIGINT."""
    from vipr.config import LoggingSection
    from vipr.logsetup import setup_logging

    setup_logging(LoggingSection(level=level), "pstn")
    asyncio.run(_serve(cfg))
