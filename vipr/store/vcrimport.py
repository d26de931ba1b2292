"""Call records from a PBX/CDR export → VCRs (`vipr vcrs import`). Pure: text in, records out.

`ImportOptions.format` picks the reader (DESIGN §11):
- `vipr` (and `auto`, the default) as below; `--map field=column` renames CSV columns and
  `direction` fills in a missing direction column;
- `asterisk-csv`: Asterisk cdr_csv `Master.csv` (no header; accountcode, src, dst, dcontext,
  clid, channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec,
  disposition, amaflags[, uniqueid][, userfield]); start = the `answer` column, unanswered
  rows are counted, not imported; times without an offset are read at `utc_offset`
  (cdr.conf `usegmtime=yes` writes UTC);
- `freeswitch-json`: `mod_json_cdr` documents (one per file, a JSON array, or one per line),
  read by the hook's parser (`proxy.hook.documents`): start = answer_epoch.
Numbers go through the provider's dialplan (national numbers → E.164).

The `vipr` format's two encodings are told apart by the first non-blank character:
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from vipr.dialplan import DEFAULT_DIALPLAN, Dialplan
from vipr.e164 import E164Error
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


FORMATS = ("auto", "vipr", "asterisk-csv", "freeswitch-json")
ASTERISK_COLUMNS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
                    "lastapp", "lastdata", "start", "answer", "end", "duration", "billsec",
                    "disposition", "amaflags", "uniqueid", "userfield")


@dataclass(frozen=True)
class ImportOptions:
    format: str = "auto"
    mapping: dict[str, str] = field(default_factory=dict)   # our field → the export's column
    direction: Direction | None = None                        # when the export has none
    dialplan: Dialplan = DEFAULT_DIALPLAN
    utc_offset: timezone | None = None                        # for times without an offset


@dataclass
class ImportResult:
    good: list[Vcr] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    unanswered: int = 0


def parse_utc_offset(text: str) -> timezone:
    """"UTC", "Z", "+01:00", "-0500" → a fixed offset; raise ValueError."""
    t = text.strip().upper()
    if t in ("UTC", "Z", "GMT"):
        return UTC
    sign = {"+": 1, "-": -1}.get(t[:1])
    digits = t[1:].replace(":", "")
    if sign is None or len(digits) != 4 or not digits.isdigit():
        raise ValueError(f"{text!r}: expected UTC or +HH:MM")
    h, m = int(digits[:2]), int(digits[2:])
    if h > 14 or m > 59:
        raise ValueError(f"{text!r}: offset out of range")
    return timezone(sign * timedelta(hours=h, minutes=m))


def _iso_time(s: str, value: object, field: str, tz: timezone | None) -> float:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise RowError(f"{field}: {value!r} is neither unix seconds nor ISO-8601") from None
    if dt.tzinfo is None:
        if tz is None:
            raise RowError(f"{field}: {value!r} has no UTC offset (add Z or +HH:MM)")
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def parse_time(value: Any, field: str = "time", tz: timezone | None = None) -> float:
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
            t = _iso_time(s, value, field, tz)
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


def record_to_vcr(rec: dict[str, Any], now: float,
                  opts: ImportOptions | None = None) -> Vcr:
    """One record (from any format) → a Vcr; raises RowError with the reason."""
    o = opts or ImportOptions()
    if "direction" not in rec and o.direction is not None:
        rec = {**rec, "direction": o.direction}
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
            caller = o.dialplan.normalize(caller_raw)
        except E164Error as e:
            raise RowError(f"caller: {e}") from None
    try:
        callee = o.dialplan.normalize(_text(rec, "callee"))
    except E164Error as e:
        raise RowError(f"callee: {e}") from None
    start = parse_time(rec.get("start"), "start", o.utc_offset)
    stop = parse_time(rec.get("stop"), "stop", o.utc_offset)
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
    res = parse_export(text, now, ImportOptions())
    return res.good, res.bad


def parse_export(text: str, now: float, opts: ImportOptions) -> ImportResult:
    """Parse a whole export in `opts.format`; bad rows carry 1-based line numbers."""
    if opts.format not in FORMATS:
        raise ImportFormatError(1, f"unknown format {opts.format!r} (one of {FORMATS})")
    stripped = text.lstrip()
    if not stripped:
        return ImportResult()
    if opts.format == "asterisk-csv":
        return _parse_asterisk(text, now, opts)
    if opts.format == "freeswitch-json":
        return _parse_freeswitch(text, now, opts)
    if stripped.startswith("{"):
        good, bad = _parse_jsonl(text, now, opts)
    else:
        good, bad = _parse_csv(text, now, opts)
    return ImportResult(good, bad)


def _csv_rows(text: str) -> list[tuple[int, list[str] | None, str]]:
    """(first line, row or None, CSV error) of every non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[tuple[int, list[str] | None, str]] = []
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error as e:
            out.append((line, None, f"CSV: {e}"))
            line = reader.line_num + 1
            continue
        start_line, line = line, reader.line_num + 1
        if row and any(c.strip() for c in row):
            out.append((start_line, row, ""))


