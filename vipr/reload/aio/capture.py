"""`overlay.debug.capture`: write the overlay's decrypted RELOAD traffic to a pcap and/or the
TLS secrets to a key log (off by default; DESIGN §13). The records come from the sans-I/O
`vipr.reload.tools.capture`; this shell owns the file, its size bound and the warnings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from vipr.config.schema import DebugCapture
from vipr.private_files import PRIVATE_FILE_MODE
from vipr.reload.tools.capture import CaptureState, pcap_file_header

log = logging.getLogger("vipr.overlay")

WARN_EVERY = 300.0  # seconds between the "capture is on" warnings


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)  # decrypted traffic / session keys: owner only
    return fd


class PcapCapture:
    """A `Link` tap: every link's stream, as pcap records, into one file of at most
    `max_bytes` (then capture stops, with a warning)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.state = CaptureState()
        self._fh = os.fdopen(_open_private(path, os.O_TRUNC), "wb")
        self._fh.write(pcap_file_header())
        self._fh.flush()
        self.size = len(pcap_file_header())
        self.full = False
        self._watch: set[asyncio.Task[None]] = set()

    def _write(self, records: bytes) -> None:
        if self.full or not records or self._fh.closed:
            return
        if self.size + len(records) > self.max_bytes:
            self.full = True
            log.warning("debug capture: %s reached overlay.debug.capture.max_bytes (%d bytes):"
                        " capture stopped", self.path, self.max_bytes)
            return
        self._fh.write(records)
        self._fh.flush()  # readable by tshark while the daemon runs
        self.size += len(records)

    def __call__(self, link: Any, outgoing: bool, data: bytes) -> None:
        new = not self.state.knows(link)
        local = peer = None
        if new:
            peer = (link.peer_address or (None,))[0]
            local = (link.local_address or (None,))[0]
        self._write(self.state.feed(link, outgoing, data, time.time(), local=local, peer=peer))
        if new:
            task = asyncio.get_running_loop().create_task(self._closed(link))
            self._watch.add(task)
            task.add_done_callback(self._watch.discard)

    async def _closed(self, link: Any) -> None:
        await link.closed.wait()
        self._write(self.state.close(link, time.time()))

    def close(self) -> None:
        for t in self._watch:
            t.cancel()
        self._fh.close()


class Capture:
    """What `overlay.debug.capture` turns on for one daemon: the pcap tap (shared by its
    nodes), the key log path, and the warning repeated while either is on."""

    def __init__(self, conf: DebugCapture) -> None:
        self.conf = conf
        self.pcap = PcapCapture(conf.pcap, conf.max_bytes) if conf.pcap is not None else None
        self.keylog: str | None = None
        if conf.keylog is not None:
            os.close(_open_private(conf.keylog, os.O_APPEND))  # OpenSSL appends to it
            self.keylog = str(conf.keylog)

    def describe(self) -> str:
        parts = []
        if self.pcap is not None:
            parts.append(f"decrypted RELOAD traffic to {self.pcap.path} "
                         f"({self.pcap.size} of {self.pcap.max_bytes} bytes"
                         f"{', full: stopped' if self.pcap.full else ''})")
        if self.keylog is not None:
            parts.append(f"TLS session keys to {self.keylog}")
        return "; ".join(parts)

    async def warn_while_on(self, stop: asyncio.Event, every: float = WARN_EVERY) -> None:
        """DESIGN §13: a WARNING at start and every `every` seconds while capture is on."""
        while True:
            log.warning("debug capture is ON (overlay.debug.capture): %s; turn it off after "
                        "debugging", self.describe())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return

    def close(self) -> None:
        if self.pcap is not None:
            self.pcap.close()


__all__ = ["Capture", "PcapCapture"]
