"""VIPR's SIP core (RFC 3261), built like h11/aioquic: sans-I/O parsing and transactions
(bytes and `now` in, events out) under thin asyncio transports.

Messages (message.py, parser.py, headers.py, uri.py)::

    msg = parse_message(data)              # SipRequest | SipResponse; raises SipParseError
    msg = parse_message(data, strict=True) # + msg.validate(): full grammar, mandatory headers
    msg.headers.get("v")                   # any spelling, compact forms too -> first value
    msg.headers.get_all("Via"); msg.headers.get_list("Via")  # per field / per element
    msg.headers.add/insert/set/remove/pop_first(...)          # edits keep other text as is
    msg.vias, msg.top_via, msg.from_, msg.to, msg.from_tag, msg.to_tag, msg.cseq,
    msg.call_id, msg.contacts, msg.routes, msg.record_routes, msg.max_forwards
                                           # parsed on access (never stale), SipParseError
    msg.push_via(Via(...)); msg.pop_via()  # proxy Via handling (RFC 3261 §16.6, §16.7)
    req.method, req.uri (text), req.request_uri (URI); resp.status, resp.reason
    msg.serialize() -> bytes               # Content-Length always written to match body
    make_response(req, 180, to_tag="x")    # RFC 3261 §8.2.6.2 copies (+Record-Route)
    make_cancel(invite)                    # RFC 3261 §9.1

    SipParseError(reason, status)          # status: the response to answer (400, 505, 513)
    salvage_request(data)                  # after a parse error: the request to answer, or None

Values: `URI` (parse_uri; sip/sips/tel, other schemes opaque; `unescape` for %HH),
`NameAddr` (parse_name_addr[_list]), `Via` (parse_via[_list]), `CSeq`; `str()` of each
serializes. Parsed values are plain dataclasses: change one, then write it back with
`headers.set(...)` / `push_via(...)`.

Streams (framing.py): `StreamFramer(max_size).feed(bytes) -> [raw message bytes]` (raises
SipParseError on framing errors: close the connection), `.take_pings()` for RFC 5626
double-CRLF keep-alives (answer each with b"\\r\\n").

Transactions (transaction.py, sans-I/O, RFC 3261 §17 + RFC 6026)::

    tx = new_client_transaction(req, reliable=False); tx.start(now)
    tx.receive_response(resp, now)           # matched by client_key(resp)
    tx = new_server_transaction(req, reliable=False, now=now)   # 100 Trying for INVITE
    tx.receive_request(retransmission_or_ack, now); tx.respond(486, now, to_tag="t")
    tx.get_timer() -> deadline | None; tx.handle_timer(now)
    tx.next_event() / tx.events(): Transmit(data, message, retransmission),
        ResponseReceived, AckReceived, TransactionTimeout(timer), TransportFailed, Terminated
    client_key(msg), server_key(req[, method]), new_branch(), TimerValues(t1, t2, t4)

asyncio shells::

    UdpTransport.listen(host, port, on_message)            # udp.py (via transport.py)
    StreamTransport.listen(host, port, on_message, ssl=server_ctx, client_ssl=client_ctx)
        # stream.py: TCP or TLS; connection reuse by peer address; RFC 5626 pong; caps;
        # idle timeout; optional keep-alive pings; Source.tls_dns_names / tls_verified
    on_message(msg, Source(transport, host, port, local_host, local_port, connection,
                           interface))
    stamp_received(req, host, port); response_destination(via, source)  # RFC 3261 §18.2
    SipEndpoint(on_request)          # endpoint.py: transports + transaction tables + timers
        .listen("udp"|"tcp"|"tls", host, port, ssl=..., client_ssl=..., name="pstn")
        .send_request(req, transport, host, port, on_response=cb) -> ClientHandle
            (.final(), .responses queue, .on_response / .on_failure callbacks)
        .send_stateless(msg, transport, host, port); .find_invite_server(cancel)
        on_request(req, source, ServerHandle | None)  # None: ACK for a 2xx
    SimpleUAS / SimpleUAC (ua.py): a minimal UA for interop tests (SIPp) and benchmarks.
"""

from vipr.proxy.sip.endpoint import ClientHandle, ServerHandle, SipEndpoint
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
    make_cancel,
    make_response,
)
from vipr.proxy.sip.parser import MAX_MESSAGE_SIZE, parse_message, salvage_request
from vipr.proxy.sip.transaction import (
    DEFAULT_TIMERS,
    MAGIC_COOKIE,
    AckReceived,
    ClientTransaction,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    ServerTransaction,
    Terminated,
    TimerValues,
    Transaction,
    TransactionStateError,
    TransactionTimeout,
    Transmit,
    TransportFailed,
    client_key,
    new_branch,
    new_client_transaction,
    new_server_transaction,
    server_key,
)
from vipr.proxy.sip.transport import (
    Connection,
    Source,
    StreamTransport,
    UdpTransport,
    cert_dns_names,
    response_destination,
    stamp_received,
)
from vipr.proxy.sip.uri import URI, format_host, parse_host_port, parse_uri, unescape

__all__ = [
    "COMPACT_FORMS",
    "DEFAULT_TIMERS",
    "MAGIC_COOKIE",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "URI",
    "AckReceived",
    "CSeq",
    "ClientHandle",
    "ClientTransaction",
    "Connection",
    "Event",
    "Headers",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NameAddr",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ResponseReceived",
    "ServerHandle",
    "ServerTransaction",
    "SipEndpoint",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "Source",
    "StreamFramer",
    "StreamTransport",
    "Terminated",
    "TimerValues",
    "Transaction",
    "TransactionStateError",
    "TransactionTimeout",
    "Transmit",
    "TransportFailed",
    "UdpTransport",
    "Via",
    "cert_dns_names",
    "client_key",
    "format_host",
    "format_params",
    "header_key",
    "make_cancel",
    "make_response",
    "new_branch",
    "new_client_transaction",
    "new_server_transaction",
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
    "response_destination",
    "salvage_request",
    "server_key",
    "split_list",
    "stamp_received",
    "unescape",
    "unquote",
]
