"""The proxy role's call policy, shared by every interface (DESIGN §6, §7, §11).

The inline SIP path (`server.ProxyServer`), the HTTP/JSON hook (`proxy.hook`) and the 302
redirect interface all call these: the routing decision over the in-memory route cache, the
ticket admission against the current ticket keys, and the failure count of a learned route.
The decisions themselves are the pure functions of `routing` and `admission`; this class
holds their state (cache, keys, counters) and its store side effects.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from vipr.config import ProviderConfig
from vipr.logsetup import printable
from vipr.metrics import ADMISSIONS, FALLBACKS, ROUTING, Children, fallback_cause
from vipr.proxy.admission import Admission, admit
from vipr.proxy.routing import MAX_ROUTE_FAILURES, Decision, RouteCache, decide
from vipr.proxy.sip.uri import URI
from vipr.store import Store, StoreError
from vipr.tickets import TicketVerifier

log = logging.getLogger("vipr.proxy")

_ADMISSIONS = Children(ADMISSIONS)
_FALLBACKS = Children(FALLBACKS)
_ROUTING: dict[tuple[str, str], Any] = {}   # (kind, reason) → counter child

# an unknown ticket epoch reloads the keys at most this often (a rotation since the last load)
KEY_RELOAD_MIN_INTERVAL = 1.0

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class CallPolicy:
    """Route cache + ticket keys + counters of one proxy role."""

    def __init__(self, cfg: ProviderConfig, store: Store, spawn: Spawn, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self._spawn = spawn
        self.cache = RouteCache()
        self.verifier = TicketVerifier(())
        self.counters: Counter[str] = Counter()
        self._last_key_reload = 0.0

    # ------------------------------------------------------------------ state

    async def reload_keys(self) -> None:
        """Reload the ticket keys; first add a key when there is none or the newest one is
        older than tickets.rotate_interval (DESIGN §6: old epochs stay valid)."""
        newest = await self.store.current_ticket_key()
        now = self.clock()
        if newest is None or now - newest.created >= self.cfg.tickets.rotate_interval:
            # Decided again inside the store's transaction: proxies on several hosts that
            # find the key due at once add one key, not one each (issue 15).
            key = await self.store.create_ticket_key(
                now, unless_created_since=now - self.cfg.tickets.rotate_interval)
            if newest is None or key.epoch != newest.epoch:
                log.info("new ticket key: epoch %d", key.epoch)
        self.verifier = TicketVerifier(await self.store.ticket_keys())
        self._last_key_reload = time.monotonic()

    async def reload_routes(self) -> None:
        self.cache.replace_all(await self.store.list_routes())

    async def route_learned(self, number: str) -> bool:
        """IPC `route_learned`: reload one route from the store; True when it is cached."""
        route = await self.store.get_route(number)
        if route is None:
            self.cache.drop(number)
            return False
        self.cache.put(route)
        log.info("route learned for %s: %s (ticket expires %.0f)", printable(number),
                 printable(", ".join(route.routes)), route.ticket_expires)
        return True

    # ------------------------------------------------------------------ decisions

    def route(self, interface: str, request_uri: URI | str, now: float) -> Decision:
        """`routing.decide` with this provider's numbers, dialplan and renewal window."""
        d = decide(interface, request_uri, self.cfg.numbers, self.cache, now,
                   self.cfg.tickets.renewal_window, self.cfg.dialplan)
        child = _ROUTING.get((d.kind, d.reason))
        if child is None:
            child = _ROUTING[(d.kind, d.reason)] = ROUTING.labels(d.kind, d.reason)
        child.inc()
        return d

    async def admission(self, token: str | None, number: str | None, *, transport: str,
                        tls_verified: bool, peer_dns_names: tuple[str, ...],
                        now: float) -> Admission:
        """`admission.admit` against the current keys; an unknown epoch reloads them once
        (rate-limited) in case a rotation happened since the last load. Counted by reason."""

        def check() -> Admission:
            return admit(self.verifier, token=token, number=number, transport=transport,
                         tls_verified=tls_verified, peer_dns_names=peer_dns_names, now=now)

        res = check()
        if res.reason == "unknown-epoch" and \
                time.monotonic() - self._last_key_reload > KEY_RELOAD_MIN_INTERVAL:
            await self.reload_keys()
            res = check()
        self.counters[f"admission_{res.reason}"] += 1
        _ADMISSIONS.inc(res.reason)
        return res

    def route_failed(self, number: str, cause: str) -> bool:
        """DESIGN §6: a call over the learned route failed (connect, timeout, 403, 5xx, 6xx);
        count it in the cache now and in the store off the call path. True when dropped."""
        self.counters[f"fallback_{cause}"] += 1
        _FALLBACKS.inc(fallback_cause(cause))
        dropped = self.cache.record_failure(number, MAX_ROUTE_FAILURES)
        self._spawn(self._store_route_failure(number))
        return dropped

    async def _store_route_failure(self, number: str) -> None:
        try:
            if await self.store.record_route_failure(number, MAX_ROUTE_FAILURES):
                log.warning("route to %s dropped after %d failures", printable(number),
                            MAX_ROUTE_FAILURES)
                self.cache.drop(number)
        except StoreError as exc:
            log.error("could not count the route failure of %s: %s", printable(number), exc)