def _parse_asterisk(text: str, now: float, opts: ImportOptions) -> ImportResult:
    res = ImportResult()
    o = opts if opts.utc_offset is not None else \
        ImportOptions(opts.format, opts.mapping, opts.direction, opts.dialplan, UTC)
    for line, row, err in _csv_rows(text):
        if row is None:
            res.bad.append(BadRow(line, err))
            continue
        if not 16 <= len(row) <= len(ASTERISK_COLUMNS):
            res.bad.append(BadRow(line, f"{len(row)} fields; Master.csv rows have 16 to 18"))
            continue
        c = dict(zip(ASTERISK_COLUMNS, row, strict=False))
        if not c["answer"].strip() or c["disposition"].strip().upper() != "ANSWERED":
            res.unanswered += 1
            continue
        # start = the answer (DESIGN §7), not the setup time in the start column
        rec = {"caller": c["src"], "callee": c["dst"], "start": c["answer"], "stop": c["end"],
               "call_id": (c.get("uniqueid") or "").strip()
               or f"{c['channel'].strip()}/{c['start'].strip()}"}
        try:
            res.good.append(record_to_vcr(rec, now, o))
        except RowError as e:
            res.bad.append(BadRow(line, str(e)))
    return res


def _freeswitch_docs(text: str) -> list[tuple[int, Any]]:
    """A document, an array of documents, or one document per line."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        out: list[tuple[int, Any]] = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((n, json.loads(line)))
                except (ValueError, RecursionError) as e:
                    out.append((n, RowError(f"not JSON: {e.args[0] if e.args else e}")))
        return out
    return [(1, d) for d in doc] if isinstance(doc, list) else [(1, doc)]


def _parse_freeswitch(text: str, now: float, opts: ImportOptions) -> ImportResult:
    from vipr.proxy.hook.documents import HookInputError, call_event  # shared with the hook

    res = ImportResult()
    for line, doc in _freeswitch_docs(text):
        if isinstance(doc, RowError):
            res.bad.append(BadRow(line, str(doc)))
            continue
        if not isinstance(doc, dict):
            res.bad.append(BadRow(line, "not a JSON object"))
            continue
        try:
            ev = call_event(doc, opts.dialplan, fmt="freeswitch", direction=opts.direction)
        except HookInputError as e:
            res.bad.append(BadRow(line, str(e)))
            continue
        if ev.kind == "unanswered" or ev.answered is None or ev.ended is None:
            res.unanswered += 1
            continue
        assert ev.direction is not None and ev.callee is not None
        res.good.append(Vcr(id=None, direction=ev.direction, caller=ev.caller or UNKNOWN_CALLER,
                            callee=ev.callee, start=ev.answered, stop=ev.ended,
                            call_id=ev.call_id, created=now))
    return res


def _renamed(rec: dict[str, str], mapping: dict[str, str]) -> dict[str, str]:
    """`--map field=column`: our field names from the export's columns."""
    if not mapping:
        return rec
    out = {k: v for k, v in rec.items() if k not in FIELDS}
    for f in FIELDS:
        col = mapping.get(f, f)
        if col in rec:
            out[f] = rec[col]
    return out


def _parse_jsonl(text: str, now: float,
                 opts: ImportOptions) -> tuple[list[Vcr], list[BadRow]]:
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
            good.append(record_to_vcr(_renamed(rec, opts.mapping), now, opts))
        except RowError as e:
            bad.append(BadRow(n, str(e)))
    return good, bad


def _parse_csv(text: str, now: float,
               opts: ImportOptions) -> tuple[list[Vcr], list[BadRow]]:
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
            cols = set(header)
            missing = [f for f in FIELDS if opts.mapping.get(f, f).lower() not in cols
                       and not (f == "direction" and opts.direction is not None)]
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
            rec = dict(zip(header, row, strict=True))
            mapping = {k: v.lower() for k, v in opts.mapping.items()}
            good.append(record_to_vcr(_renamed(rec, mapping), now, opts))
        except RowError as e:
            bad.append(BadRow(start_line, str(e)))
    return good, bad
