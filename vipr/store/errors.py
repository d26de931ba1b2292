"""The store's errors: all that callers catch (nothing SQLite-specific)."""

from __future__ import annotations


class StoreError(Exception):
    """Any failure of the store: I/O, a locked or corrupt file, a constraint, bad input."""


class NotFoundError(StoreError):
    """The record the operation needs does not exist."""
