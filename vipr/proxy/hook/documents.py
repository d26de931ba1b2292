"""The hook's request bodies and call documents, checked and typed (DESIGN §11). Pure code.

Every body is a JSON object; a missing or mistyped field raises `HookInputError` (→ 400 with
`{"error": ...}`). Numbers are normalised with the provider's dialplan.

Call documents for `POST /v1/calls` (start = the answer, the 200 OK time, DESIGN §7):
- native: `{"event": "answered"|"ended", "call_id", "direction", "caller", "callee", "time"}`
  or a whole call `{"event": "call", ..., "answered": t, "ended": t}`;
- FreeSWITCH `mod_json_cdr`: `{"variables": {"sip_call_id", "caller_id_number",
  "destination_number", "answer_epoch"/"answer_uepoch", "end_epoch"/"end_uepoch",
  "vipr_direction"}, "callflow": ...}`; an unanswered call (answer_epoch 0) gives no VCR;
- Kamailio `acc_json` (with `acc_extra` fields): `{"method": "INVITE"|"BYE", "callid",
  "sip_code", "time", "direction", "src_user", "dst_user"}`: a 2xx INVITE record is the
  answer, a BYE record the end; a dialog CDR (`start_time`, `end_time`) is a whole call.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote

from vipr.dialplan import Dialplan
from vipr.store.models import DIRECTIONS, Direction

MAX_TEXT = 512   # longest string field we accept (Call-IDs, URIs, tickets)
MAX_DOMAINS = 16


class HookInputError(ValueError):
    """A request body the hook cannot use (answered 400 with the message)."""


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HookInputError("body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise HookInputError("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HookInputError("body must be a JSON object")
    return doc


def text(doc: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    v = doc.get(key)
    if v is None:
        if required:
            raise HookInputError(f"{key}: required")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise HookInputError(f"{key}: expected a string")
    s = str(v)
    if len(s) > MAX_TEXT:
        raise HookInputError(f"{key}: longer than {MAX_TEXT} characters")
    return s


def _time(doc: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    v = doc.get(key)
    if v is None:
        if required:
            raise HookInputError(f"{key}: required")
        return None
    if isinstance(v, bool):
        raise HookInputError(f"{key}: expected a time (Unix seconds)")
    try:
        t = float(v)
    except (TypeError, ValueError):
        raise HookInputError(f"{key}: expected a time (Unix seconds)") from None
    if not math.isfinite(t) or t < 0:
        raise HookInputError(f"{key}: expected a time (Unix seconds)")
    return t


def _direction(v: object) -> Direction:
    for d in DIRECTIONS:
        if v == d:
            return d
    raise HookInputError("direction: expected originating or terminating")


def number(dialplan: Dialplan, doc: dict[str, Any], key: str) -> str:
    """A number field (E.164, national or a tel:/sip: URI) normalised to E.164."""
    s = text(doc, key)
    assert s is not None
    n = dialplan.number_of_uri(s) if ":" in s else dialplan.number(s)
    if n is None:
        raise HookInputError(f"{key}: not a telephone number")
    return n


def caller_number(dialplan: Dialplan, doc: dict[str, Any], key: str) -> str | None:
    """The caller field normalised, or None when absent or no number (anonymous, a name):
    the caller is unknown then, as on the SIP path."""
    s = text(doc, key, required=False)
    if not s:
        return None
    return dialplan.number_of_uri(s) if ":" in s else dialplan.number(s)


# ------------------------------------------------------------------ route / admit requests


@dataclass(frozen=True, slots=True)
class RouteRequest:
    caller: str | None
    callee: str            # as sent: E.164, national, or a tel:/sip: URI
    call_id: str


@dataclass(frozen=True, slots=True)
class RouteResult:
    call_id: str
    callee: str
    failed: bool
    cause: str


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    callee: str
    ticket: str | None
    peer_domains: tuple[str, ...]
    call_id: str


def route_request(doc: dict[str, Any]) -> RouteRequest:
    return RouteRequest(text(doc, "caller", required=False), cast(str, text(doc, "callee")),
                        cast(str, text(doc, "call_id")))


def route_result(doc: dict[str, Any]) -> RouteResult:
    """{call_id, callee, outcome: answered|failed|timeout|connect, status}: DESIGN §6 counts a
    connect failure, a timeout, 403, 5xx and 6xx from the learned route."""
    outcome = text(doc, "outcome")
    status = doc.get("status", 0)
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status < 700:
        raise HookInputError("status: expected a SIP status code (0 when none)")
    if outcome == "answered":
        return RouteResult(cast(str, text(doc, "call_id")), cast(str, text(doc, "callee")),
                           False, "answered")
    if outcome not in ("failed", "timeout", "connect"):
        raise HookInputError("outcome: expected answered, failed, timeout or connect")
    if outcome == "failed":
        failed = status == 403 or status >= 500
        cause = str(status)
    else:
        failed, cause = True, outcome
    return RouteResult(cast(str, text(doc, "call_id")), cast(str, text(doc, "callee")),
                       failed, cause)


def admit_request(doc: dict[str, Any]) -> AdmitRequest:
    domains = doc.get("peer_domains", [])
    if isinstance(domains, str):
        domains = [domains]
    if not isinstance(domains, list) or len(domains) > MAX_DOMAINS or not all(
            isinstance(d, str) and 0 < len(d) <= 253 for d in domains):
        raise HookInputError(f"peer_domains: expected a list of up to {MAX_DOMAINS} domains")
    return AdmitRequest(cast(str, text(doc, "callee")), text(doc, "ticket", required=False),
                        tuple(domains), cast(str, text(doc, "call_id")))


# ------------------------------------------------------------------ call documents


@dataclass(frozen=True, slots=True)
class CallEvent:
    """What a call document says: the answer, the end, or both (a whole call)."""

    kind: Literal["answered", "ended", "call", "unanswered"]
    call_id: str
    direction: Direction | None
    caller: str | None = None
    callee: str | None = None
    answered: float | None = None
    ended: float | None = None


def call_event(doc: dict[str, Any], dialplan: Dialplan, *, fmt: str | None = None,
               direction: str | None = None) -> CallEvent:
    """A call document in any supported format (detected unless `fmt` names it);
    `direction` (the URL's `?direction=`) fills in when the document has none."""
    if fmt is None:
        fmt = ("freeswitch" if isinstance(doc.get("variables"), dict)
               else "kamailio" if "callid" in doc or "method" in doc else "native")
    if fmt == "native":
        return _native(doc, dialplan, direction)
    if fmt == "freeswitch":
        return _freeswitch(doc, dialplan, direction)
    if fmt == "kamailio":
        return _kamailio(doc, dialplan, direction)
    raise HookInputError("format: expected native, freeswitch or kamailio")


def _dir_of(doc_value: object, fallback: str | None) -> Direction:
    return _direction(doc_value if doc_value is not None else fallback)


def _native(doc: dict[str, Any], dp: Dialplan, fallback: str | None) -> CallEvent:
    event = text(doc, "event")
    cid = cast(str, text(doc, "call_id"))
    d = _dir_of(doc.get("direction"), fallback)
    if event == "answered":
        return CallEvent("answered", cid, d, caller_number(dp, doc, "caller"),
                         number(dp, doc, "callee"), _time(doc, "time"))
    if event == "ended":
        caller = caller_number(dp, doc, "caller")
        callee = number(dp, doc, "callee") if doc.get("callee") else None
        return CallEvent("ended", cid, d, caller, callee, _time(doc, "answered", required=False),
                         _time(doc, "time"))
    if event == "call":
        return _whole(cid, d, caller_number(dp, doc, "caller"),
                      number(dp, doc, "callee"), _time(doc, "answered", required=False),
                      _time(doc, "ended"))
    raise HookInputError("event: expected answered, ended or call")


def _whole(cid: str, d: Direction, caller: str | None, callee: str, answered: float | None,
           ended: float | None) -> CallEvent:
    if answered is None or answered <= 0:
        return CallEvent("unanswered", cid, d, caller, callee)
    if ended is None or ended < answered:
        raise HookInputError("end time before the answer time")
    return CallEvent("call", cid, d, caller, callee, answered, ended)


def _epoch(v: dict[str, Any], sec: str, usec: str) -> float | None:
    """FreeSWITCH times: `*_uepoch` (µs) when present, else `*_epoch` (s); 0 = never."""
    if v.get(usec) not in (None, "", "0", 0):
        t = _time(v, usec)
        return None if t is None else t / 1e6
    t = _time(v, sec, required=False)
    return t if t else None


def _freeswitch(doc: dict[str, Any], dp: Dialplan, fallback: str | None) -> CallEvent:
    raw = doc.get("variables")
    if not isinstance(raw, dict):
        raise HookInputError("variables: expected an object (mod_json_cdr document)")
    # mod_json_cdr may URL-encode variable values (encode_values)
    v = {k: unquote(x) if isinstance(x, str) else x for k, x in raw.items()}
    cid = text(v, "sip_call_id", required=False) or text(v, "uuid")
    d = _dir_of(v.get("vipr_direction"), fallback)
    caller_doc = {"n": v.get("sip_from_user") or v.get("caller_id_number")}
    callee_doc = {"n": v.get("sip_to_user") or v.get("destination_number")}
    caller = caller_number(dp, caller_doc, "n")
    try:
        callee = number(dp, callee_doc, "n")
    except HookInputError:
        raise HookInputError("destination_number: not a telephone number") from None
    return _whole(cast(str, cid), d, caller, callee,
                  _epoch(v, "answer_epoch", "answer_uepoch"), _epoch(v, "end_epoch", "end_uepoch"))


def _kamailio(doc: dict[str, Any], dp: Dialplan, fallback: str | None) -> CallEvent:
    cid = cast(str, text(doc, "callid"))
    d = _dir_of(doc.get("direction"), fallback)
    caller = caller_number(dp, doc, "src_user")
    if "start_time" in doc:   # a dialog CDR (acc cdr_enable)
        return _whole(cid, d, caller, number(dp, doc, "dst_user"), _time(doc, "start_time"),
                      _time(doc, "end_time"))
    method = (text(doc, "method") or "").upper()
    code = text(doc, "sip_code", required=False) or "200"
    if method == "INVITE":
        if not (code.isdigit() and 200 <= int(code) < 300):
            return CallEvent("unanswered", cid, d, caller)
        return CallEvent("answered", cid, d, caller, number(dp, doc, "dst_user"),
                         _time(doc, "time"))
    if method == "BYE":   # sent by either side: caller and callee come from the answer
        return CallEvent("ended", cid, d, None, None, None, _time(doc, "time"))
    raise HookInputError("method: expected INVITE or BYE")
