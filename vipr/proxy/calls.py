"""Call tracking → VIPR Call Records (DESIGN §7). Pure code: times come in as arguments.

A call is tracked only when it crosses the `pstn` interface: `originating` when its INVITE
left through `pstn`, `terminating` when it came in from `pstn`. start = the moment the 200 OK
to the INVITE passed the proxy; stop = the moment the BYE passed (either direction). Calls
that never got a 2xx (failed, cancelled) write no VCR. The VCR is stored twice: 'open' at the
answer (so a proxy killed mid-call loses no answered call) and 'complete' at the BYE.

    t = CallTracker(max_call_duration)
    t.started(call_id, caller, callee, now)      # INVITE forwarded (direction still open)
    t.set_direction(call_id, "originating")      # it left via pstn (after fallback too)
    t.answered(call_id, now)                     # first 2xx to the INVITE
    vcr = t.open_vcr(call_id)                    # the 'open' VCR to store, or None
    vcr = t.bye(call_id, now)                    # the 'complete' Vcr, or None
    t.failed(call_id)                            # final non-2xx: forget it
    t.restore(vcr)                               # after a restart: an open VCR from the store
"""

from __future__ import annotations

from dataclasses import dataclass

from vipr.store.models import UNKNOWN_CALLER, Direction, Vcr

# An unanswered call older than this is forgotten (INVITE transactions end after 64*T1 plus
# ringing; 5 minutes of ringing is far beyond any PSTN no-answer timer).
UNANSWERED_LIMIT = 300.0
# An answered call without BYE is forgotten after this by default (proxy.max_call_duration;
# its stored VCR becomes 'unterminated': the stop time is unknown).
ANSWERED_LIMIT = 12 * 3600.0


@dataclass(slots=True)
class _Call:
    caller: str
    callee: str
    created: float
    direction: Direction | None = None
    start: float | None = None


class CallTracker:
    """Calls between INVITE and BYE, keyed by Call-ID."""

    def __init__(self, max_call_duration: float = ANSWERED_LIMIT) -> None:
        self._calls: dict[str, _Call] = {}
        self.max_call_duration = max_call_duration
        self.vcrs_made = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def started(self, call_id: str, caller: str | None, callee: str | None, now: float,
                direction: Direction | None = None) -> None:
        """An initial INVITE was forwarded. Caller/callee: E.164 numbers (None = unknown)."""
        if call_id in self._calls:
            return  # a retransmission or a fallback re-send of the same call
        self._calls[call_id] = _Call(caller or UNKNOWN_CALLER, callee or "", now, direction)

    def set_direction(self, call_id: str, direction: Direction | None) -> None:
        c = self._calls.get(call_id)
        if c is not None:
            c.direction = direction

    def direction(self, call_id: str) -> Direction | None:
        c = self._calls.get(call_id)
        return c.direction if c is not None else None

    def answered(self, call_id: str, now: float) -> bool:
        """The first 2xx to the INVITE passed; True when that set the start time."""
        c = self._calls.get(call_id)
        if c is None or c.start is not None:
            return False
        c.start = now
        return True

    def open_vcr(self, call_id: str) -> Vcr | None:
        """The 'open' VCR of an answered pstn call (stop = start until the BYE), or None."""
        c = self._calls.get(call_id)
        if c is None or c.start is None or c.direction is None or not c.callee:
            return None
        return Vcr(id=None, direction=c.direction, caller=c.caller, callee=c.callee,
                   start=c.start, stop=c.start, call_id=call_id, created=c.start, state="open")

    def restore(self, vcr: Vcr) -> None:
        """Track an answered call again from its stored open VCR (after a restart)."""
        self._calls.setdefault(vcr.call_id, _Call(vcr.caller, vcr.callee, vcr.start,
                                                  vcr.direction, vcr.start))

    def failed(self, call_id: str) -> None:
        """A final non-2xx answer to the INVITE (or a cancel): no VCR."""
        c = self._calls.get(call_id)
        if c is not None and c.start is None:
            del self._calls[call_id]

    def bye(self, call_id: str, now: float, created: float | None = None) -> Vcr | None:
        """The BYE passed: the VCR of a tracked, answered pstn call (the call is forgotten)."""
        c = self._calls.pop(call_id, None)
        if c is None or c.start is None or c.direction is None or not c.callee:
            return None
        self.vcrs_made += 1
        return Vcr(id=None, direction=c.direction, caller=c.caller, callee=c.callee,
                   start=c.start, stop=max(now, c.start), call_id=call_id,
                   created=now if created is None else created)

    def expire(self, now: float) -> int:
        """Forget calls past the limits above; the number forgotten."""
        old = [k for k, c in self._calls.items()
               if (now - c.created > UNANSWERED_LIMIT if c.start is None
                   else now - c.start > self.max_call_duration)]
        for k in old:
            del self._calls[k]
        return len(old)
