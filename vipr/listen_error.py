"""One error type for a listener that cannot bind, naming which listener and its address.

`OSError("[Errno 98] Address already in use")` from a UDP bind says neither; an operator
(and `vipr up`, whose roles share one terminal) needs "cannot listen on proxy interface
internal udp 127.0.0.1:5060: Address already in use". `run_daemon` logs it as that one line.
"""

from __future__ import annotations

import os

__all__ = ["ListenError", "listen_error"]


class ListenError(OSError):
    """A listening socket could not be opened; str() is the whole one-line message."""

    def __str__(self) -> str:
        return str(self.strerror)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(what: str, host: str, port: int, exc: OSError) -> ListenError:
    """`exc` (from bind/listen) as a ListenError naming `what` and host:port."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return ListenError(exc.errno or 0, f"cannot listen on {what} {_hostport(host, port)}: "
                                       f"{reason}")
