"""vipr.ipc: framing, error answers for bad input, timeouts, unavailable sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipr.ipc import (
    MAX_LINE,
    OVERSIZE,
    IpcClient,
    IpcError,
    IpcServer,
    LineFramer,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
    ipc_call,
)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="vipr-ipc-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def echo(params: dict[str, Any]) -> dict[str, Any]:
    return {"echo": params}


async def fail(params: dict[str, Any]) -> dict[str, Any]:
    raise IpcError("no-route", "nothing known for " + str(params.get("number")))


async def crash(params: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("bug")


async def not_a_dict(params: dict[str, Any]) -> dict[str, Any]:
    return [1, 2]  # type: ignore[return-value]


async def huge(params: dict[str, Any]) -> dict[str, Any]:
    return {"blob": "x" * (MAX_LINE + 10)}


class Slow:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        await self.release.wait()
        return {"slow": True}


@pytest.fixture
async def server(sockdir: Path) -> AsyncIterator[IpcServer]:
    srv = IpcServer(sockdir / "run" / "x.sock", {
        "echo": echo, "fail": fail, "crash": crash, "not_a_dict": not_a_dict, "huge": huge,
        "slow": Slow(),
    })
    await srv.start()
    yield srv
    await srv.close()


class Raw:
    """A hand-driven connection for sending arbitrary bytes."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w

    @classmethod
    async def connect(cls, path: Path) -> Raw:
        r, w = await asyncio.open_unix_connection(str(path), limit=4 * MAX_LINE)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.w.write(data)
        await self.w.drain()

    async def answer(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.r.readline(), 5)
        assert line.endswith(b"\n")
        msg = json.loads(line)
        assert isinstance(msg, dict)
        return msg

    def close(self) -> None:
        self.w.close()


# ---------------------------------------------------------------- sans-I/O


def test_framer_splits_and_limits() -> None:
    f = LineFramer(limit=10)
    assert f.feed(b"ab\ncd") == [b"ab"]
    assert f.feed(b"e\n\n") == [b"cde", b""]
    assert f.feed(b"0123456789\n") == [b"0123456789"]  # exactly the limit is fine
    assert f.feed(b"0123456789A\nok\n") == [OVERSIZE, b"ok"]
    assert f.feed(b"x" * 25) == [OVERSIZE]  # reported once, as soon as it is known
    assert f.feed(b"y" * 25) == []
    assert f.feed(b"zz\nnext\n") == [b"next"]  # resynchronised after the newline


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_framer_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    f = LineFramer(limit=20)
    out: list[object] = []
    for a, b in itertools.pairwise(bounds):
        out += f.feed(stream[a:b])
    assert out == [line if len(line) <= 20 else OVERSIZE for line in lines]


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(), st.none()),
                       max_size=4),
       st.one_of(st.integers(min_value=0), st.text(max_size=8), st.none()))
def test_request_answer_round_trip(params: dict[str, Any], rid: int | str | None) -> None:
    assert decode_request(encode_request(rid, "lookup", params).rstrip(b"\n")) == (
        rid, "lookup", params)
    assert decode_answer(encode_answer(rid, params).rstrip(b"\n")) == (rid, params)
    got_id, err = decode_answer(encode_answer(rid, error=IpcError("x-y", "m")).rstrip(b"\n"))
    assert got_id == rid and isinstance(err, IpcError) and (err.code, err.message) == ("x-y", "m")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_raise_only_ipc_error(data: bytes) -> None:
    for fn in (decode_request, decode_answer):
        with contextlib.suppress(IpcError):
            fn(data)


# ---------------------------------------------------------------- server behaviour


async def test_call_and_errors(server: IpcServer) -> None:
    assert await ipc_call(server.path, "echo", {"a": 1}) == {"echo": {"a": 1}}
    assert await ipc_call(server.path, "echo") == {"echo": {}}
    with pytest.raises(IpcError) as ei:
        await ipc_call(server.path, "nope")
    assert ei.value.code == "unknown-method"
    with pytest.raises(IpcError) as ei:
        await ipc_call(server.path, "fail", {"number": "+1"})
    assert (ei.value.code, ei.value.message) == ("no-route", "nothing known for +1")
    for m in ("crash", "not_a_dict"):
        with pytest.raises(IpcError) as ei:
            await ipc_call(server.path, m)
        assert ei.value.code == "internal"
    with pytest.raises(IpcError) as ei:
        await ipc_call(server.path, "huge")
    assert ei.value.code == "too-large"
    with pytest.raises(IpcError) as ei:
        await ipc_call(server.path, "echo", {"x": "y" * MAX_LINE})
    assert ei.value.code == "too-large"  # refused before sending


