"""The SIP UDP transport (RFC 3261 §18): datagrams in and out, reopened if it closes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket

from vipr.limits import SIP_LIMITS, SipLimits
from vipr.logsetup import printable
from vipr.proxy.sip.source import (
    _HOSTNAME_RE,
    BadDestination,
    DeadCallback,
    ErrorCallback,
    MessageCallback,
    Source,
    _bare,
    _deliver,
    _log_error,
    ip_destination,
)

log = logging.getLogger("vipr.proxy.sip.transport")

# The default receive buffer (~208 KB, a few hundred messages) overflowed in bursts at
# 500 calls/s (the loop busy for some ms): each lost datagram costs a retransmission
# 0.5 s later, or a failed call. Asked for on every UDP socket; the kernel caps it.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

# A listener whose socket closed under it is reopened on the same address this often,
# this far apart, before the transport is declared dead (the daemon then exits non-zero).
UDP_REOPEN_TRIES = 5
UDP_REOPEN_DELAY = 0.2


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        o = self.owner
        try:
            src = Source("udp", str(addr[0]), addr[1], o.local_host, o.local_port, None,
                         o.label)
            if data.strip(b"\r\n") == b"":
                return   # keep-alive (RFC 5626 §4.4.1 uses STUN; bare CRLF is common): ignore
            _deliver(data, src, o.on_message, o.on_error, o.limits)
        except Exception as exc:   # one datagram's trouble stays with it (DESIGN §10)
            log.error("error handling a datagram from %s on %s: %s", printable(addr, 80),
                      o.label, printable(repr(exc)))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on %s: %s", self.owner.label, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


class UdpTransport:
    """A UDP socket: datagrams in, datagrams out.

    Sends go only to IP literals (`ip_destination`); `send` may resolve a configured host
    name first. Should the socket close anyway, it is reopened on the same address;
    `on_dead(label, reason)` is called if that fails. `state`: open, reopening, dead, closed.
    """

    name = "udp"
    reliable = False

    def __init__(self, on_message: MessageCallback, on_error: ErrorCallback | None,
                 limits: SipLimits, label: str | None = None,
                 on_dead: DeadCallback | None = None) -> None:
        self.label = label or "udp"
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.limits = limits
        self.max_size = limits.max_message_size
        self.on_dead = on_dead
        self.local_host = ""
        self.local_port = 0
        self.reopened = 0
        self._closed = False
        self._dead = False
        self._family = socket.AF_INET
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _UdpProtocol | None = None
        self._reopen: asyncio.Task[None] | None = None

    @classmethod
    async def listen(cls, host: str, port: int, on_message: MessageCallback, *,
                     on_error: ErrorCallback | None = None, max_size: int | None = None,
                     limits: SipLimits = SIP_LIMITS, label: str | None = None,
                     on_dead: DeadCallback | None = None) -> UdpTransport:
        """Bind host:port (port 0 picks a free one; see `local_port`). `max_size`
        overrides `limits.max_message_size`."""
        if max_size is not None:
            limits = dataclasses.replace(limits, max_message_size=max_size)
        self = cls(on_message, on_error, limits, label, on_dead)
        await self._open(host, port)
        return self

    async def _open(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        proto = _UdpProtocol(self)
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=(host, port))
        self._transport, self._protocol = tr, proto
        raw = tr.get_extra_info("socket")
        if raw is not None:
            self._family = raw.family
            with contextlib.suppress(OSError):   # best effort: the kernel caps it (rmem_max)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        sock = tr.get_extra_info("sockname")
        self.local_host, self.local_port = sock[0], sock[1]

    @property
    def state(self) -> str:
        """The socket as it is: open, reopening, dead or closed (for `status`)."""
        if self._closed:
            return "closed"
        if self._dead:
            return "dead"
        if self._transport is None or self._transport.is_closing():
            return "reopening"
        return "open"

    def _lost(self, proto: _UdpProtocol, exc: Exception | None) -> None:
        if self._closed or proto is not self._protocol:
            return
        log.error("UDP listener %s on %s:%s closed (%s): reopening", self.label,
                  self.local_host, self.local_port, printable(repr(exc)))
        self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop())

    async def _reopen_loop(self) -> None:
        err = "?"
        for attempt in range(UDP_REOPEN_TRIES):
            if self._closed:
                return
            try:
                await self._open(self.local_host, self.local_port)
            except OSError as exc:
                err = str(exc)
                await asyncio.sleep(UDP_REOPEN_DELAY * (attempt + 1))
                continue
            self.reopened += 1
            log.warning("UDP listener %s reopened on %s:%s", self.label, self.local_host,
                        self.local_port)
            return
        self._dead = True
        log.error("UDP listener %s on %s:%s could not be reopened: %s", self.label,
                  self.local_host, self.local_port, err)
        if self.on_dead is not None:
            self.on_dead(self.label, err)

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram now to an IP literal (BadDestination otherwise; RFC 3261
        §18.1.1 size rules are the caller's concern). Never closes the socket."""
        dest = ip_destination(host, port, self._family)
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("UDP transport closed")
        try:
            self._transport.sendto(data, dest)
        except (OSError, ValueError, TypeError) as exc:   # defensive: the address is checked
            raise ConnectionError(f"send failed: {exc}") from exc

    async def send(self, data: bytes, host: str, port: int) -> None:
        """Same as `sendto`; a host name (from the configuration, never from a peer's
        message on the receive path) is resolved first, without blocking the loop."""
        bare = _bare(host)
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if _HOSTNAME_RE.fullmatch(bare) is None:
                raise BadDestination(f"not a host name: {printable(host, 80)!r}") from None
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(bare, port, family=self._family,
                                               type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                raise BadDestination(f"cannot resolve {bare}: {exc}") from exc
            if not infos:
                raise BadDestination(f"cannot resolve {bare}") from None
            bare = str(infos[0][4][0])
        self.sendto(data, bare, port)

    def close(self) -> None:
        """Close the socket."""
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        if self._transport is not None:
            self._transport.close()
