"""Copying one store into another (`vipr store migrate`, issue 15): table by table in key
order, in batches that each commit on their own, so an interrupted copy resumes where it
stopped and a finished one copies nothing when run again; the counts are compared at the end.

The target must not be in use by a role while the copy runs (its rows would be counted too:
the verification then fails and says which table differs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from vipr.store.api import Store
from vipr.store.schema import TABLE_KEY, TABLES

__all__ = ["DEFAULT_BATCH", "CopyReport", "copy_store"]

DEFAULT_BATCH = 10_000


@dataclass
class CopyReport:
    """Per table: rows inserted by this run, and the counts found in both stores after it."""

    copied: dict[str, int] = field(default_factory=dict)
    source: dict[str, int] = field(default_factory=dict)
    target: dict[str, int] = field(default_factory=dict)

    @property
    def mismatched(self) -> list[str]:
        return [t for t in TABLES if self.source.get(t) != self.target.get(t)]


async def copy_store(
    src: Store, dst: Store, *, batch: int = DEFAULT_BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of `src` into `dst`; `progress(table, rows so far)` after each batch.

    Tables keyed by an id resume after the greatest id already in the target (the previous
    run's batches committed in id order); the small tables keyed by text are read whole and
    their rows already present are skipped (INSERT … ON CONFLICT DO NOTHING).
    """
    report = CopyReport()
    for table in TABLES:
        after = await dst.max_key(table) if TABLE_KEY[table] == "id" else None
        done = 0
        rows = await src.export_rows(table, after, batch)
        while rows:
            # The next batch is read while this one is written (the source and the target
            # wait on different things: its file, the server); batches still commit in key
            # order, one at a time, so resuming after the target's greatest id stays right.
            nxt = (asyncio.ensure_future(src.export_rows(table, rows[-1][0], batch))
                   if len(rows) == batch else None)   # the key is every table's first column
            try:
                done += await dst.import_rows(table, rows)
            except BaseException:
                if nxt is not None:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                raise
            if progress is not None:
                progress(table, done)
            rows = await nxt if nxt is not None else []
        report.copied[table] = done
    report.source = await src.row_counts()
    report.target = await dst.row_counts()
    return report
