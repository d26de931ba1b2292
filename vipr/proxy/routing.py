"""The proxy's routing decision and its in-memory route cache (DESIGN §6, §7). Pure code.

    cache = RouteCache(); cache.put(route)                  # from the store's routes table
    d = decide("internal", "+442071234567", our_numbers, cache, now, renewal_window)
    d.kind   # "internal" | "pstn" | "federation" | "admission"
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from vipr.dialplan import DEFAULT_DIALPLAN, Dialplan
from vipr.proxy.sip.uri import URI, parse_uri
from vipr.store.models import Route

Kind = Literal["internal", "pstn", "federation", "admission"]
INTERFACES = ("internal", "pstn", "federation")
MAX_ROUTE_FAILURES = 3  # DESIGN §6: after 3 failures the route is dropped


def number_of(uri: URI | str, dialplan: Dialplan = DEFAULT_DIALPLAN) -> str | None:
    """The E.164 number a Request-URI (or To/From URI) names, or None (`Dialplan.number_of_uri`:
    tel: or sip user part, visual separators, `;phone-context`, national/international
    prefixes of the provider's dialplan; DESIGN §11)."""
    return dialplan.number_of_uri(uri)


def federation_uri(route: Route, number: str) -> str:
    """The Request-URI of a call over a learned route: its first URI, the number as user."""
    u = parse_uri(route.routes[0])
    if u.user is None:
        u.user = number
    u.params.setdefault("user", "phone")
    u.params.pop("lr", None)
    return str(u)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a new INVITE goes. `route` is set for federation; `reason` explains PSTN choices."""

    kind: Kind
    number: str | None
    reason: str
    route: Route | None = None


class RouteCache:
    """number → Route, the proxy's copy of the routes table (refreshed on route_learned)."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: dict[str, Route] = {r.number: r for r in routes}

    def __len__(self) -> int:
        return len(self._routes)

    def __contains__(self, number: object) -> bool:
        return number in self._routes

    def get(self, number: str) -> Route | None:
        return self._routes.get(number)

    def put(self, route: Route) -> None:
        self._routes[route.number] = route

    def drop(self, number: str) -> bool:
        return self._routes.pop(number, None) is not None

    def replace_all(self, routes: Iterable[Route]) -> None:
        self._routes = {r.number: r for r in routes}

    def numbers(self) -> list[str]:
        return sorted(self._routes)

    def oldest_validated_at(self) -> float | None:
        """When the oldest validation behind a cached route happened (metrics), or None."""
        return min((r.validated_at for r in self._routes.values()), default=None)

    def record_failure(self, number: str, max_failures: int = MAX_ROUTE_FAILURES) -> bool:
        """Count a failed call over the route; True when that drops it (mirrors the store)."""
        r = self._routes.get(number)
        if r is None:
            return False
        if r.failures + 1 >= max_failures:
            del self._routes[number]
            return True
        self._routes[number] = replace(r, failures=r.failures + 1)
        return False


def route_state(route: Route | None, now: float, renewal_window: float) -> str:
    """"usable", or why not: "no-route", "expired", "no-uri", "renewal"."""
    if route is None:
        return "no-route"
    if now >= route.expires or now >= route.ticket_expires:
        return "expired"
    if not route.routes or not route.ticket:
        return "no-uri"
    # DESIGN §6: inside the renewal window the call goes via the PSTN on purpose (fresh VCRs).
    if route.ticket_expires - now <= renewal_window:
        return "renewal"
    return "usable"


def decide(interface: str, request_uri: URI | str, our_numbers: Container[str],
           cache: RouteCache, now: float, renewal_window: float,
           dialplan: Dialplan = DEFAULT_DIALPLAN) -> Decision:
    """The route of a new (out-of-dialog) INVITE that arrived on `interface` (DESIGN §7);
    the inline SIP path, the hook and the redirect interface all decide here (DESIGN §11)."""
    number = number_of(request_uri, dialplan)
    if interface == "pstn":
        return Decision("internal", number, "from-pstn")
    if interface == "federation":
        return Decision("admission", number, "from-federation")
    if number is not None and number in our_numbers:
        return Decision("internal", number, "our-number")
    if number is None:
        return Decision("pstn", None, "not-e164")
    route = cache.get(number)
    state = route_state(route, now, renewal_window)
    if state != "usable":
        return Decision("pstn", number, state)
    return Decision("federation", number, "route", route)
