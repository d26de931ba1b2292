"""The VIPR store: VCRs, routes, published numbers, ticket keys, validation log (DESIGN §8).

`Store.open(target)` opens the provider's database: an SQLite file (the embedded default,
`vipr.store.sqlite`) or a PostgreSQL database named by a `postgresql://` URL, shared by the
hosts of a larger provider (`vipr.store.postgres`, DESIGN §12). Callers see only `Store`
(`vipr.store.api`), the dataclasses in `vipr.store.models` and `StoreError`.
"""

from __future__ import annotations

from vipr.store.api import Store, is_postgres_url
from vipr.store.errors import NotFoundError, StoreError
from vipr.store.models import PublishedNumber, Route, TicketKey, ValidationRecord, Vcr

__all__ = [
    "NotFoundError",
    "PublishedNumber",
    "Route",
    "Store",
    "StoreError",
    "TicketKey",
    "ValidationRecord",
    "Vcr",
    "is_postgres_url",
]
