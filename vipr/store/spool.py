"""The proxy's VCR spool for database outages (issue 15 item 3, DESIGN §12): VCR changes the
store could not take are appended to a file (fsync'd before the proxy relays the answer, as a
commit would be) and replayed in order when the database is back.

Nothing lost: a change is acknowledged only once it is on disk. Nothing duplicated: replaying
is idempotent (an OpenVcr whose Call-ID and direction exist changes nothing, a CompleteVcr of
a complete VCR changes nothing), so a crash between the replay's commit and the spool's
progress mark only replays some changes a second time, harmlessly.

Files in the spool directory: `changes.jsonl` (one change a line, appended) and `done` (the
byte offset up to which changes are committed, replaced atomically). Both go when all is
replayed. A torn last line (a crash while appending, never acknowledged) is dropped.
Bounded: at `max_changes` pending, further changes are refused (counted, logged by the caller).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from vipr.private_files import private_dir
from vipr.store.models import DIRECTIONS, VCR_STATES, CompleteVcr, OpenVcr, Vcr, VcrChange

__all__ = ["DEFAULT_MAX_CHANGES", "SpoolError", "VcrSpool", "decode_change", "encode_change"]

DEFAULT_MAX_CHANGES = 250_000   # ~75 MB; at 200 calls/s (2 changes a call) about 10 minutes
_CHANGES, _DONE = "changes.jsonl", "done"


class SpoolError(ValueError):
    """A spool line that is not a VCR change."""


def encode_change(ch: VcrChange) -> bytes:
    d: dict[str, Any] = {"t": "open" if isinstance(ch, OpenVcr) else "complete",
                         "v": dataclasses.asdict(ch.vcr)}
    if isinstance(ch, OpenVcr):
        d["d"] = ch.dialog
    return json.dumps(d, separators=(",", ":")).encode() + b"\n"


def decode_change(line: bytes) -> VcrChange:
    try:
        d = json.loads(line)
        v = d["v"]
        vcr = Vcr(id=None, direction=v["direction"], caller=str(v["caller"]),
                  callee=str(v["callee"]), start=float(v["start"]), stop=float(v["stop"]),
                  call_id=str(v["call_id"]), created=float(v["created"]),
                  validated=None if v["validated"] is None else float(v["validated"]),
                  failures=int(v["failures"]), burned=bool(v["burned"]), state=v["state"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SpoolError(f"bad spool line: {exc!r}") from None
    if vcr.direction not in DIRECTIONS or vcr.state not in VCR_STATES:
        raise SpoolError("bad spool line: direction or state")
    if d.get("t") == "open":
        dialog = d.get("d")
        return OpenVcr(vcr, dialog if isinstance(dialog, str) else None)
    if d.get("t") == "complete":
        return CompleteVcr(vcr)
    raise SpoolError("bad spool line: kind")


class VcrSpool:
    """Synchronous file work (small appends, fsync); the caller runs it off the hot path."""

    def __init__(self, directory: Path, max_changes: int = DEFAULT_MAX_CHANGES) -> None:
        self.dir = private_dir(Path(directory), warn=False)
        self.max_changes = max_changes
        self._changes, self._done = self.dir / _CHANGES, self.dir / _DONE
        self._cut_torn_tail()
        self.pending = len(self._lines(self._offset())[0])
        if not self.pending:
            self.commit(0, 0)   # nothing left: no files

    def _cut_torn_tail(self) -> None:
        """A last line without its newline was being appended when the process died; it was
        never acknowledged: cut it, so the next append starts a line of its own."""
        try:
            data = self._changes.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            os.truncate(self._changes, data.rfind(b"\n") + 1)

    def _offset(self) -> int:
        try:
            return int(self._done.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0   # a torn progress mark: replay from the start (idempotent)

    def _lines(self, offset: int, limit: int | None = None) -> tuple[list[bytes], int]:
        """Whole lines from `offset` (at most `limit`) and the offset after them."""
        lines: list[bytes] = []
        end = offset
        try:
            with open(self._changes, "rb") as f:
                f.seek(offset)
                while limit is None or len(lines) < limit:
                    raw = f.readline()
                    if not raw.endswith(b"\n"):
                        break   # the end, or a torn last line (never acknowledged)
                    lines.append(raw)
                    end += len(raw)
        except FileNotFoundError:
            pass
        return lines, end

    def append(self, changes: list[VcrChange]) -> int:
        """Write as many changes as the bound allows, durably; how many were written."""
        room = max(0, self.max_changes - self.pending)
        take = changes[:room]
        if not take:
            return 0
        fd = os.open(self._changes, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(encode_change(ch) for ch in take))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.pending += len(take)
        return len(take)

    def peek(self, n: int) -> tuple[list[VcrChange], int, int]:
        """The oldest `n` pending changes (unreadable lines skipped), the offset after them
        (for `commit`) and how many lines that covers."""
        lines, end = self._lines(self._offset(), n)
        out: list[VcrChange] = []
        for raw in lines:
            try:
                out.append(decode_change(raw))
            except SpoolError:
                continue
        return out, end, len(lines)

    def commit(self, end: int, lines: int) -> None:
        """The changes up to byte `end` are in the database."""
        self.pending = max(0, self.pending - lines)
        size = self._changes.stat().st_size if self._changes.exists() else 0
        if end >= size or not self.pending:   # everything replayed: start afresh
            self._changes.unlink(missing_ok=True)
            self._done.unlink(missing_ok=True)
            self.pending = 0
            return
        tmp = self._done.with_name(_DONE + ".tmp")
        tmp.write_text(str(end))
        os.replace(tmp, self._done)
