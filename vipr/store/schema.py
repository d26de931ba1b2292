"""Schema and versioned migrations (DESIGN §8). The version lives in `PRAGMA user_version`.

Each migration is a tuple of single SQL statements, applied in one `BEGIN IMMEDIATE`
transaction together with the version bump, so several processes opening a fresh file at the
same moment migrate it exactly once. Never edit a released migration: append a new one.
"""

from __future__ import annotations

# Connection settings every process applies on open (DESIGN §8).
BUSY_TIMEOUT_MS = 10_000
PRAGMAS: tuple[str, ...] = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA journal_size_limit=67108864",
)

_V1: tuple[str, ...] = (
    """CREATE TABLE vcr (
        id        INTEGER PRIMARY KEY,
        direction TEXT    NOT NULL CHECK (direction IN ('originating', 'terminating')),
        caller    TEXT    NOT NULL,
        callee    TEXT    NOT NULL,
        start     REAL    NOT NULL,
        stop      REAL    NOT NULL,
        call_id   TEXT    NOT NULL,
        created   REAL    NOT NULL,
        validated REAL,
        failures  INTEGER NOT NULL DEFAULT 0,
        burned    INTEGER NOT NULL DEFAULT 0 CHECK (burned IN (0, 1)),
        UNIQUE (call_id, direction)
    )""",
    # PVP server candidate search: callee = ? AND start BETWEEN ? AND ? (DESIGN §5).
    "CREATE INDEX vcr_callee_start ON vcr (callee, start)",
    # Listing (--since) and retention purge.
    "CREATE INDEX vcr_start ON vcr (start)",
    # The validation scheduler's queue: only unvalidated originating rows are indexed.
    """CREATE INDEX vcr_pending ON vcr (start)
        WHERE direction = 'originating' AND validated IS NULL AND burned = 0""",
    """CREATE TABLE route (
        number              TEXT PRIMARY KEY,
        routes              TEXT NOT NULL,
        ticket              TEXT NOT NULL,
        ticket_expires      REAL NOT NULL,
        expires             REAL NOT NULL,
        learned_from_node   TEXT NOT NULL,
        learned_from_domain TEXT NOT NULL,
        validated_at        REAL NOT NULL,
        last_used           REAL,
        failures            INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE published_number (
        number    TEXT PRIMARY KEY,
        vservice  TEXT NOT NULL,
        stored_at REAL NOT NULL,
        expires   REAL NOT NULL
    )""",
    """CREATE TABLE ticket_key (
        epoch   INTEGER PRIMARY KEY CHECK (epoch BETWEEN 1 AND 255),
        secret  BLOB    NOT NULL,
        created REAL    NOT NULL,
        retired REAL,
        serial  INTEGER NOT NULL UNIQUE
    )""",
    """CREATE TABLE validation (
        id      INTEGER PRIMARY KEY,
        at      REAL    NOT NULL,
        role    TEXT    NOT NULL CHECK (role IN ('client', 'server')),
        number  TEXT    NOT NULL,
        vcr_id  INTEGER,
        peer    TEXT    NOT NULL,
        outcome TEXT    NOT NULL,
        reason  TEXT    NOT NULL
    )""",
    "CREATE INDEX validation_at ON validation (at)",
)

# v2 (issue 13, DESIGN §7/§8): a VCR is written when the call is answered (state 'open', stop =
# start until the BYE) and completed at the BYE; `dialog` holds the proxy's routing state of an
# open call (opaque text, NULL once closed) so a restarted proxy can still route and record the
# BYE. Rows of v1 were all written at the BYE: they become 'complete'.
_V2: tuple[str, ...] = (
    """ALTER TABLE vcr ADD COLUMN state TEXT NOT NULL DEFAULT 'complete'
        CHECK (state IN ('open', 'complete', 'unterminated'))""",
    "ALTER TABLE vcr ADD COLUMN dialog TEXT",
    # The proxy's start-up load and the sweep that closes calls without a BYE.
    "CREATE INDEX vcr_open ON vcr (start) WHERE state = 'open'",
)

# The tables (`vipr store check` counts them), and for `vipr store migrate`, which copies them
# in key order, batch by batch: each one's key column and every column of the current schema.
TABLES: tuple[str, ...] = ("vcr", "route", "published_number", "ticket_key", "validation")
TABLE_KEY: dict[str, str] = {
    "vcr": "id", "route": "number", "published_number": "number", "ticket_key": "epoch",
    "validation": "id",
}
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "vcr": ("id", "direction", "caller", "callee", "start", "stop", "call_id", "created",
            "validated", "failures", "burned", "state", "dialog"),
    "route": ("number", "routes", "ticket", "ticket_expires", "expires", "learned_from_node",
              "learned_from_domain", "validated_at", "last_used", "failures"),
    "published_number": ("number", "vservice", "stored_at", "expires"),
    "ticket_key": ("epoch", "secret", "created", "retired", "serial"),
    "validation": ("id", "at", "role", "number", "vcr_id", "peer", "outcome", "reason"),
}

# MIGRATIONS[i] brings the schema from version i to version i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)
