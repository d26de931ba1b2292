"""Logging for the daemons: stdlib `logging`, text lines or one JSON object per line.

Text:  2026-11-26T08:00:00.123Z pvp vipr.pvp.server INFO validated +14085551234 peer=b
JSON:  {"ts": "2026-11-26T08:00:00.123Z", "level": "info", "role": "pvp",
        "logger": "vipr.pvp.server", "msg": "validated +14085551234", "peer": "b"}
Fields passed as `logger.info(..., extra={"peer": "b"})` appear in both formats.

`extra=fields(call_id=…, caller=…, callee=…, peer=…, reason=…, duration=…)` (the names of
FIELDS) gives the JSON format separate fields for what the message text already says; the
text format leaves them out (the message has them, escaped). None values are dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from vipr.config import LoggingSection

__all__ = ["FIELDS", "JsonFormatter", "TextFormatter", "fields", "printable", "setup_logging"]

# Attributes every LogRecord has; anything else came from `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Libraries that log every call at DEBUG level; they stay at INFO or above.
_CHATTY = ("aiosqlite", "asyncio")


# Issue 16 item 5: the fields an operator filters JSON logs on.
FIELDS = ("call_id", "caller", "callee", "number", "peer", "reason", "outcome", "duration",
          "direction", "route", "node_id", "vcr_id")
_FIELDS_ATTR = "vipr_fields"


def fields(**kw: object) -> dict[str, Any]:
    """`extra=` for a log call: separate JSON fields (FIELDS), left out of text lines."""
    unknown = set(kw) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log field(s): {', '.join(sorted(unknown))}")
    return {_FIELDS_ATTR: {k: v for k, v in kw.items() if v is not None}}


def _escape(c: str) -> str:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"   # a byte kept by surrogateescape: the byte itself
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def printable(value: object, limit: int | None = 200) -> str:
    """Peer-supplied text made safe for a one-line text log (DESIGN §10).

    Every character that is not printable (NUL, CR, LF, other C0/C1 controls, line and
    paragraph separators, stray surrogates) becomes `\\xNN` / `\\uNNNN`; bytes are decoded as
    UTF-8 as far as they go (`\\xNN` for the rest). Longer than `limit` characters: cut,
    marked with "…". Already printable text is returned as is (so escaping twice is harmless).
    """
    s = bytes(value).decode("utf-8", "backslashreplace") if isinstance(
        value, bytes | bytearray) else str(value)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items()
            if k not in _STANDARD and k != _FIELDS_ATTR and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """ "TIME ROLE LOGGER LEVEL message key=value…" plus the traceback, if any."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} {self.role} {record.name} {record.levelname} "
            f"{printable(record.getMessage(), None)}"
        )   # one record, one line: whatever a caller forgot to escape (DESIGN §10)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={printable(v, None)}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, role, logger, msg, the extras, exc."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in getattr(record, _FIELDS_ATTR, {}).items():
            obj.setdefault(k, v)
        for k, v in _extras(record).items():
            obj.setdefault(k, v)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second setup replaces it."""


def setup_logging(section: LoggingSection, role: str, stream: TextIO | None = None) -> None:
    """Configure the root logger from the config's `logging` section (stderr by default)."""
    level = logging.getLevelNamesMapping()[section.level.upper()]
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _Handler):
            root.removeHandler(h)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(role) if section.format == "json" else TextFormatter(role))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    logging.captureWarnings(True)
