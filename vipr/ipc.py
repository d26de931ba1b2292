"""Local-socket IPC between the daemons of one provider (DESIGN §2).

Newline-delimited JSON over a Unix stream socket. A request is
``{"id": 1, "method": "lookup", "params": {...}}``; the answer carries the same id and either
``"result": {...}`` or ``"error": {"code": ..., "message": ...}``. Lines are at most
`MAX_LINE` bytes (without the newline). The server answers bad input with an error and keeps
the connection: after an oversize line it discards bytes up to the next newline and goes on
(resynchronises). Requests on one connection run concurrently; answers match by id.

`LineFramer` and the encode/decode functions are sans-I/O; `IpcServer`, `ipc_call` and
`IpcClient` are the asyncio shells.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from vipr.private_files import private_dir

__all__ = [
    "MAX_LINE",
    "Handler",
    "IpcClient",
    "IpcError",
    "IpcServer",
    "LineFramer",
    "Oversize",
    "ipc_call",
]

log = logging.getLogger("vipr.ipc")

MAX_LINE = 64 * 1024
SOCKET_MODE = 0o660
READ_CHUNK = 64 * 1024
MAX_INFLIGHT = 32  # concurrent requests per connection; beyond it the server stops reading

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RequestId = int | str | None


class IpcError(Exception):
    """An error answer, or a local failure: "unavailable", "timeout", "bad-answer", …"""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------- sans-I/O framing


class Oversize:
    """Framer event: a line longer than the limit was dropped."""

    def __repr__(self) -> str:
        return "OVERSIZE"


OVERSIZE = Oversize()


class LineFramer:
    """Splits a byte stream into lines of at most `limit` bytes.

    `feed` returns complete lines (without b"\\n") and `OVERSIZE` for each line that exceeded the
    limit; the rest of such a line is discarded up to its newline, so the stream resynchronises.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        out: list[bytes | Oversize] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.limit:
                    if not self._discarding:
                        out.append(OVERSIZE)
                        self._discarding = True
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._discarding:
                self._discarding = False  # the tail of a line already reported
            elif len(line) > self.limit:
                out.append(OVERSIZE)
            else:
                out.append(line)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_request(id: RequestId, method: str, params: Mapping[str, Any] | None) -> bytes:
    """One request line, newline included."""
    return _dumps({"id": id, "method": method, "params": dict(params or {})}) + b"\n"


def encode_answer(
    id: RequestId, result: Mapping[str, Any] | None = None, error: IpcError | None = None,
    limit: int = MAX_LINE,
) -> bytes:
    """One answer line, newline included. An unencodable or oversize result becomes an error."""
    if error is not None:
        return _dumps({"id": id, "error": {"code": error.code, "message": error.message}}) + b"\n"
    try:
        line = _dumps({"id": id, "result": result})
    except (TypeError, ValueError) as e:
        return encode_answer(id, error=IpcError("internal", f"result not JSON: {e}"))
    if len(line) > limit:
        return encode_answer(id, error=IpcError("too-large", "answer exceeds the line limit"))
    return line + b"\n"


class _BadRequest(IpcError):
    """A request that parsed far enough to have an id to answer to."""

    def __init__(self, rid: RequestId, message: str) -> None:
        super().__init__("bad-request", message)
        self.request_id = rid


def _valid_id(v: object) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def decode_request(line: bytes) -> tuple[RequestId, str, dict[str, Any]]:
    """Parse a request line; raises IpcError("bad-request") carrying the id when it is known."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise IpcError("bad-request", f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise IpcError("bad-request", "a request is a JSON object")
    rid = msg.get("id")
    if not _valid_id(rid):
        raise IpcError("bad-request", "id must be an integer, a string or null")
    method = msg.get("method")
    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(method, str) or not method:
        raise _BadRequest(rid, "method must be a non-empty string")
    if not isinstance(params, dict):
        raise _BadRequest(rid, "params must be a JSON object")
    return rid, method, params


def decode_answer(line: bytes) -> tuple[RequestId, dict[str, Any] | IpcError]:
    """Parse an answer line into (id, result or the error it carries); IpcError("bad-answer")."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise IpcError("bad-answer", f"not JSON: {e}") from None
    if not isinstance(msg, dict) or not _valid_id(msg.get("id")):
        raise IpcError("bad-answer", "an answer is a JSON object with an id")
    rid = msg.get("id")
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), str):
            raise IpcError("bad-answer", "error must be an object with a string code")
        return rid, IpcError(err["code"], str(err.get("message", "")))
    result = msg.get("result")
    if not isinstance(result, dict):
        raise IpcError("bad-answer", "result must be a JSON object")
    return rid, result


# ---------------------------------------------------------------------- server


