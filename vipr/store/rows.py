"""How store records map to SQLite rows: column lists, INSERT statements, record → parameters
(checked) and row → record."""

from __future__ import annotations

import json
from typing import Any

from vipr.store.errors import StoreError
from vipr.store.models import (
    DIRECTIONS,
    VALIDATION_ROLES,
    VCR_STATES,
    Route,
    TicketKey,
    ValidationRecord,
    Vcr,
)

VCR_COLS = (
    "id, direction, caller, callee, start, stop, call_id, created, validated, failures, burned,"
    " state"
)
ROUTE_COLS = (
    "number, routes, ticket, ticket_expires, expires, learned_from_node, learned_from_domain,"
    " validated_at, last_used, failures"
)
KEY_COLS = "epoch, secret, created, retired"
VALIDATION_COLS = "id, at, role, number, vcr_id, peer, outcome, reason"

INSERT_VCR = (
    "INSERT INTO vcr (direction, caller, callee, start, stop, call_id, created, validated,"
    " failures, burned, state, dialog) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_id, direction) DO NOTHING"
)
# The BYE of an open (or unterminated) call: the stop time, never before the start.
COMPLETE_VCR = (
    "UPDATE vcr SET stop = MAX(?, start), state = 'complete', dialog = NULL"
    " WHERE call_id = ? AND direction = ? AND state != 'complete' RETURNING id"
)
INSERT_VALIDATION = (
    "INSERT INTO validation (at, role, number, vcr_id, peer, outcome, reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

Row = Any  # one result row; its columns are read by position


def vcr_params(v: Vcr, dialog: str | None = None) -> tuple[object, ...]:
    if v.direction not in DIRECTIONS:
        raise StoreError(f"VCR direction must be one of {DIRECTIONS}, not {v.direction!r}")
    if v.state not in VCR_STATES:
        raise StoreError(f"VCR state must be one of {VCR_STATES}, not {v.state!r}")
    return (
        v.direction,
        v.caller,
        v.callee,
        float(v.start),
        float(v.stop),
        v.call_id,
        float(v.created),
        v.validated,
        int(v.failures),
        1 if v.burned else 0,
        v.state,
        dialog,
    )


def route_params(r: Route) -> tuple[object, ...]:
    if isinstance(r.routes, str) or not all(isinstance(u, str) for u in r.routes):
        raise StoreError("Route.routes must be a sequence of URI strings")
    return (
        r.number,
        json.dumps(list(r.routes)),
        r.ticket,
        float(r.ticket_expires),
        float(r.expires),
        r.learned_from_node,
        r.learned_from_domain,
        float(r.validated_at),
        r.last_used,
        int(r.failures),
    )


def validation_params(rec: ValidationRecord) -> tuple[object, ...]:
    if rec.role not in VALIDATION_ROLES:
        raise StoreError(f"validation role must be one of {VALIDATION_ROLES}, not {rec.role!r}")
    return (float(rec.at), rec.role, rec.number, rec.vcr_id, rec.peer, rec.outcome, rec.reason)


def vcr_from_row(r: Row) -> Vcr:
    return Vcr(
        id=r[0],
        direction=r[1],
        caller=r[2],
        callee=r[3],
        start=r[4],
        stop=r[5],
        call_id=r[6],
        created=r[7],
        validated=r[8],
        failures=r[9],
        burned=bool(r[10]),
        state=r[11],
    )


def route_from_row(r: Row) -> Route:
    return Route(
        number=r[0],
        routes=tuple(json.loads(r[1])),
        ticket=r[2],
        ticket_expires=r[3],
        expires=r[4],
        learned_from_node=r[5],
        learned_from_domain=r[6],
        validated_at=r[7],
        last_used=r[8],
        failures=r[9],
    )


def key_from_row(r: Row) -> TicketKey:
    return TicketKey(epoch=r[0], secret=bytes(r[1]), created=r[2], retired=r[3])


def validation_from_row(r: Row) -> ValidationRecord:
    return ValidationRecord(
        id=r[0], at=r[1], role=r[2], number=r[3], vcr_id=r[4], peer=r[5], outcome=r[6],
        reason=r[7],
    )
