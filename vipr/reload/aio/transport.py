"""The transport of a RELOAD peer: TLS links, symmetric recursive routing (RFC 6940 §6.2),
end-to-end transactions (§6.2.1) and the answer cache (§6.2.2). Where a message goes is decided
by the sans-I/O `ChordProtocol` (core/chord_protocol.py); `ReloadNode` (node.py) holds one
`NodeTransport` and tells it how to answer requests and what to do when links come and go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from vipr.reload.aio.link import Link, Tap, connect
from vipr.reload.aio.transactions import AsyncTransactions, RequestTimeout
from vipr.reload.core.chord_protocol import ChordProtocol, Deliver, Forward, key_of
from vipr.reload.core.node_api import ChordTimers, ReloadRequestError
from vipr.reload.core.transactions import AnswerCache
from vipr.reload.wire import bodies as m
from vipr.reload.wire.bodies import OutgoingBody
from vipr.reload.wire.codec import Reader, ReloadDecodeError
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.envelope import encode_message
from vipr.reload.wire.forwarding import (
    Destination,
    ForwardingHeader,
    NodeDestination,
    ResourceDestination,
)
from vipr.reload.wire.security import ReloadSecurityError

log = logging.getLogger("vipr.reload.aio.node")

Handler = Callable[["Link | None", Received], Awaitable[OutgoingBody | None]]
LinkEvent = Callable[[bytes], None]


def _split(data: bytes) -> tuple[ForwardingHeader, bytes]:
    r = Reader(data)
    header = ForwardingHeader.decode(r)
    return header, data[r.pos :]


class NodeTransport:
    """Links and the message path of one peer. `protocol` decides routes; `handler` answers the
    requests for this node; `link_up` / `link_down` hear of the first / last link to a peer."""

    def __init__(self, context: ReloadContext, creds_files: tuple[Path, Path],
                 timers: ChordTimers, max_message_size: int, *, protocol: ChordProtocol,
                 handler: Handler, link_up: LinkEvent, link_down: LinkEvent) -> None:
        self.protocol = protocol
        self.handler = handler
        self.link_up = link_up
        self.link_down = link_down
        self.context = context
        self.node_id: bytes = context.node_id
        self.creds_files = creds_files
        self.timers = timers
        self.max_message_size = max_message_size  # §11.1 max-message-size
        self.tap: Tap | None = None  # sees every link's stream bytes (pcaps, debug capture)
        self.keylog: str | None = None  # TLS key log file (debug capture)
        self._links: dict[bytes, list[Link]] = {}
        self._link_events: dict[bytes, asyncio.Event] = {}
        self._tx = AsyncTransactions(timers.reliability_timer, timers.max_transmissions)
        self._cache = AnswerCache()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.hop_counts: dict[int, int] = {}  # hops of Resource-ID requests answered here

    # --- links -------------------------------------------------------------------------------

    def link_kwargs(self) -> dict[str, Any]:
        return {"on_message": self._on_message, "dead_after": self.timers.link_dead_after,
                "max_message_size": self.max_message_size, "on_too_large": self._too_large,
                "tap": self.tap, "keylog": self.keylog}

    def _too_large(self, link: Link, header: ForwardingHeader) -> bytes:
        """§6.6: Error_Message_Too_Large to an oversize frame (the link then closes)."""
        return self.context.error_to(header, m.ErrorCode.MESSAGE_TOO_LARGE,
                                     previous_hop=link.peer_node_id)

    def add_link(self, link: Link) -> None:
        peer = link.peer_node_id
        if self.stopping or peer == self.node_id:
            self._spawn(link.close("unwanted"))
            return
        first = not self._links.get(peer)
        self._links.setdefault(peer, []).append(link)
        self._spawn(self._watch_link(link))
        if first:
            self.link_up(peer)

    async def _watch_link(self, link: Link) -> None:
        await link.closed.wait()
        peer = link.peer_node_id
        ls = self._links.get(peer, [])
        if link in ls:
            ls.remove(link)
        if ls or self.stopping:
            return
        self._links.pop(peer, None)
        log.info("%s: lost %s (%s)", self.node_id.hex()[:8], peer.hex()[:8], link.close_reason)
        self.link_down(peer)

    def link(self, peer: bytes) -> Link | None:
        for link in self._links.get(peer, ()):
            if not link.closed.is_set():
                return link
        return None

    async def connect(self, host: str, port: int, expected: bytes | None) -> Link:
        link = await connect(host, port, self.creds_files, self.context.trust,
                             expected_node_id=expected, timeout=self.timers.attach_timeout,
                             **self.link_kwargs())
        self.add_link(link)
        self._spawn(self._hello(link))
        return link

    async def _hello(self, link: Link) -> None:
        """A Ping (§6.5.3) opens every link we make: the accepting peer closes a link that
        carries no RELOAD message within its handshake timeout (DESIGN §10). Its answer
        matches no transaction and is ignored."""
        _txid, data = self.context.request(m.PingReq(), (NodeDestination(link.peer_node_id),))
        try:
            await link.send(data)
        except (ConnectionError, OSError, ValueError) as e:
            log.info("%s: hello to %s failed: %s", self.node_id.hex()[:8],
                     link.peer_node_id.hex()[:8], e)

    # --- message path (§6.2: symmetric recursive routing) --------------------------------------

    def _on_message(self, link: Link, data: bytes) -> None:
        self._spawn(self._process(link, data))

    async def _process(self, link: Link | None, data: bytes) -> None:
        """Deliver locally or forward one message (`link` None: we originated it)."""
        try:
            header, rest = _split(data)
            code = int.from_bytes(rest[:2], "big")
        except (ReloadDecodeError, ValueError):
            return
        dests = list(header.destination_list)
        while (len(dests) > 1 and isinstance(dests[0], NodeDestination)
               and dests[0].node_id == self.node_id):
            dests.pop(0)  # §6.3.2.2: strip ourselves from the front of the list
        is_request = code != m.MessageCode.ERROR and code % 2 == 1
        decision = self.protocol.route(dests[0] if dests else None, code)
        if isinstance(decision, Deliver):
            await self._deliver(link, header, data, is_request)
            return
        out_link = self.link(decision.peer) if isinstance(decision, Forward) else None
        if out_link is None and isinstance(decision, Forward):
            # the named peer's link is closing (its loss not yet reported): route by key
            key = key_of(dests[0])
            hop = None if key is None else self.protocol.next_hop(key)
            if hop is not None and hop != decision.peer:
                out_link = self.link(hop)
        if out_link is None or (link is not None and header.ttl <= 1):
            if is_request and link is not None:
                err = m.ErrorCode.TTL_EXCEEDED if header.ttl <= 1 else m.ErrorCode.NOT_FOUND
                await self._process(None, self.context.error_to(
                    header, err, "no route", previous_hop=link.peer_node_id))
            return
        via = header.via_list
        if link is not None and is_request:
            via = (*via, NodeDestination(link.peer_node_id))  # §6.3.2.1 via list
        hdr = replace(header, destination_list=tuple(dests), via_list=via,
                      ttl=header.ttl - 1 if link is not None else header.ttl)
        out = encode_message(hdr, rest, b"")
        if len(out) > self.max_message_size:  # §6.6: never sent; the origin hears of it
            log.warning("%s: not forwarding a message of %d bytes (max-message-size %d)",
                        self.node_id.hex()[:8], len(out), self.max_message_size)
            if is_request and link is not None:
                await self._process(None, self.context.error_to(
                    header, m.ErrorCode.MESSAGE_TOO_LARGE, "message too large to forward",
                    previous_hop=link.peer_node_id))
            return
        try:
            await out_link.send(out)
        except (ConnectionError, OSError) as e:  # the link is gone: the origin retransmits
            log.info("%s: forwarding to %s failed: %s", self.node_id.hex()[:8],
                     out_link.peer_node_id.hex()[:8], e)

    async def _deliver(self, link: Link | None, header: ForwardingHeader, data: bytes,
                       is_request: bool) -> None:
        if not is_request:
            self._tx.deliver(header.transaction_id, data)  # verified by the waiting requester
            return
        now = self._now()
        cached = self._cache.lookup(header.transaction_id, now)
        if cached is not None:  # §6.2.2: retransmitted request, identical answer
            await self._process(None, cached)
            return
        try:
            rx = self.context.decode(data)
        except (ReloadDecodeError, ReloadSecurityError) as e:
            log.info("%s: dropping request: %s", self.node_id.hex()[:8], e)
            return
        prev = link.peer_node_id if link is not None else None
        if header.destination_list and isinstance(header.destination_list[-1],
                                                  ResourceDestination):
            hops = len(header.via_list) + (link is not None)
            self.hop_counts[hops] = self.hop_counts.get(hops, 0) + 1
        try:
            body = await self.handler(link, rx)
        except Exception:
            log.exception("request handler failed")
            body = m.ErrorResponse.text(m.ErrorCode.INVALID_MESSAGE, "internal error")
        if body is None:
            return
        try:
            ans = self.context.answer(rx.message, body, previous_hop=prev)
        except Exception:  # an answer we cannot encode: the requester hears of it at once
            log.exception("%s: cannot encode the answer to %s", self.node_id.hex()[:8],
                          type(rx.body).__name__)
            ans = self.context.answer(rx.message, m.ErrorResponse.text(
                m.ErrorCode.INVALID_MESSAGE, "internal error"), previous_hop=prev)
        if len(ans) > self.max_message_size:
            # An answer the links would refuse is never dropped silently: the requester gets
            # Error_Response_Too_Large at once (RFC 6940 §6.3.3.1; DESIGN §4) and can Stat and
            # fetch by key instead.
            log.warning("%s: answer to %s of %d bytes exceeds max-message-size %d: "
                        "answering Error_Response_Too_Large", self.node_id.hex()[:8],
                        type(rx.body).__name__, len(ans), self.max_message_size)
            ans = self.context.answer(rx.message, m.ErrorResponse.text(
                m.ErrorCode.RESPONSE_TOO_LARGE,
                f"answer of {len(ans)} bytes exceeds max-message-size {self.max_message_size}"),
                previous_hop=prev)
        self._cache.store(header.transaction_id, ans, now)
        await self._process(None, ans)

    async def request(self, dests: tuple[Destination, ...], body: OutgoingBody,
                      timeout: float | None) -> Received:
        txid, data = self.context.request(body, dests)
        if len(data) > self.max_message_size:  # §6.6: no link would carry it
            raise ReloadRequestError(m.ErrorCode.MESSAGE_TOO_LARGE,
                                     f"request of {len(data)} bytes exceeds max-message-size "
                                     f"{self.max_message_size}")

        async def send(d: bytes) -> None:
            await self._process(None, d)

        try:
            raw = await asyncio.wait_for(self._tx.request(txid, data, send), timeout)
        except (RequestTimeout, TimeoutError) as e:
            raise ReloadRequestError(m.ErrorCode.REQUEST_TIMEOUT, "no answer") from e
        try:
            rx = self.context.decode(raw)
        except (ReloadDecodeError, ReloadSecurityError) as e:
            raise ReloadRequestError(m.ErrorCode.INVALID_MESSAGE, str(e)) from e
        if isinstance(rx.body, m.ErrorResponse):
            raise ReloadRequestError(rx.body.error_code, rx.body.info_text())
        return rx

    def close_links(self, peer: bytes, reason: str) -> None:
        for link in list(self._links.get(peer, ())):
            self._spawn(link.close(reason))

    async def close(self) -> None:
        """Close every link, fail the open transactions, end the tasks."""
        self.stopping = True
        await asyncio.gather(*(link.close("node stopped") for links in list(self._links.values())
                               for link in list(links)), return_exceptions=True)
        await self._tx.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """One message's (or one job's) failure is logged and stays its own: the links and
        the node go on."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s failed: %r", self.node_id.hex()[:8],
                      getattr(task.get_coro(), "__qualname__", "?"), exc, exc_info=exc)

    def _now(self) -> float:
        return time.monotonic()
