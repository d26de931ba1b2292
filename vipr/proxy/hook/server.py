"""The HTTP/JSON hook of the proxy role (`proxy.interfaces.hook`, DESIGN §11), on aiohttp.

An existing edge (Kamailio, OpenSIPS, FreeSWITCH, Asterisk) asks the proxy role what the
inline SIP path would decide, from the same state: `ProxyServer.policy` (route cache, ticket
keys, failure counts) and `ProxyServer.writer` / `tracker` (VCRs). Bad input is a 4xx with
`{"error": ...}`; nothing reaches the client as a traceback. The listener admits connections
through a `ConnectionGate` (DESIGN §10) and bounds every body (`max_body`, 413 above).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import ssl as _ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from vipr.config import HookInterface
from vipr.limits import ConnectionGate, ListenerLimits
from vipr.listen_error import listen_error
from vipr.logsetup import printable
from vipr.metrics import exposition, watch_hook, watch_listener
from vipr.proxy.federation_tls import server_context
from vipr.proxy.hook import documents as docs
from vipr.proxy.routing import federation_uri
from vipr.store.models import CompleteVcr, OpenVcr, Vcr
from vipr.tickets import TICKET_HEADER

if TYPE_CHECKING:
    from vipr.proxy.server import ProxyServer

log = logging.getLogger("vipr.proxy.hook")

KEEPALIVE_TIMEOUT = 15.0   # idle keep-alive connections are closed after this (seconds)
BASIC_USER = "vipr"        # the fixed user name of the Basic credentials (RFC 7617)
# RFC 7235 §4.1: one challenge per scheme the hook accepts
CHALLENGES = ('Bearer realm="vipr"', 'Basic realm="vipr", charset="UTF-8"')
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class HookCredentials:
    """The hook's one secret, accepted in two forms (DESIGN §11): `Authorization: Bearer
    TOKEN` (RFC 6750 §2.1) or `Authorization: Basic base64("vipr:TOKEN")` (RFC 7617 §2), the
    form an HTTP client library puts in from a URL's userinfo (Kamailio's `httpcon`). Each is
    compared in constant time as a whole: user and password together, never one at a time."""

    def __init__(self, token: str) -> None:
        self._bearer = token.encode()
        self._basic = f"{BASIC_USER}:{token}".encode()

    def check(self, header: str) -> bool:
        # RFC 7235 §2.1: the scheme name is case-insensitive
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return hmac.compare_digest(value.encode(), self._bearer)
        if scheme == "basic":
            try:
                got = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                return False
            return hmac.compare_digest(got, self._basic)
        return False


class _GatedProtocol:
    """Wraps aiohttp's per-connection protocol: the `ConnectionGate` admits or refuses the
    connection when it is made (DESIGN §10), and releases it when it is lost."""

    def __init__(self, inner: Any, gate: ConnectionGate, refused: Counter[str]) -> None:
        self._inner = inner
        self._gate = gate
        self._refused = refused
        self._host: str | None = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        refusal = self._gate.admit(host)
        if refusal is not None:
            self._refused[str(refusal)] += 1
            transport.abort()
            return
        self._host = host
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._host is None:
            return
        self._gate.release(self._host)
        self._host = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._host is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._host is not None else None

    def pause_writing(self) -> None:
        if self._host is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._host is not None:
            self._inner.resume_writing()


class HookServer:
    """The hook listener of one proxy. `await start()`, then `await close()`."""

    def __init__(self, proxy: ProxyServer, cfg: HookInterface) -> None:
        self.proxy = proxy
        self.cfg = cfg
        self.gate = ConnectionGate(ListenerLimits(
            max_connections=cfg.max_connections,
            max_connections_per_address=cfg.max_connections,
            handshake_timeout=proxy.cfg.proxy.limits.handshake_timeout))
        self.requests: Counter[str] = Counter()     # "path status"
        self.refused: Counter[str] = Counter()
        self.seconds = 0.0                           # handler time, all requests
        self.address: tuple[str, int] | None = None
        self.credentials = HookCredentials(cfg.token) if cfg.token is not None else None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        watch_hook(self)
        watch_listener("hook", self)

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body,
                              middlewares=[self._guard])
        app.router.add_post("/v1/route", self.route)
        app.router.add_post("/v1/route/result", self.route_result)
        app.router.add_post("/v1/admit", self.admit)
        app.router.add_post("/v1/calls", self.calls)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               keepalive_timeout=KEEPALIVE_TIMEOUT,
                               max_field_size=8190, max_headers=64)
        await runner.setup()
        self._runner = runner
        ssl: _ssl.SSLContext | None = None
        if self.cfg.tls is not None:
            ssl = server_context(self.cfg.tls)   # mutual TLS: CERT_REQUIRED against `ca`
        factory = runner.server
        assert factory is not None
        host, port = self.cfg.listen.host, self.cfg.listen.port
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _GatedProtocol(factory(), self.gate, self.refused),  # type: ignore[arg-type, return-value]
                host, port, ssl=ssl, reuse_address=True,
                ssl_handshake_timeout=self.proxy.cfg.proxy.limits.handshake_timeout
                if ssl else None)
        except OSError as exc:
            await runner.cleanup()
            raise listen_error("proxy hook", host, port, exc) from exc
        sock = self._server.sockets[0].getsockname()
        self.address = (str(sock[0]), int(sock[1]))
        log.info("hook listening on http%s://%s:%d", "s" if ssl else "", *self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def status(self) -> dict[str, Any]:
        host, port = self.address or ("", 0)
        return {"listen": f"{host}:{port}", "tls": self.cfg.tls is not None,
                "requests": dict(sorted(self.requests.items())),
                "connections": {**self.gate.status(), "refused": dict(self.refused)}}

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The token (when configured), then the handler. Every answer is JSON; bad input is
        a 4xx, never a traceback (DESIGN §11). One middleware: each is a coroutine layer on
        every request."""
        t0 = time.perf_counter()
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else "other"
        creds = self.credentials
        resp: web.StreamResponse
        if creds is not None and path != "/healthz" \
                and not creds.check(request.headers.get("Authorization", "")):
            resp = _error(401, "Unauthorized")
            for challenge in CHALLENGES:   # RFC 7235 §4.1: one field per challenge
                resp.headers.add("WWW-Authenticate", challenge)
        else:
            try:
                resp = await handler(request)
            except docs.HookInputError as exc:
                resp = _error(400, str(exc))
            except web.HTTPException as exc:
                resp = _error(exc.status, exc.reason)
                if "Allow" in exc.headers:
                    resp.headers["Allow"] = exc.headers["Allow"]
            except Exception:   # a defect: logged here, a plain 500 to the client
                log.exception("hook request %s failed", printable(request.path))
                resp = _error(500, "internal error")
        self.seconds += time.perf_counter() - t0
        self.requests[f"{path} {resp.status}"] += 1
        return resp

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(reason="expected application/json")
        return docs.parse_body(await request.read())   # 413 above client_max_size

    # ------------------------------------------------------------------ handlers

    async def route(self, request: web.Request) -> web.Response:
        """Originating: the routing decision of the inline path for a new call (DESIGN §6)."""
        req = docs.route_request(await self._body(request))
        p = self.proxy.policy
        uri = req.callee if ":" in req.callee else f"sip:{req.callee}@hook.invalid"
        d = p.route("internal", uri, self.proxy.clock())
        p.counters[f"hook_route_{d.kind}_{d.reason}"] += 1
        if d.kind == "federation" and d.route is not None and d.number is not None:
            return web.json_response({
                "action": "vipr", "number": d.number,
                "uris": [federation_uri(d.route, d.number)],
                "headers": {TICKET_HEADER: d.route.ticket},
                "timeout_ms": int(self.proxy.cfg.proxy.route_timeout * 1000)})
        reason = "our-number" if d.kind == "internal" else d.reason
        return web.json_response({"action": "pstn", "number": d.number, "reason": reason})

    async def route_result(self, request: web.Request) -> web.Response:
        """The outcome of a call over a learned route: failures count as on the SIP path."""
        res = docs.route_result(await self._body(request))
        number = docs.number(self.proxy.cfg.dialplan, {"n": res.callee}, "n")
        dropped = False
        if res.failed:
            dropped = self.proxy.policy.route_failed(number, res.cause)
            log.warning("hook: route to %s failed (%s)%s, call %s", printable(number),
                        printable(res.cause), "; route dropped" if dropped else "",
                        printable(res.call_id))
        elif res.cause == "answered":
            self.proxy.route_used(number)
        return web.json_response({"counted": res.failed, "dropped": dropped})

    async def admit(self, request: web.Request) -> web.Response:
        """Terminating: ticket admission (DESIGN §6). The edge verified the TLS peer; the
        domains it passes are that certificate's dNSNames (none: not TLS → refused)."""
        req = docs.admit_request(await self._body(request))
        dp = self.proxy.cfg.dialplan
        number = dp.number_of_uri(req.callee) if ":" in req.callee else dp.number(req.callee)
        res = await self.proxy.policy.admission(
            req.ticket, number, transport="tls" if req.peer_domains else "none",
            tls_verified=bool(req.peer_domains), peer_dns_names=req.peer_domains,
            now=self.proxy.clock())
        if res.ok:
            if log.isEnabledFor(logging.INFO):   # the escaping costs on every call otherwise
                log.info("hook: admitted call %s to %s from %s", printable(req.call_id),
                         printable(number), printable(res.peer_domain))
            return web.json_response({"admit": True})
        log.warning("hook: refused call %s to %s from %s: %s", printable(req.call_id),
                    printable(req.callee), printable(",".join(req.peer_domains)), res.reason)
        return web.json_response({"admit": False, "status": 403, "reason": res.reason})

    async def calls(self, request: web.Request) -> web.Response:
        """Call events and CDRs → VCRs, committed before the 2xx (DESIGN §7, §11)."""
        doc = await self._body(request)
        fmt = request.query.get("format")
        ev = docs.call_event(doc, self.proxy.cfg.dialplan, fmt=fmt,
                             direction=request.query.get("direction"))
        tracker, writer = self.proxy.tracker, self.proxy.writer
        change: OpenVcr | CompleteVcr | None = None
        if ev.kind == "unanswered":
            tracker.failed(ev.call_id)
            return web.json_response({"vcr": None, "reason": "unanswered"})
        if ev.kind == "answered":
            assert ev.answered is not None
            tracker.started(ev.call_id, ev.caller, ev.callee, ev.answered, ev.direction)
            tracker.answered(ev.call_id, ev.answered)
            vcr = tracker.open_vcr(ev.call_id)
            change = OpenVcr(vcr) if vcr is not None else None
        elif ev.kind == "ended":
            assert ev.ended is not None
            vcr = tracker.bye(ev.call_id, ev.ended)
            if vcr is None and ev.answered is not None and ev.callee and ev.direction:
                vcr = Vcr(None, ev.direction, ev.caller or "", ev.callee, ev.answered,
                          max(ev.ended, ev.answered), ev.call_id, ev.ended)
            if vcr is None:
                # completes a VCR the store holds open (answered before a restart), if any
                change = None
                return web.json_response({"vcr": None, "reason": "unknown-call"}, status=404)
            change = CompleteVcr(vcr)
        else:
            assert ev.answered is not None and ev.ended is not None and ev.direction
            change = CompleteVcr(Vcr(None, ev.direction, ev.caller or "", ev.callee or "",
                                     ev.answered, ev.ended, ev.call_id, ev.ended))
        if change is None:
            raise docs.HookInputError("not enough to make a VCR (callee and direction)")
        failed_before = writer.failed
        vid = await writer.submit(change)
        if vid is None and writer.failed > failed_before:
            return _error(503, "store unavailable: retry")
        return web.json_response({"vcr": vid})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "cached_routes": len(self.proxy.policy.cache)})

    async def metrics(self, request: web.Request) -> web.Response:
        body, ctype = exposition()
        return web.Response(body=body, headers={"Content-Type": ctype})
