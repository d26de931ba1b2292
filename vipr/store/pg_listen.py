"""LISTEN on the store's event channel (vipr.store.events) over a dedicated PostgreSQL
connection, reconnecting with a backoff when it is lost. After every reconnection the handler
gets a `resync` event: NOTIFYs sent while no connection listened are not replayed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from vipr.store.events import CHANNEL, EventError, EventHandler, StoreEvent, decode_event

__all__ = ["Listener"]

log = logging.getLogger("vipr.store")

RETRY_MIN, RETRY_MAX = 0.2, 5.0   # seconds between reconnection attempts
CONNECT_TIMEOUT = 10.0
PING_INTERVAL = 2.0   # seconds between liveness checks of the listening connection


class Listener:
    def __init__(self, url: str, name: str, handler: EventHandler) -> None:
        self._url, self._name, self._handler = url, name, handler
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._handling: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for t in list(self._handling):
            t.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            event = decode_event(payload)
        except EventError as exc:
            log.warning("ignored an event on %s: %s", CHANNEL, exc)
            return
        self._dispatch(event)

    def _dispatch(self, event: StoreEvent) -> None:
        t = asyncio.get_running_loop().create_task(self._handle(event))
        self._handling.add(t)
        t.add_done_callback(self._handling.discard)

    async def _handle(self, event: StoreEvent) -> None:
        try:
            await self._handler(event)
        except Exception as exc:   # a role's failure to react must not stop the listener
            log.warning("store event %s not handled: %r", event.kind, exc)

    async def _run(self) -> None:
        delay, first = RETRY_MIN, True
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
                self._lost.clear()
                conn.add_termination_listener(lambda c: self._lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connected.set()
                if not first:
                    log.info("store events from %s: listening again", self._name)
                    self._dispatch(StoreEvent("resync"))
                first, delay = False, RETRY_MIN
                while not self._lost.is_set():   # also catch a silently dead connection
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), PING_INTERVAL)
                    if not self._lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=PING_INTERVAL)
                log.warning("store events from %s: connection lost; reconnecting", self._name)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                if first or delay == RETRY_MIN:
                    log.warning("store events from %s: cannot listen (%s); retrying",
                                self._name, exc)
                first = False
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