class IpcServer:
    """Serves `handlers` (method name → async function of params) on a Unix socket."""

    def __init__(
        self, path: str | Path, handlers: Mapping[str, Handler], *, max_line: int = MAX_LINE
    ) -> None:
        self.path = Path(path)
        self.handlers = dict(handlers)
        self.max_line = max_line
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        """Bind (parent directory created, stale socket replaced, mode 0660) and listen."""
        private_dir(self.path.parent, warn=False)     # run_daemon warns about runtime_dir
        await self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, SOCKET_MODE)  # before listen(): nobody can connect earlier
            self._inode = os.stat(self.path).st_ino
            sock.listen(64)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._serve_connection, sock=sock)
        except BaseException:
            sock.close()
            raise
        log.debug("ipc listening on %s", self.path)

    async def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise IpcError("address-in-use", f"{self.path} exists and is not a socket")
        try:
            _, w = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 2.0)
        except (OSError, TimeoutError):
            os.unlink(self.path)  # nobody listens: a leftover of a crashed daemon
            log.info("replaced stale socket %s", self.path)
            return
        w.close()
        raise IpcError("address-in-use", f"another process is serving {self.path}")

    async def close(self) -> None:
        """Stop listening, drop connections, remove the socket file (if still ours)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def __aenter__(self) -> IpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        me = asyncio.current_task()  # asyncio runs this coroutine as the connection's task
        if me is not None:
            self._conns.add(me)
            me.add_done_callback(self._conns.discard)
        framer = LineFramer(self.max_line)
        slots = asyncio.Semaphore(MAX_INFLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            slots.release()

        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                for item in framer.feed(data):
                    if isinstance(item, Oversize):
                        msg = f"request line longer than {self.max_line} bytes"
                        err = IpcError("too-large", msg)
                        await self._send(writer, encode_answer(None, error=err))
                        continue
                    await slots.acquire()
                    t = asyncio.create_task(self._answer(item, writer))
                    tasks.add(t)
                    t.add_done_callback(done)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        rid: RequestId = None
        try:
            rid, method, params = decode_request(line)
            handler = self.handlers.get(method)
            if handler is None:
                raise IpcError("unknown-method", f"no method {method!r}")
            result = await handler(params)
            if not isinstance(result, dict):
                raise IpcError("internal", f"{method} returned {type(result).__name__}")
            answer = encode_answer(rid, result, limit=self.max_line)
        except IpcError as e:
            if isinstance(e, _BadRequest):
                rid = e.request_id
            answer = encode_answer(rid, error=e)
        except Exception as e:  # a handler bug must not take the daemon down
            log.exception("ipc handler failed for request %r", rid)
            answer = encode_answer(rid, error=IpcError("internal", type(e).__name__))
        await self._send(writer, answer)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, line: bytes) -> None:
        if writer.is_closing():
            return
        writer.write(line)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


# ---------------------------------------------------------------------- clients


def _unavailable(path: str | Path, e: BaseException) -> IpcError:
    return IpcError("unavailable", f"{path}: {e.strerror if isinstance(e, OSError) else e}")


async def _read_answer(
    reader: asyncio.StreamReader, framer: LineFramer, want: RequestId
) -> dict[str, Any]:
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise IpcError("unavailable", "connection closed before the answer")
        for item in framer.feed(data):
            if isinstance(item, Oversize):
                raise IpcError("bad-answer", "answer longer than the line limit")
            rid, res = decode_answer(item)
            if rid != want:
                continue
            if isinstance(res, IpcError):
                raise res
            return res


async def ipc_call(
    path: str | Path, method: str, params: Mapping[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """One request on a fresh connection. Raises IpcError: "unavailable" (no socket, refused,
    closed), "timeout", "too-large", "bad-answer", or the server's error code."""
    line = encode_request(1, method, params)
    if len(line) - 1 > MAX_LINE:
        raise IpcError("too-large", f"request exceeds {MAX_LINE} bytes")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
                writer.write(line)
                await writer.drain()
            except OSError as e:
                raise _unavailable(path, e) from None
            try:
                return await _read_answer(reader, LineFramer(), 1)
            except ConnectionError as e:
                raise _unavailable(path, e) from None
    except TimeoutError:
        raise IpcError("timeout", f"{method} on {path}: no answer in {timeout:g} s") from None
    finally:
        if writer is not None:
            writer.close()


class IpcClient:
    """Keeps one connection to a daemon and multiplexes calls over it by id; after the
    connection breaks, the next call reconnects."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._connect_lock = asyncio.Lock()

    async def _ensure(self) -> asyncio.StreamWriter:
        async with self._connect_lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError as e:
                raise _unavailable(self.path, e) from None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = LineFramer()
        why = "connection closed"
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                for item in framer.feed(data):
                    if isinstance(item, Oversize):
                        log.warning("ipc %s: dropped an oversize answer", self.path)
                        continue
                    try:
                        rid, res = decode_answer(item)
                    except IpcError as e:
                        log.warning("ipc %s: %s", self.path, e)
                        continue
                    fut = self._pending.pop(rid, None) if isinstance(rid, int) else None
                    if fut is None or fut.done():
                        continue
                    if isinstance(res, IpcError):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
        except (ConnectionError, OSError) as e:
            why = f"connection lost: {e}"
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(IpcError("unavailable", f"{self.path}: {why}"))

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send one request and wait for its answer; IpcError as for `ipc_call`."""
        rid = next(self._ids)
        line = encode_request(rid, method, params)
        if len(line) - 1 > MAX_LINE:
            raise IpcError("too-large", f"request exceeds {MAX_LINE} bytes")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                writer = await self._ensure()
                self._pending[rid] = fut
                try:
                    writer.write(line)
                    await writer.drain()
                except (ConnectionError, OSError) as e:
                    writer.close()
                    raise _unavailable(self.path, e) from None
                return await fut
        except TimeoutError:
            msg = f"{method} on {self.path}: no answer in {timeout:g} s"
            raise IpcError("timeout", msg) from None
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        task, self._reader_task = self._reader_task, None
        if self._writer is not None:
            self._writer.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> IpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
