"""Call records from a PBX/CDR export → VCRs (`vipr vcrs import`). Pure: text in, records out.

Two formats, told apart by the first non-blank character:
- CSV with a header row naming at least caller, callee, direction, start, stop, call_id
  (any order; other columns are ignored);
- JSON lines: one object per line with those keys (blank lines are skipped).

start/stop: unix seconds (number or numeric string) or ISO-8601 with a UTC offset ("Z",
"+02:00"): a time without an offset is refused, because a wrong zone would silently break the
PVP password (DESIGN §5). Numbers are normalised to E.164. The caller may be empty on a
terminating record (the PSTN did not deliver it); an originating record needs one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vipr.e164 import E164Error, normalize_e164
from vipr.store.models import DIRECTIONS, UNKNOWN_CALLER, Direction, Vcr

FIELDS = ("caller", "callee", "direction", "start", "stop", "call_id")
MAX_CALL_ID = 512


class ImportFormatError(Exception):
    """The file as a whole cannot be read (a CSV header without the required columns)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class RowError(ValueError):
    """One record is unusable; the message says why."""


def _iso_time(s: str, value: object, field: str) -> float:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise RowError(f"{field}: {value!r} is neither unix seconds nor ISO-8601") from None
    if dt.tzinfo is None:
        raise RowError(f"{field}: {value!r} has no UTC offset (add Z or +HH:MM)")
    return dt.timestamp()


def parse_time(value: Any, field: str = "time") -> float:
    """Unix seconds (int, float or numeric string) or ISO-8601 with an offset → unix seconds."""
    if isinstance(value, bool) or value is None:
        raise RowError(f"{field}: missing or not a time")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            raise RowError(f"{field}: empty")
        try:
            t = float(s)
        except ValueError:
            t = _iso_time(s, value, field)
    else:
        raise RowError(f"{field}: {value!r} is not a time")
    if not math.isfinite(t) or t <= 0:
        raise RowError(f"{field}: {value!r} is out of range")
    return t


def _text(rec: dict[str, Any], field: str) -> str:
    v = rec.get(field)
    if v is None:
        return ""
    if not isinstance(v, str):
        if isinstance(v, int) and not isinstance(v, bool) and field in ("caller", "callee"):
            return str(v)
        raise RowError(f"{field}: {v!r} is not a string")
    return v.strip()


def record_to_vcr(rec: dict[str, Any], now: float) -> Vcr:
    """One record (from either format) → a Vcr; raises RowError with the reason."""
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise RowError("missing " + ", ".join(missing))
    direction = _text(rec, "direction").lower()
    if direction not in DIRECTIONS:
        raise RowError(f"direction: {rec.get('direction')!r} is not originating|terminating")
    dirn: Direction = "originating" if direction == "originating" else "terminating"
    caller_raw = _text(rec, "caller")
    if not caller_raw or caller_raw.lower() in ("anonymous", "unknown"):
        if dirn == "originating":
            raise RowError("caller: required on an originating record")
        caller = UNKNOWN_CALLER
    else:
        try:
            caller = normalize_e164(caller_raw)
        except E164Error as e:
            raise RowError(f"caller: {e}") from None
    try:
        callee = normalize_e164(_text(rec, "callee"))
    except E164Error as e:
        raise RowError(f"callee: {e}") from None
    start = parse_time(rec.get("start"), "start")
    stop = parse_time(rec.get("stop"), "stop")
    if stop < start:
        raise RowError("stop is before start")
    call_id = _text(rec, "call_id")
    if not call_id:
        raise RowError("call_id: empty")
    if len(call_id) > MAX_CALL_ID:
        raise RowError(f"call_id: longer than {MAX_CALL_ID} characters")
    return Vcr(id=None, direction=dirn, caller=caller, callee=callee, start=start, stop=stop,
               call_id=call_id, created=now)


def parse_vcr_file(text: str, now: float) -> tuple[list[Vcr], list[BadRow]]:
    """Parse a whole export; good records and bad ones (with 1-based line numbers)."""
    stripped = text.lstrip()
    if not stripped:
        return [], []
    if stripped.startswith("{"):
        return _parse_jsonl(text, now)
    return _parse_csv(text, now)


def _parse_jsonl(text: str, now: float) -> tuple[list[Vcr], list[BadRow]]:
    good: list[Vcr] = []
    bad: list[BadRow] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            bad.append(BadRow(n, f"not JSON: {e.args[0] if e.args else e}"))
            continue
        if not isinstance(rec, dict):
            bad.append(BadRow(n, "not a JSON object"))
            continue
        try:
            good.append(record_to_vcr(rec, now))
        except RowError as e:
            bad.append(BadRow(n, str(e)))
    return good, bad


def _parse_csv(text: str, now: float) -> tuple[list[Vcr], list[BadRow]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    good: list[Vcr] = []
    bad: list[BadRow] = []
    header: list[str] | None = None
    line = 1  # the line the next record starts on
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            bad.append(BadRow(line, f"CSV: {e}"))
            line = reader.line_num + 1
            continue
        start_line, line = line, reader.line_num + 1
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            missing = [f for f in FIELDS if f not in header]
            if missing:
                raise ImportFormatError(
                    start_line,
                    f"CSV header lacks {', '.join(missing)} (needs {', '.join(FIELDS)})",
                )
            continue
        if len(row) != len(header):
            bad.append(BadRow(start_line, f"{len(row)} fields, header has {len(header)}"))
            continue
        try:
            good.append(record_to_vcr(dict(zip(header, row, strict=True)), now))
        except RowError as e:
            bad.append(BadRow(start_line, str(e)))
    return good, bad
