"""Plain records the store reads and writes (DESIGN §8). No SQLite types appear here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["originating", "terminating"]
ValidationRole = Literal["client", "server"]

DIRECTIONS: tuple[Direction, ...] = ("originating", "terminating")
VALIDATION_ROLES: tuple[ValidationRole, ...] = ("client", "server")

# A terminating VCR whose caller the PSTN did not deliver stores this (DESIGN §5: "caller equal
# (or unknown on the terminating side)").
UNKNOWN_CALLER = ""


@dataclass(frozen=True, slots=True)
class Vcr:
    """A VIPR Call Record: one PSTN call seen by the proxy (or imported from a CDR export)."""

    id: int | None
    direction: Direction
    caller: str
    callee: str
    start: float
    stop: float
    call_id: str
    created: float
    validated: float | None = None
    failures: int = 0
    burned: bool = False

    @property
    def duration(self) -> float:
        """Seconds between answer and hang-up."""
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class Route:
    """A learned direct route to the provider that terminates `number` (DESIGN §5, §6)."""

    number: str
    routes: tuple[str, ...]
    ticket: str
    ticket_expires: float
    expires: float
    learned_from_node: str
    learned_from_domain: str
    validated_at: float
    last_used: float | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True)
class PublishedNumber:
    """A claim this provider stored in the overlay for one of its numbers."""

    number: str
    vservice: str
    stored_at: float
    expires: float


@dataclass(frozen=True, slots=True)
class TicketKey:
    """One ticket-signing epoch (DESIGN §6): a random 32-byte secret."""

    epoch: int
    secret: bytes
    created: float
    retired: float | None

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"TicketKey(epoch={self.epoch}, created={self.created}, retired={self.retired})"


@dataclass(frozen=True, slots=True)
class ValidationRecord:
    """One PVP validation attempt, either side, with its outcome and reason."""

    id: int | None
    at: float
    role: ValidationRole
    number: str
    vcr_id: int | None
    peer: str
    outcome: str
    reason: str
