"""Ticket admission of inbound federation calls (DESIGN §6, the SIP anti-spam check). Pure code.

Order: transport is mutually authenticated TLS → header present → decodes → epoch known →
HMAC (constant time) → not expired → Request-URI number = ticket number → TLS peer domain =
ticket domain. The first failing check is the reason; every failure is answered 403 with no
detail (the reason goes to the log only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vipr.tickets import LEGACY_TICKET_HEADER, TICKET_HEADER, Ticket, TicketVerifier


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    reason: str
    ticket: Ticket | None = None
    peer_domain: str | None = None


def ticket_header(get: Callable[[str], str | None]) -> str | None:
    """The ticket token from `VIPR-Ticket`, else `X-Cisco-ViPR-Ticket` (DESIGN §6).

    `get` is `Headers.get` (case-insensitive name lookup, compact forms)."""
    token = get(TICKET_HEADER)
    return token if token is not None else get(LEGACY_TICKET_HEADER)


def admit(verifier: TicketVerifier, *, token: str | None, number: str | None,
          transport: str, tls_verified: bool, peer_dns_names: tuple[str, ...],
          now: float) -> Admission:
    """Decide whether an inbound federation INVITE may reach the internal interface.

    `peer_dns_names`: dNSName entries of the verified TLS client certificate; the ticket's
    domain must be one of them (RFC 5922 §7.1: the domain identity is the dNSName)."""
    if transport != "tls" or not tls_verified:
        # No authenticated peer domain: even a valid ticket proves nothing (could be replayed).
        return Admission(False, "not-tls")
    names = tuple(n.lower() for n in peer_dns_names)
    # The verifier checks header → decode → epoch → HMAC → expiry → number → domain; the
    # domain check takes one name, so pass the one the ticket names when the cert holds it.
    verdict = verifier.verify(token, number=number or "", peer_domain=None, now=now)
    if verdict.reason != "domain-mismatch" or verdict.ticket is None:
        return Admission(False, verdict.reason, verdict.ticket)
    want = verdict.ticket.domain.lower()
    if want not in names:
        return Admission(False, "domain-mismatch", verdict.ticket, names[0] if names else None)
    verdict = verifier.verify(token, number=number or "", peer_domain=want, now=now)
    return Admission(verdict.ok, verdict.reason, verdict.ticket, want)
