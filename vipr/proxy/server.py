"""The VIPR SIP edge proxy (DESIGN §6, §7): a stateful proxy (RFC 3261 §16) on `SipEndpoint`.

Interfaces `internal`, `pstn` and `federation` (mutual TLS) are named transports of one
endpoint. New INVITEs are routed by `routing.decide`; inbound federation calls pass ticket
`admission` first. A call over a learned route that fails (connect failure, no answer within
`route_timeout`, 403, 5xx, 6xx) is sent again to the PSTN gateway on a new branch; the caller
sees only the PSTN leg's answers. Calls crossing `pstn` become VCRs (`calls.CallTracker`),
written by `VcrWriter`: the 200 OK to the INVITE is held until the call's 'open' VCR (with the
dialog's two legs) is committed, the 200 OK to a BYE until the VCR is complete. A restarted
proxy loads the open VCRs and their dialogs, so BYEs of calls answered before a crash are
routed and recorded; open VCRs older than `proxy.max_call_duration` become 'unterminated'.

Dialogs have exactly two legs (upstream: where the INVITE came from; downstream: where it
went). The proxy Record-Routes, so in-dialog requests come back to it and go to the other
leg's next hop (for stream transports: the same connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
import time
from typing import Any

from vipr.config import Interface, ProviderConfig
from vipr.listen_error import ListenError, listen_error
from vipr.logsetup import fields, printable
from vipr.metrics import watch_proxy
from vipr.proxy.admission import ticket_header
from vipr.proxy.calls import CallTracker
from vipr.proxy.federation_tls import client_context, server_context
from vipr.proxy.forward import (
    TooManyHops,
    ack_and_bye,
    check_max_forwards,
    copy_request,
    prepare_request,
    stateless_branch,
    strip_own_routes,
)
from vipr.proxy.legs import (
    Attempt,
    Call,
    Dialog,
    DialogTextError,
    Leg,
    Target,
    dialog_from_text,
    dialog_text,
)
from vipr.proxy.policy import CallPolicy
from vipr.proxy.routing import Decision, RouteCache, federation_uri
from vipr.proxy.sip.endpoint import ServerHandle, SipEndpoint
from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import Via
from vipr.proxy.sip.message import SipRequest, SipResponse, make_cancel
from vipr.proxy.sip.transaction import new_branch
from vipr.proxy.sip.transport import (
    BadDestination,
    Source,
    UdpTransport,
    ip_destination,
)
from vipr.proxy.sip.uri import URI, format_host, parse_uri
from vipr.proxy.vcrwriter import VcrWriter
from vipr.store import Store, StoreError
from vipr.store.models import CompleteVcr, OpenVcr, Route

log = logging.getLogger("vipr.proxy")

KEY_RELOAD_INTERVAL = 5.0
ROUTE_RELOAD_INTERVAL = 60.0
UNTERMINATED_SWEEP_INTERVAL = 60.0
SWEEP_INTERVAL = 30.0


class ProxyError(Exception):
    """The proxy cannot start (bad TLS files, port in use, …)."""


class ProxyServer:
    """The proxy of one provider. `await start()`, then `await close()`."""

    def __init__(self, cfg: ProviderConfig, store: Store, *,
                 clock: Any = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.ifaces: dict[str, Interface] = {"internal": cfg.proxy.interfaces.internal,
                                             "pstn": cfg.proxy.interfaces.pstn}
        if cfg.proxy.interfaces.federation is not None:
            self.ifaces["federation"] = cfg.proxy.interfaces.federation
        self.policy = CallPolicy(cfg, store, self._spawn, clock=clock)
        self.tracker = CallTracker(cfg.proxy.max_call_duration)
        # Issue 15: a shared PostgreSQL may be away; VCR changes then wait in a local spool.
        spool = cfg.runtime_dir / "vcr-spool" if store.backend == "postgresql" else None
        self.writer = VcrWriter(store, cfg.socket_path("pvp"), spool,
                                spool_max=cfg.proxy.vcr_spool_max)
        self.endpoint: SipEndpoint | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self.calls: dict[tuple[str, ...], Call] = {}
        self.dialogs: dict[str, Dialog] = {}
        self.counters = self.policy.counters
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bg: list[asyncio.Task[None]] = []
        self._route_used: dict[str, float] = {}   # number → last answered call (batched)
        # set when a listener died for good: the daemon exits non-zero (DESIGN §10)
        self.failed = asyncio.Event()
        self.failure = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        watch_proxy(self)
        await self.reload_keys()
        await self.reload_routes()
        await self._restore_open_calls()
        ep = SipEndpoint(self._on_request, on_stray_response=self._on_stray_response,
                         on_transport_dead=self._listener_dead)
        self.endpoint = ep
        try:
            for name, iface in self.ifaces.items():
                ssl = client_ssl = None
                if iface.transport == "tls":
                    if iface.tls is None:
                        raise ProxyError(f"interface {name}: tls needs cert, key and ca")
                    ssl, client_ssl = server_context(iface.tls), client_context(iface.tls)
                try:
                    tr = await ep.listen(iface.transport, iface.listen.host,
                                         iface.listen.port, ssl=ssl, client_ssl=client_ssl,
                                         name=name, limits=self.cfg.proxy.limits)
                except OSError as exc:
                    raise listen_error(f"proxy interface {name} {iface.transport}",
                                       iface.listen.host, iface.listen.port, exc) from exc
                self.addresses[name] = (tr.local_host, tr.local_port)
        except ListenError:
            await ep.close()
            raise
        except (OSError, _ssl.SSLError, ValueError) as exc:
            await ep.close()
            raise ProxyError(f"cannot open the SIP interfaces: {exc}") from exc
        self.writer.start()
        self._bg = [asyncio.create_task(self._housekeeping())]
        log.info("proxy listening: %s", ", ".join(
            f"{n} {self.ifaces[n].transport}/{format_host(h)}:{p}"
            for n, (h, p) in self.addresses.items()))

    def _listener_dead(self, name: str, reason: str) -> None:
        self.failure = f"SIP interface {name} closed and could not be reopened: {reason}"
        self.failed.set()

    async def close(self) -> None:
        for t in self._bg:
            t.cancel()
        for t in self._bg:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.endpoint is not None:
            await self.endpoint.close()
        await self.writer.close()
        await self._flush_route_use()
        for t in list(self._tasks):
            t.cancel()

    async def _restore_open_calls(self) -> None:
        """DESIGN §7: calls answered before a restart (kill -9 included) are tracked again
        from their open VCRs, with their dialogs, so their BYE is routed and completes them."""
        await self._close_unterminated()
        restored = 0
        for vcr, text in await self.store.find_open_vcrs():
            self.tracker.restore(vcr)
            restored += 1
            if text is None or vcr.call_id in self.dialogs:
                continue
            try:
                dlg = dialog_from_text(text, vcr.start)
            except DialogTextError as exc:
                log.warning("open VCR %s: stored dialog unusable (%s); its BYE will get 481",
                            vcr.id, printable(exc))
                continue
            if dlg.up.iface in self.ifaces and dlg.down.iface in self.ifaces:
                self.dialogs[vcr.call_id] = dlg
        if restored:
            log.info("restored %d answered call(s) from their open VCRs", restored)

    async def _close_unterminated(self) -> None:
        n = await self.store.close_unterminated(self.clock() - self.cfg.proxy.max_call_duration)
        if n:
            self.counters["vcr_unterminated"] += n
            log.warning("%d answered call(s) saw no BYE within %.0f s: VCR(s) unterminated",
                        n, self.cfg.proxy.max_call_duration)

    async def _flush_route_use(self) -> None:
        """Write the routes' last_used times (one store write per route, off the call path)."""
        used, self._route_used = self._route_used, {}
        for number, when in used.items():
            try:
                await self.store.touch_route(number, when)
            except StoreError as exc:
                log.warning("could not record the use of the route to %s: %s", number, exc)

    async def _housekeeping(self) -> None:
        last_routes = last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(min(KEY_RELOAD_INTERVAL, SWEEP_INTERVAL))
            try:
                await self.reload_keys()
                if time.monotonic() - last_routes >= ROUTE_RELOAD_INTERVAL:
                    await self.reload_routes()
                    last_routes = time.monotonic()
                if time.monotonic() - last_sweep >= UNTERMINATED_SWEEP_INTERVAL:
                    last_sweep = time.monotonic()
                    await self._close_unterminated()
            except StoreError as exc:
                log.warning("store access failed: %s", exc)
            await self._flush_route_use()
            now = self.clock()
            self.tracker.expire(now)
            limit = self.cfg.proxy.max_call_duration
            for cid in [k for k, d in self.dialogs.items() if now - d.created > limit]:
                del self.dialogs[cid]

    @property
    def cache(self) -> RouteCache:
        return self.policy.cache

    async def reload_keys(self) -> None:
        await self.policy.reload_keys()

    async def reload_routes(self) -> None:
        await self.policy.reload_routes()

    async def route_learned(self, number: str) -> bool:
        """IPC `route_learned`: reload one route from the store; True when it is cached."""
        return await self.policy.route_learned(number)

    def route_used(self, number: str) -> None:
        """A call over the route to `number` was answered (last_used, written in batches)."""
        self._route_used[number] = self.clock()

    def _interface_status(self, name: str, host: str, port: int) -> dict[str, Any]:
        """The listener as it is now (DESIGN §10: real socket state, connection counts)."""
        out: dict[str, Any] = {"transport": self.ifaces[name].transport,
                               "listen": f"{format_host(host)}:{port}"}
        tr = self.endpoint.transports.get(name) if self.endpoint is not None else None
        if tr is None:
            out["state"] = "closed"
        elif isinstance(tr, UdpTransport):
            out["state"] = tr.state
            if tr.reopened:
                out["reopened"] = tr.reopened
        else:
            out["state"] = tr.state
            out["connections"] = tr.status()
        return out

    def status(self) -> dict[str, Any]:
        return {
            "interfaces": {n: self._interface_status(n, h, p)
                           for n, (h, p) in self.addresses.items()},
            "cached_routes": self.cache.numbers(),
            "active_calls": len(self.calls),
            "dialogs": len(self.dialogs),
            "ticket_epochs": sorted(self.policy.verifier.epochs),
            "vcrs": {"opened": self.writer.opened, "written": self.writer.written,
                     "failed": self.writer.failed,
                     "notified": self.writer.notified,
                     "pvp_unavailable": self.writer.pvp_unavailable,
                     "spooled": self.writer.spooled,
                     "spool_pending": self.writer.spool_pending},
            "counters": dict(sorted(self.counters.items())),
        }

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("proxy task failed", exc_info=task.exception())

    def _via(self, iface: str) -> Via:
        host, port = self.addresses[iface]
        kind = self.ifaces[iface].transport.upper()
        return Via(kind, format_host(host), port, {"branch": new_branch()})

    def _rr_uri(self, iface: str) -> str:
        adv = self.ifaces[iface].advertise
        if adv is not None:
            u = parse_uri(adv)
            u.params["lr"] = None
            return str(u)
        host, port = self.addresses[iface]
        t = self.ifaces[iface].transport
        return f"sip:{format_host(host)}:{port};lr" + ("" if t == "udp" else f";transport={t}")

    def _is_ours(self, uri: URI) -> bool:
        port = uri.port
        for name, (host, p) in self.addresses.items():
            default = 5061 if self.ifaces[name].transport == "tls" else 5060
            if uri.address == host and (port or default) == p:
                return True
            adv = self.ifaces[name].advertise
            if adv is not None and str(uri).split(";")[0] == adv.split(";")[0]:
                return True
        return False

    def _leg_for(self, target: Target, number: str | None, route: Route | None) -> Leg | None:
        if target == "internal":
            hp = self.ifaces["internal"].target
            return Leg("internal", hp.host, hp.port) if hp else None
        if target == "pstn":
            hp = self.ifaces["pstn"].gateway
            return Leg("pstn", hp.host, hp.port) if hp else None
        if route is None or "federation" not in self.ifaces:
            return None
        try:
            u = parse_uri(route.routes[0])
        except SipParseError:
            log.warning("route to %s has a bad URI %s: using the PSTN", printable(number),
                        printable(route.routes[0]))
            return None
        if not u.is_sip or not u.host:
            return None
        domain = route.learned_from_domain or u.address
        return Leg("federation", u.address, u.port or 5061, domain)

    # ------------------------------------------------------------------ requests

    def _on_request(self, req: SipRequest, source: Source,
                    server: ServerHandle | None) -> Any:
        if server is None:
            self._forward_ack(req, source)
            return None
        m = req.method
        if m == "CANCEL":
            return self._on_cancel(req, server)
        if req.to_tag is not None:
            return self._in_dialog(req, source, server)
        if m == "INVITE":
            return self._on_invite(req, source, server)
        if m == "OPTIONS":
            server.respond(200)
            return None
        self.counters["rejected_method"] += 1
        server.respond(405 if m != "ACK" else 400,
                       headers=(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),))
        return None

    async def _on_invite(self, req: SipRequest, source: Source, server: ServerHandle) -> None:
        self.counters["invites"] += 1
        try:
            check_max_forwards(req)
        except TooManyHops:
            server.respond(483)
            return
        iface = source.interface
        now = self.clock()
        d = self.policy.route(iface, req.request_uri, now)
        if d.kind == "admission":
            if not await self._admit(req, source, d, now):
                server.respond(403)
                return
            d = Decision("internal", d.number, "admitted")
        self.counters[f"route_{d.kind}_{d.reason}"] += 1
        call = Call(req.call_id, server, req, Leg(iface, source.host, source.port), d.number)
        self.calls[server.txn.key] = call
        caller = self.cfg.dialplan.caller(req.headers.get)   # DESIGN §11: PAI, else From
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call %s from %s to %s on %s: %s (%s)", printable(call.call_id),
                      printable(caller or "?"), printable(d.number or "?"), iface, d.kind,
                      d.reason, extra=fields(call_id=call.call_id, caller=caller,
                                             callee=d.number, route=d.kind, reason=d.reason,
                                             peer=f"{source.host}:{source.port}"))
        self.tracker.started(call.call_id, caller, d.number, now,
                             "terminating" if iface == "pstn" else None)
        if d.kind == "federation" and d.number is not None and d.route is not None:
            leg = self._leg_for("federation", d.number, d.route)
            if leg is not None:
                await self._attempt(call, "federation", leg, d.route)
                return
        target: Target = "internal" if d.kind == "internal" else "pstn"
        leg = self._leg_for(target, d.number, None)
        if leg is None:
            self._finish(call, None, 503 if target == "pstn" else 480)
            return
        await self._attempt(call, target, leg, None)

    async def _admit(self, req: SipRequest, source: Source, d: Decision, now: float) -> bool:
        conn = source.connection
        res = await self.policy.admission(
            ticket_header(req.headers.get), d.number, transport=source.transport,
            tls_verified=source.tls_verified,
            peer_dns_names=conn.tls_dns_names if conn else (), now=now)
        if res.ok:
            log.info("admitted call %s to %s from %s", printable(req.call_id),
                     printable(d.number), printable(res.peer_domain),
                     extra=fields(call_id=req.call_id, callee=d.number, peer=res.peer_domain,
                                  outcome="admitted", reason=res.reason))
            return True
        log.warning("rejected federation call %s to %s from %s:%s (%s): %s",
                    printable(req.call_id), printable(d.number), source.host, source.port,
                    printable(",".join(conn.tls_dns_names)) if conn else "no TLS", res.reason,
                    extra=fields(call_id=req.call_id, callee=d.number,
                                 peer=f"{source.host}:{source.port}", outcome="rejected",
                                 reason=res.reason))
        return False

    async def _attempt(self, call: Call, target: Target, leg: Leg, route: Route | None) -> None:
        assert self.endpoint is not None
        rr = [self._rr_uri(call.up.iface)]
        if leg.iface != call.up.iface:
            rr.append(self._rr_uri(leg.iface))
        uri = None
        ticket = None
        if target == "federation" and route is not None and call.number is not None:
            uri = federation_uri(route, call.number)
            ticket = route.ticket
        fwd = prepare_request(call.request, via=self._via(leg.iface), record_route=rr,
                              uri=uri, ticket=ticket, strip_tickets=True)
        att = Attempt(target, leg, fwd, route=route)
        call.attempt = att
        # DESIGN §7: terminating if it came in from pstn, originating if it leaves via pstn
        self.tracker.set_direction(
            call.call_id, "terminating" if call.up.iface == "pstn"
            else "originating" if target == "pstn" else None)
        if target == "federation":
            att.timer = asyncio.get_running_loop().call_later(
                self.cfg.proxy.route_timeout, self._route_timeout, call, att)
        try:
            att.client = await self.endpoint.send_request(
                fwd, leg.iface, leg.host, leg.port, server_hostname=leg.server_hostname,
                on_response=lambda r: self._on_response(call, att, r),
                on_failure=lambda e: self._on_failure(call, att, e))
        except ConnectionError as exc:
            self._on_failure(call, att, exc)
        except (OSError, KeyError) as exc:
            self._on_failure(call, att, ConnectionError(str(exc)))

    def _route_timeout(self, call: Call, att: Attempt) -> None:
        att.timer = None
        if att.abandoned or call.done:
            return
        self._fall_back(call, att, "timeout")

    def _fall_back(self, call: Call, att: Attempt, cause: str) -> None:
        """DESIGN §6: the learned route failed; the same call goes to the PSTN gateway."""
        att.abandoned = True
        if att.timer is not None:
            att.timer.cancel()
            att.timer = None
        if att.client is not None and att.trying and att.client.txn.state == "proceeding":
            self._send_cancel(att)
        number = call.number or ""
        dropped = self.policy.route_failed(number, cause)
        log.warning("route to %s failed (%s)%s: call %s goes via the PSTN", printable(number),
                    cause, "; route dropped" if dropped else "", printable(call.call_id),
                    extra=fields(call_id=call.call_id, callee=number, reason=cause,
                                 route="pstn"))
        if call.cancelled:
            self._finish(call, None, 487)
            return
        leg = self._leg_for("pstn", call.number, None)
        if leg is None:
            self._finish(call, None, 503)
            return
        self._spawn(self._attempt(call, "pstn", leg, None))

    def _send_cancel(self, att: Attempt) -> None:
        assert self.endpoint is not None
        if att.cancel_sent:
            return
        att.cancel_sent = True
        cancel = make_cancel(att.request)
        self._spawn(self.endpoint.send_request(cancel, att.leg.iface, att.leg.host,
                                               att.leg.port,
                                               server_hostname=att.leg.server_hostname))

    def _on_failure(self, call: Call, att: Attempt, exc: Exception) -> None:
        if att.abandoned or call.done:
            return
        if att.target == "federation":
            self._fall_back(call, att, "connect" if isinstance(exc, ConnectionError)
                            else "timeout")
            return
        log.info("call %s: %s next hop %s:%s failed: %s", printable(call.call_id), att.target,
                 printable(att.leg.host), att.leg.port, printable(exc))
        self._finish(call, None, 487 if call.cancelled
                     else 408 if isinstance(exc, TimeoutError) else 503)

    def _on_response(self, call: Call, att: Attempt, resp: SipResponse) -> None:
        code = resp.status
        if att.abandoned:
            if 200 <= code < 300:
                self._spawn(self._hang_up_stray(att, resp))
            return
        if code < 200:
            att.trying = True
        if code == 100:
            if call.cancelled:
                self._send_cancel(att)
            return   # our server transaction sent its own 100 Trying (§16.7 step 5)
        if code < 200:
            att.provisional = True
            if att.timer is not None:
                att.timer.cancel()
                att.timer = None
            if not call.done:
                self._relay(call, resp)
            if call.cancelled:
                self._send_cancel(att)
            return
        if att.timer is not None:
            att.timer.cancel()
            att.timer = None
        if code >= 300 and att.target == "federation" and (code == 403 or code >= 500) \
                and not call.done:
            self._fall_back(call, att, str(code))
            return
        if code < 300:
            first = self.tracker.answered(call.call_id, self.clock())
            if first:
                dlg = self.dialogs[call.call_id] = Dialog(call.up, att.leg)
                self.counters[f"answered_{att.target}"] += 1
                if att.target == "federation" and call.number is not None:
                    self.route_used(call.number)
                vcr = self.tracker.open_vcr(call.call_id)
                if vcr is not None:   # DESIGN §7: the answer is on disk before the caller
                    call.vcr_opened = self.writer.submit(OpenVcr(vcr, dialog_text(dlg)))
            call.done = True
            self.calls.pop(call.server.txn.key, None)
            held = call.vcr_opened
            if held is None or held.done():
                self._relay(call, resp)   # 2xx retransmissions too (RFC 6026 §8.2)
            elif first:
                held.add_done_callback(lambda _f: self._relay(call, resp))
            # else: a retransmission while the open VCR commits; the held 2xx goes first
            return
        self._finish(call, resp, code)

    def _finish(self, call: Call, resp: SipResponse | None, code: int) -> None:
        """A final non-2xx answer to the caller: no VCR, the call is forgotten."""
        if call.done:
            return
        call.done = True
        self.calls.pop(call.server.txn.key, None)
        self.tracker.failed(call.call_id)
        self.counters[f"failed_{code}"] += 1
        if resp is not None:
            self._relay(call, resp)
        elif call.server.txn.state == "proceeding":
            call.server.respond(code)

    def _relay(self, call: Call, resp: SipResponse) -> None:
        try:
            resp.pop_via()
            call.server.send(resp)
        except Exception as exc:  # TransactionStateError, SipParseError
            log.info("cannot relay %d for call %s: %s", resp.status, printable(call.call_id),
                     printable(exc))

    async def _hang_up_stray(self, att: Attempt, resp: SipResponse) -> None:
        """A 2xx from a branch we gave up on: ACK and BYE it so no phone stays off-hook."""
        assert self.endpoint is not None
        ack, bye = ack_and_bye(att.request, resp)
        for m in (ack, bye):
            m.push_via(self._via(att.leg.iface))
        leg = att.leg
        with contextlib.suppress(ConnectionError, OSError):
            await self.endpoint.send_stateless(ack, leg.iface, leg.host, leg.port)
            await self.endpoint.send_request(bye, leg.iface, leg.host, leg.port,
                                             server_hostname=leg.server_hostname)

    # ------------------------------------------------------------------ CANCEL, in-dialog

    def _on_cancel(self, req: SipRequest, server: ServerHandle) -> None:
        assert self.endpoint is not None
        inv = self.endpoint.find_invite_server(req)
        call = self.calls.get(inv.txn.key) if inv is not None else None
        if call is None:
            server.respond(481)
            return
        server.respond(200)   # §16.10
        if call.done:
            return
        call.cancelled = True
        att = call.attempt
        if att is not None and att.client is not None and not att.abandoned:
            if att.trying:
                self._send_cancel(att)
            # else: the CANCEL goes once a provisional response arrives (§9.1)
        else:
            self._finish(call, None, 487)

    def _other_leg(self, dlg: Dialog, source: Source) -> Leg:
        d = dlg.down
        from_down = source.interface == d.iface and (
            dlg.up.iface != d.iface or (source.host, source.port) == (d.host, d.port))
        return dlg.up if from_down else d

    def _forward_ack(self, req: SipRequest, source: Source) -> None:
        """ACK for a 2xx: forwarded statelessly to the other leg (RFC 3261 §16.11)."""
        assert self.endpoint is not None
        dlg = self.dialogs.get(req.call_id)
        if dlg is None:
            self.counters["ack_unmatched"] += 1
            return
        leg = self._other_leg(dlg, source)
        fwd = copy_request(req)
        strip_own_routes(fwd, self._is_ours)
        mf = req.max_forwards
        fwd.headers.set("Max-Forwards", str(70 if mf is None else max(mf - 1, 0)))
        via = self._via(leg.iface)
        via.params["branch"] = stateless_branch(req, leg.iface)
        fwd.push_via(via)
        self._send_stateless(fwd, leg)

    def _send_stateless(self, msg: SipRequest | SipResponse, leg: Leg) -> None:
        """UDP and open connections at once (no task per message), else through the
        endpoint (may connect)."""
        assert self.endpoint is not None
        tr = self.endpoint.transports.get(leg.iface)
        try:
            if isinstance(tr, UdpTransport):
                try:
                    ip_destination(leg.host, leg.port)
                except BadDestination:
                    pass   # a configured host name: resolved in the task below
                else:
                    tr.sendto(msg.serialize(), leg.host, leg.port)
                    return
            else:
                conn = tr.get_connection(leg.host, leg.port) if tr is not None else None
                if conn is not None:   # an open connection: no task needed
                    conn.write(msg.serialize())
                    return
        except Exception as exc:   # contained to this message (DESIGN §10)
            log.info("send to %s:%s failed: %s", printable(leg.host), leg.port, printable(exc))
            return
        self._spawn(self._send_stateless_later(msg, leg))

    async def _send_stateless_later(self, msg: SipRequest | SipResponse, leg: Leg) -> None:
        assert self.endpoint is not None
        try:
            await self.endpoint.send_stateless(msg, leg.iface, leg.host, leg.port)
        except Exception as exc:   # contained to this message (DESIGN §10)
            log.info("send to %s:%s failed: %s", printable(leg.host), leg.port, printable(exc))

    async def _in_dialog(self, req: SipRequest, source: Source, server: ServerHandle) -> None:
        assert self.endpoint is not None
        dlg = self.dialogs.get(req.call_id)
        if dlg is None:
            server.respond(481)
            return
        try:
            check_max_forwards(req)
        except TooManyHops:
            server.respond(483)
            return
        leg = self._other_leg(dlg, source)
        fwd = copy_request(req)
        strip_own_routes(fwd, self._is_ours)
        fwd = prepare_request(fwd, via=self._via(leg.iface))
        written: asyncio.Future[int | None] | None = None
        if req.method == "BYE":
            # DESIGN §7: stop = the time the BYE passed the proxy (either direction)
            vcr = self.tracker.bye(req.call_id, self.clock())
            if vcr is not None:
                written = self.writer.submit(CompleteVcr(vcr))
        try:
            client = await self.endpoint.send_request(fwd, leg.iface, leg.host, leg.port,
                                                      server_hostname=leg.server_hostname)
            resp = await client.final()   # Timer F (64*T1) ends the transaction anyway
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.info("%s for call %s not delivered: %s", req.method, printable(req.call_id),
                     printable(exc))
            resp = None
        if written is not None:
            await written   # the caller learns the call ended only once its VCR is stored
        if req.method == "BYE":
            self.dialogs.pop(req.call_id, None)
        if resp is None:
            if server.txn.state in ("trying", "proceeding"):
                server.respond(408 if req.method != "BYE" else 200)
            return
        with contextlib.suppress(Exception):
            resp.pop_via()
            server.send(resp)

    def _on_stray_response(self, resp: SipResponse, source: Source) -> None:
        """A 2xx retransmission after our client transaction ended: relay statelessly."""
        if not 200 <= resp.status < 300 or self.endpoint is None:
            return
        try:
            dlg = self.dialogs.get(resp.call_id)
            if dlg is None or resp.cseq.method != "INVITE":
                return
            resp.pop_via()
            self._send_stateless(resp, dlg.up)
        except SipParseError:
            return