async def test_bad_input_gets_answers_and_connection_survives(server: IpcServer) -> None:
    c = await Raw.connect(server.path)
    try:
        cases: list[tuple[bytes, object, str]] = [
            (b"{not json\n", None, "bad-request"),
            (b"\xff\xfe\n", None, "bad-request"),
            (b"[1, 2]\n", None, "bad-request"),
            (b'{"id": 7, "method": 5}\n', 7, "bad-request"),
            (b'{"id": "s", "method": "echo", "params": []}\n', "s", "bad-request"),
            (b'{"id": [1], "method": "echo"}\n', None, "bad-request"),
            (b'{"id": 8, "method": "missing"}\n', 8, "unknown-method"),
            (b"\n", None, "bad-request"),
            (b"[" * 60000 + b"\n", None, "bad-request"),  # nesting: RecursionError in json
        ]
        for data, rid, code in cases:
            await c.send(data)
            msg = await c.answer()
            assert msg["id"] == rid and msg["error"]["code"] == code, (data, msg)
        # oversize line in one piece, then in pieces without a newline for a while
        await c.send(b'{"id": 1, "method": "echo", "params": {"p": "' + b"x" * MAX_LINE + b'"}}\n')
        assert (await c.answer())["error"]["code"] == "too-large"
        await c.send(b"y" * (MAX_LINE + 100))
        assert (await c.answer())["error"]["code"] == "too-large"
        await c.send(b"z" * 1000 + b"\n")  # tail of that line: discarded silently
        await c.send(b'{"id": 9, "method": "echo", "params": {"ok": true}}\n')
        assert await c.answer() == {"id": 9, "result": {"echo": {"ok": True}}}
    finally:
        c.close()
    # and the server still serves other clients
    assert await ipc_call(server.path, "echo", {"b": 2}) == {"echo": {"b": 2}}


async def test_pipelined_requests_answer_by_id(server: IpcServer) -> None:
    slow = server.handlers["slow"]
    assert isinstance(slow, Slow)
    c = await Raw.connect(server.path)
    try:
        await c.send(b'{"id": 1, "method": "slow"}\n{"id": 2, "method": "echo"}\n')
        assert (await c.answer())["id"] == 2  # the slow request does not block the fast one
        slow.release.set()
        assert await c.answer() == {"id": 1, "result": {"slow": True}}
    finally:
        c.close()


async def test_timeout(server: IpcServer) -> None:
    with pytest.raises(IpcError) as ei:
        await ipc_call(server.path, "slow", timeout=0.2)
    assert ei.value.code == "timeout"
    async with IpcClient(server.path) as cl:
        with pytest.raises(IpcError) as ei:
            await cl.call("slow", timeout=0.2)
        assert ei.value.code == "timeout"
        assert await cl.call("echo", {"after": 1}) == {"echo": {"after": 1}}


async def test_unavailable(sockdir: Path) -> None:
    with pytest.raises(IpcError) as ei:
        await ipc_call(sockdir / "absent.sock", "status")
    assert ei.value.code == "unavailable"
    # a socket file nobody listens on (a crashed daemon's leftover): refused
    stale = sockdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    with pytest.raises(IpcError) as ei:
        await ipc_call(stale, "status")
    assert ei.value.code == "unavailable"
    async with IpcClient(stale) as cl:
        with pytest.raises(IpcError) as ei:
            await cl.call("status")
        assert ei.value.code == "unavailable"


async def test_socket_file_mode_stale_replaced_live_kept(sockdir: Path) -> None:
    path = sockdir / "deep" / "er" / "p.sock"
    path.parent.mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # stale: bound, never listening
    s.close()
    async with IpcServer(path, {"echo": echo}) as srv:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert await ipc_call(path, "echo", {}) == {"echo": {}}
        with pytest.raises(IpcError) as ei:  # a live server is not replaced
            await IpcServer(path, {}).start()
        assert ei.value.code == "address-in-use"
        assert await ipc_call(srv.path, "echo", {}) == {"echo": {}}
    assert not path.exists()  # removed on close
    regular = sockdir / "file.sock"
    regular.write_text("keep me")
    with pytest.raises(IpcError):
        await IpcServer(regular, {}).start()
    assert regular.read_text() == "keep me"


async def test_client_reconnects_after_server_restart(sockdir: Path) -> None:
    path = sockdir / "r.sock"
    srv = IpcServer(path, {"echo": echo})
    await srv.start()
    async with IpcClient(path) as cl:
        results = await asyncio.gather(*(cl.call("echo", {"i": i}) for i in range(20)))
        assert results == [{"echo": {"i": i}} for i in range(20)]
        await srv.close()
        with pytest.raises(IpcError) as ei:
            await cl.call("echo", {}, timeout=2)
        assert ei.value.code == "unavailable"
        srv = IpcServer(path, {"echo": echo})
        await srv.start()
        try:
            assert await cl.call("echo", {"back": True}) == {"echo": {"back": True}}
        finally:
            await srv.close()


async def test_fuzzed_lines_all_answered(server: IpcServer) -> None:
    """Mutated requests on one connection: each gets an answer, none kills the server."""
    rng = random.Random(2026)
    seeds = [b'{"id": 1, "method": "echo", "params": {"a": [1, 2, {"b": null}]}}',
             b'{"id": "x", "method": "fail", "params": {"number": "+1"}}']
    c = await Raw.connect(server.path)
    try:
        for _ in range(300):
            line = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                op, pos = rng.randrange(3), rng.randrange(len(line) + 1)
                if op == 0 and pos < len(line):
                    del line[pos]
                elif op == 1:
                    line[pos:pos] = bytes([rng.randrange(256)])
                elif pos < len(line):
                    line[pos] = rng.randrange(256)
            data = bytes(line).replace(b"\n", b" ")
            await c.send(data + b"\n")
            msg = await c.answer()
            assert ("result" in msg) != ("error" in msg), (data, msg)
            if "error" in msg:
                assert msg["error"]["code"] in {"bad-request", "unknown-method", "no-route",
                                                "internal"}, (data, msg)
    finally:
        c.close()
    assert await ipc_call(server.path, "echo", {"z": 1}) == {"echo": {"z": 1}}
