"""vipr.logsetup: text and JSON lines carry time, role, logger, level, message and extras."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from vipr.config import LoggingSection
from vipr.logsetup import fields, printable, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_format(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(LoggingSection(level="info", format="text"), "pvp", stream=out)
    log = logging.getLogger("vipr.pvp.server")
    log.debug("hidden")
    log.info("validated %s", "+14085551234", extra={"peer": "b.example.org"})
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pvp vipr\.pvp\.server INFO "
        r"validated \+14085551234 peer=b\.example\.org",
        line,
    ), line


def test_json_format_with_extras_and_exception(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(LoggingSection(level="debug", format="json"), "proxy", stream=out)
    log = logging.getLogger("vipr.proxy")
    log.debug("route %s", "sip:x", extra={"number": "+1", "obj": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert first["level"] == "debug" and first["role"] == "proxy"
    assert first["logger"] == "vipr.proxy" and first["msg"] == "route sip:x"
    assert first["number"] == "+1" and first["obj"].startswith("<object object")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_setup_twice_replaces_its_handler_and_quiets_chatty_libs(restore_root: None) -> None:
    a, b = io.StringIO(), io.StringIO()
    setup_logging(LoggingSection(level="debug"), "overlay", stream=a)
    setup_logging(LoggingSection(level="warning"), "overlay", stream=b)
    logging.getLogger("vipr.x").warning("once")
    logging.getLogger("vipr.x").info("filtered")
    assert a.getvalue() == "" and b.getvalue().count("\n") == 1
    setup_logging(LoggingSection(level="debug"), "overlay", stream=b)
    assert logging.getLogger("aiosqlite").getEffectiveLevel() == logging.INFO


def test_printable_escapes_what_would_break_a_log_line() -> None:
    assert printable("a\x00b\nc\r\x1b[31m\u2028\x85ok") == r"a\x00b\x0ac\x0d\x1b[31m\u2028\x85ok"
    assert printable(b"\xff\x00call") == r"\xff\x00call"
    assert printable("caf\udce9") == r"caf\xe9"   # a byte kept by surrogateescape
    assert printable("plain text, +14085551234") == "plain text, +14085551234"
    assert printable(printable("x\ny")) == printable("x\ny")
    assert printable("x" * 300, 10) == "x" * 10 + "…"


def test_text_format_keeps_one_record_on_one_line(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(LoggingSection(level="info", format="text"), "proxy", stream=out)
    logging.getLogger("vipr.proxy").info("call %s", "evil\x00\nFAKE ERROR line",
                                         extra={"peer": "p\r\nq"})
    (line,) = out.getvalue().splitlines()
    assert line.endswith(r"call evil\x00\x0aFAKE ERROR line peer=p\x0d\x0aq"), line


def test_fields_are_json_keys_and_stay_out_of_text(restore_root: None) -> None:
    """Issue 16 item 5: call-id, numbers, peer, reason, duration as separate JSON fields."""
    extra = fields(call_id="c1@x\r\nInjected: 1", caller="+14085551234", callee=None,
                   duration=61.5, reason="ok")
    out = io.StringIO()
    setup_logging(LoggingSection(level="info", format="json"), "proxy", stream=out)
    logging.getLogger("vipr.proxy").info("VCR for call %s", "c1", extra=extra)
    obj = json.loads(out.getvalue())
    assert obj["call_id"] == "c1@x\r\nInjected: 1"       # JSON escapes it: one line
    assert (obj["caller"], obj["duration"], obj["reason"]) == ("+14085551234", 61.5, "ok")
    assert "callee" not in obj and "vipr_fields" not in obj
    assert out.getvalue().count("\n") == 1

    out = io.StringIO()
    setup_logging(LoggingSection(level="info", format="text"), "proxy", stream=out)
    logging.getLogger("vipr.proxy").info("VCR for call %s", "c1", extra=extra)
    assert out.getvalue().rstrip("\n").endswith(" INFO VCR for call c1")

    with pytest.raises(ValueError, match="unknown log field"):
        fields(callid="x")
