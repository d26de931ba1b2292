"""`ReloadError`: the one base of every RELOAD exception (decode, encode, security, storage,
request, join, configuration, daemon), so a caller can catch the overlay's failures as one."""

from __future__ import annotations


class ReloadError(Exception):
    """Base of every exception raised by vipr.reload."""
