"""VIPR's sans-I/O SIP core (RFC 3261), built like h11: bytes and `now` in, events out.

Messages (message.py, parser.py, headers.py, uri.py)::

    msg = parse_message(data)              # SipRequest | SipResponse; raises SipParseError
    msg = parse_message(data, strict=True) # + msg.validate(): full grammar, mandatory headers
    msg.headers.get("v")                   # any spelling, compact forms too -> first value
    msg.headers.get_all("Via"); msg.headers.get_list("Via")  # per field / per element
    msg.headers.add/insert/set/remove/pop_first(...)          # edits keep other text as is
    msg.vias, msg.top_via, msg.from_, msg.to, msg.cseq, msg.call_id, msg.contacts,
    msg.routes, msg.record_routes, msg.max_forwards           # parsed on access
    msg.push_via(Via(...)); msg.pop_via()
    req.method, req.uri (text), req.request_uri (URI); resp.status, resp.reason
    msg.serialize() -> bytes               # Content-Length always written to match body
    make_response(req, 180, to_tag="x")    # RFC 3261 §8.2.6.2 copies

    SipParseError(reason, status)          # status: the response to answer (400, 505, 513)

Values: `URI` (parse_uri; sip/sips/tel, other schemes opaque), `NameAddr`
(parse_name_addr[_list]), `Via` (parse_via[_list]), `CSeq`; `str()` of each serializes.

Streams (framing.py): `StreamFramer(max_size).feed(bytes) -> [raw message bytes]`,
`.take_pings()` for RFC 5626 double-CRLF keep-alives (answer each with b"\\r\\n").
"""

from vipr.proxy.sip.errors import SipParseError
from vipr.proxy.sip.framing import StreamFramer
from vipr.proxy.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    format_params,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_via,
    parse_via_list,
    quote,
    split_list,
    unquote,
)
from vipr.proxy.sip.message import (
    COMPACT_FORMS,
    REASON_PHRASES,
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    header_key,
    make_response,
)
from vipr.proxy.sip.parser import MAX_MESSAGE_SIZE, parse_message
from vipr.proxy.sip.uri import URI, parse_host_port, parse_uri, unescape

__all__ = [
    "COMPACT_FORMS",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "URI",
    "CSeq",
    "Headers",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "Via",
    "format_params",
    "header_key",
    "make_response",
    "parse_cseq",
    "parse_host_port",
    "parse_message",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_uri",
    "parse_via",
    "parse_via_list",
    "quote",
    "split_list",
    "unescape",
    "unquote",
]
