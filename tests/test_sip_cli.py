"""`vipr sip parse FILE`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from vipr.cli import main

MSG = (b"INVITE sip:+14085550100@example.com SIP/2.0\r\n"
       b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=9\r\n"
       b"t: <sip:b@example.com>\r\ni: call-1\r\nCSeq: 1 INVITE\r\nl: 2\r\n\r\nhi")


def test_parse_prints_json(tmp_path: Path) -> None:
    f = tmp_path / "m.sip"
    f.write_bytes(MSG)
    res = CliRunner().invoke(main, ["sip", "parse", str(f)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["method"] == "INVITE" and out["uri"]["user"] == "+14085550100"
    assert out["from"]["params"] == {"tag": "9"} and out["via"][0]["params"]["branch"] == "z9hG4bK1"
    assert out["call_id"] == "call-1" and out["body"] == "hi" and out["cseq"] == "1 INVITE"


def test_parse_malformed_exits_1(tmp_path: Path) -> None:
    f = tmp_path / "bad.sip"
    f.write_bytes(MSG.replace(b"t: <sip:b@example.com>", b"t: < sip:b@example.com >"))
    res = CliRunner().invoke(main, ["sip", "parse", str(f)])
    assert res.exit_code == 1 and "whitespace inside <URI>" in res.output
    lenient = CliRunner().invoke(main, ["sip", "parse", "--lenient", str(f)])
    assert lenient.exit_code == 0 and json.loads(lenient.output)["type"] == "request"
    res = CliRunner().invoke(main, ["sip", "parse", "-"], input=b"garbage")
    assert res.exit_code == 1 and "malformed" in res.output
