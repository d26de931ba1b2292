"""`vipr sip parse FILE`: show a SIP message as JSON (debugging aid)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.headers import NameAddr, Via
from vipr.proxy.sip.message import SipMessage, SipRequest
from vipr.proxy.sip.parser import parse_message
from vipr.proxy.sip.uri import URI


def _uri(u: URI) -> dict[str, Any]:
    return {"text": str(u), "scheme": u.scheme, "user": u.user, "host": u.host, "port": u.port,
            "params": u.params, "headers": u.headers, "opaque": u.opaque}


def _addr(a: NameAddr) -> dict[str, Any]:
    return {"display": a.display_name, "uri": _uri(a.uri), "params": a.params}


def _via(v: Via) -> dict[str, Any]:
    return {"transport": v.transport, "host": v.host, "port": v.port, "params": v.params}


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except SipParseError as exc:
        return {"error": exc.reason}


def message_json(msg: SipMessage) -> dict[str, Any]:
    """A JSON-able view of a message: raw headers plus the parsed fields."""
    out: dict[str, Any] = {}
    if isinstance(msg, SipRequest):
        out.update(type="request", method=msg.method, uri=_safe(lambda: _uri(msg.request_uri)))
    else:
        out.update(type="response", status=getattr(msg, "status", None),
                   reason=getattr(msg, "reason", None))
    out["headers"] = [[n, v] for n, v in msg.headers]
    out["call_id"] = msg.headers.get("call-id")
    out["cseq"] = _safe(lambda: str(msg.cseq)) if "cseq" in msg.headers else None
    out["from"] = _safe(lambda: _addr(msg.from_)) if "from" in msg.headers else None
    out["to"] = _safe(lambda: _addr(msg.to)) if "to" in msg.headers else None
    out["via"] = _safe(lambda: [_via(v) for v in msg.vias])
    out["contact"] = _safe(lambda: [_addr(a) for a in msg.contacts])
    out["route"] = _safe(lambda: [_addr(a) for a in msg.routes])
    out["record_route"] = _safe(lambda: [_addr(a) for a in msg.record_routes])
    out["max_forwards"] = _safe(lambda: msg.max_forwards)
    out["body_length"] = len(msg.body)
    try:
        out["body"] = msg.body.decode("utf-8")
    except UnicodeDecodeError:
        out["body_hex"] = msg.body.hex()
    return out


def register(group: click.Group) -> None:
    """Add the `sip` command group."""

    @group.group("sip")
    def sip() -> None:
        """SIP core tools."""

    @sip.command("parse")
    @click.argument("file", type=click.File("rb"))
    @click.option("--lenient", is_flag=True,
                  help="Skip the strict grammar check (msg.validate()).")
    def parse_cmd(file: Any, lenient: bool) -> None:
        """Parse FILE (or - for stdin) as one SIP message and print it as JSON.

        Exits 1 with the reason when the message is malformed.
        """
        data = file.read()
        try:
            msg = parse_message(data, strict=not lenient)
        except SipParseError as exc:
            click.echo(f"malformed SIP message: {exc.reason} (answer {exc.status})", err=True)
            sys.exit(1)
        click.echo(json.dumps(message_json(msg), indent=2, ensure_ascii=False,
                              default=str))
