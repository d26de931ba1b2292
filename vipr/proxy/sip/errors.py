"""The one error type of the SIP core."""

from __future__ import annotations


class SipParseError(ValueError):
    """Malformed SIP input; `status` is the response a server should answer with (RFC 3261 §21)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
