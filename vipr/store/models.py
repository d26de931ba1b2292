"""Plain records the store reads and writes (DESIGN §8). No SQLite types appear here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["originating", "terminating"]
ValidationRole = Literal["client", "server"]
# DESIGN §7: 'open' from the 200 OK to the BYE (stop = start meanwhile), 'complete' once the BYE
# passed, 'unterminated' when no BYE came within proxy.max_call_duration (stop stays = start).
# Only 'complete' VCRs take part in PVP (their stop is a real hang-up time).
VcrState = Literal["open", "complete", "unterminated"]

DIRECTIONS: tuple[Direction, ...] = ("originating", "terminating")
VALIDATION_ROLES: tuple[ValidationRole, ...] = ("client", "server")
VCR_STATES: tuple[VcrState, ...] = ("open", "complete", "unterminated")

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
    state: VcrState = "complete"

    @property
    def duration(self) -> float:
        """Seconds between answer and hang-up (0 while open or unterminated)."""
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class OpenVcr:
    """A change for `Store.apply_vcr_changes`: the call was answered. `vcr.state` is 'open' and
    `vcr.stop == vcr.start`; `dialog` is the proxy's routing state (opaque to the store)."""

    vcr: Vcr
    dialog: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteVcr:
    """A change for `Store.apply_vcr_changes`: the BYE passed at `vcr.stop`. Completes the open
    (or unterminated) VCR of that Call-ID and direction, else inserts `vcr` whole."""

    vcr: Vcr


VcrChange = OpenVcr | CompleteVcr


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
