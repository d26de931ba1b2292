"""RFC 3261 §17 transactions driven by a fake clock: timers, retransmissions, absorption."""

from __future__ import annotations

import pytest

from vipr.proxy.sip import SipRequest, SipResponse, make_response, parse_message
from vipr.proxy.sip.transaction import (
    AckReceived,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    Terminated,
    Transaction,
    TransactionStateError,
    TransactionTimeout,
    Transmit,
    TransportFailed,
    client_key,
    new_client_transaction,
    new_server_transaction,
    server_key,
)


def request(method: str = "INVITE", branch: str = "z9hG4bK-1") -> SipRequest:
    m = parse_message(
        f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nRoute: <sip:p.example.com;lr>\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c1@192.0.2.1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(m, SipRequest)
    return m


def response(req: SipRequest, status: int) -> SipResponse:
    return make_response(req, status, to_tag="b1")


def run(tx: Transaction, until: float) -> list[tuple[float, Event]]:
    """Fire timers up to `until` like the asyncio shell would; events with their times."""
    out: list[tuple[float, Event]] = []
    while (t := tx.get_timer()) is not None and t <= until:
        tx.handle_timer(t)
        out += [(t, e) for e in tx.events()]
    return out


def retransmit_times(evs: list[tuple[float, Event]]) -> list[float]:
    return [t for t, e in evs if isinstance(e, Transmit) and e.retransmission]


def kinds(evs: list[Event] | list[tuple[float, Event]]) -> list[str]:
    return [type(e[1] if isinstance(e, tuple) else e).__name__ for e in evs]


# --- INVITE client (Figure 5) ---

def test_invite_client_timer_a_and_b() -> None:
    tx = InviteClientTransaction(request(), reliable=False)
    tx.start(0.0)
    first = tx.events()
    assert kinds(first) == ["Transmit"] and not first[0].retransmission  # type: ignore[union-attr]
    evs = run(tx, 100.0)
    # Timer A: T1 doubling without cap; Timer B = 64*T1 = 32 s
    assert retransmit_times(evs) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert next(e.data for _, e in evs if isinstance(e, Transmit)) == first[0].data  # type: ignore[union-attr]
    assert kinds(evs)[-2:] == ["TransactionTimeout", "Terminated"]
    assert evs[-1][0] == 32.0 and tx.terminated and tx.get_timer() is None


def test_invite_client_provisional_stops_retransmissions_then_error_acked() -> None:
    req = request()
    tx = InviteClientTransaction(req, reliable=False)
    tx.start(0.0)
    tx.events()
    run(tx, 0.6)    # one retransmission
    tx.receive_response(response(req, 100), 0.7)
    assert kinds(tx.events()) == ["ResponseReceived"] and tx.state == "proceeding"
    assert tx.get_timer() is None      # no A, no B once Proceeding
    busy = response(req, 486)
    tx.receive_response(busy, 5.0)
    evs = tx.events()
    assert kinds(evs) == ["Transmit", "ResponseReceived"] and tx.state == "completed"
    ack = evs[0].message  # type: ignore[union-attr]
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.uri == req.uri
    assert ack.cseq.seq == 7 and ack.cseq.method == "ACK" and ack.to_tag == "b1"
    assert ack.top_via.branch == "z9hG4bK-1" and len(ack.vias) == 1 and len(ack.routes) == 1
    # a retransmitted 486 is absorbed and ACKed again
    tx.receive_response(busy, 6.0)
    evs = tx.events()
    assert kinds(evs) == ["Transmit"] and evs[0].data == ack.serialize()  # type: ignore[union-attr]
    # Timer D: 32 s
    evs2 = run(tx, 100.0)
    assert kinds(evs2) == ["Terminated"] and evs2[0][0] == 37.0


def test_invite_client_reliable() -> None:
    req = request()
    tx = InviteClientTransaction(req, reliable=True)
    tx.start(0.0)
    tx.events()
    assert tx.get_timer() == 32.0   # B only, no A over TCP
    tx.receive_response(response(req, 503), 1.0)
    assert kinds(tx.events()) == ["Transmit", "ResponseReceived", "Terminated"]  # D = 0


def test_invite_client_2xx_accepted_state() -> None:
    req = request()
    tx = InviteClientTransaction(req, reliable=False)
    tx.start(0.0)
    tx.events()
    ok = response(req, 200)
    tx.receive_response(ok, 1.0)
    assert kinds(tx.events()) == ["ResponseReceived"] and tx.state == "accepted"
    tx.receive_response(ok, 2.0)    # RFC 6026: 2xx retransmissions go to the TU (it ACKs)
    assert kinds(tx.events()) == ["ResponseReceived"]
    tx.receive_response(response(req, 486), 2.0)
    assert tx.events() == []
    evs = run(tx, 100.0)
    assert kinds(evs) == ["Terminated"] and evs[0][0] == 33.0   # Timer M = 64*T1


# --- non-INVITE client (Figure 6) ---

def test_non_invite_client_timer_e_and_f() -> None:
    tx = NonInviteClientTransaction(request("OPTIONS"), reliable=False)
    tx.start(0.0)
    tx.events()
    evs = run(tx, 100.0)
    # Timer E: T1 doubling up to T2 = 4 s; Timer F = 32 s
    assert retransmit_times(evs) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert kinds(evs)[-2:] == ["TransactionTimeout", "Terminated"]
    to = [e for _, e in evs if isinstance(e, TransactionTimeout)]
    assert to[0].timer == "F" and evs[-1][0] == 32.0


def test_non_invite_client_proceeding_and_completed() -> None:
    req = request("BYE")
    tx = NonInviteClientTransaction(req, reliable=False)
    tx.start(0.0)
    tx.events()
    tx.receive_response(response(req, 100), 0.2)
    assert kinds(tx.events()) == ["ResponseReceived"] and tx.state == "proceeding"
    evs = run(tx, 10.0)
    assert retransmit_times(evs) == [0.5, 4.5, 8.5]   # T2 interval in Proceeding
    tx.receive_response(response(req, 200), 10.0)
    assert kinds(tx.events()) == ["ResponseReceived"] and tx.state == "completed"
    tx.receive_response(response(req, 200), 11.0)   # absorbed
    assert tx.events() == []
    evs = run(tx, 100.0)
    assert kinds(evs) == ["Terminated"] and evs[0][0] == 15.0   # Timer K = T4


def test_non_invite_client_reliable() -> None:
    req = request("OPTIONS")
    tx = new_client_transaction(req, reliable=True)
    assert isinstance(tx, NonInviteClientTransaction)
    tx.start(0.0)
    tx.events()
    assert tx.get_timer() == 32.0   # F only
    tx.receive_response(response(req, 200), 0.1)
    assert kinds(tx.events()) == ["ResponseReceived", "Terminated"]   # K = 0


# --- INVITE server (Figure 7) ---

def test_invite_server_retransmissions_and_timer_g_h() -> None:
    req = request()
    tx = InviteServerTransaction(req, reliable=False, now=0.0)
    evs = tx.events()
    assert kinds(evs) == ["Transmit"] and evs[0].message.status == 100  # type: ignore[union-attr]
    tx.receive_request(req, 0.5)     # retransmitted INVITE: 100 again, nothing for the TU
    assert kinds(tx.events()) == ["Transmit"]
    tx.respond(180, 0.6, to_tag="b1")
    ringing = tx.events()
    tx.receive_request(req, 1.0)
    again = tx.events()
    assert again[0].data == ringing[0].data  # type: ignore[union-attr]
    tx.respond(486, 2.0, to_tag="b1")
    assert tx.state == "completed"
    final = tx.events()[0]
    tx.receive_request(req, 2.1)
    assert [e.data for e in tx.events()] == [final.data]  # type: ignore[union-attr]
    evs2 = run(tx, 100.0)
    # Timer G: T1 doubling up to T2 from 2.0; Timer H = 32 s -> no ACK
    assert retransmit_times(evs2) == [2.5, 3.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5, 33.5]
    assert kinds(evs2)[-2:] == ["TransactionTimeout", "Terminated"] and evs2[-1][0] == 34.0


def test_invite_server_ack_confirms() -> None:
    req = request()
    tx = InviteServerTransaction(req, reliable=False, now=0.0, send_trying=False)
    assert tx.events() == []
    tx.respond(404, 1.0, to_tag="b1")
    tx.events()
    run(tx, 1.6)   # one G retransmission
    ack = request("ACK")
    assert server_key(ack) == tx.key
    tx.receive_request(ack, 2.0)
    assert tx.state == "confirmed" and tx.events() == []
    tx.receive_request(ack, 2.5)   # absorbed
    tx.receive_request(req, 2.6)   # absorbed too in Confirmed
    assert tx.events() == []
    evs = run(tx, 100.0)
    assert kinds(evs) == ["Terminated"] and evs[0][0] == 7.0   # Timer I = T4


def test_invite_server_2xx_accepted() -> None:
    req = request()
    tx = new_server_transaction(req, reliable=True, now=0.0)
    assert isinstance(tx, InviteServerTransaction)
    tx.events()
    ok = tx.respond(200, 0.5, to_tag="b1")
    assert tx.state == "accepted" and kinds(tx.events()) == ["Transmit"]
    tx.send_response(ok, 1.0)   # the TU's own 2xx retransmission passes
    assert kinds(tx.events()) == ["Transmit"]
    with pytest.raises(TransactionStateError):
        tx.respond(486, 1.1)
    tx.receive_request(req, 1.2)   # INVITE retransmission absorbed
    assert tx.events() == []
    tx.receive_request(request("ACK"), 1.5)
    evs = tx.events()
    assert kinds(evs) == ["AckReceived"] and isinstance(evs[0], AckReceived)
    evs2 = run(tx, 100.0)
    assert kinds(evs2) == ["Terminated"] and evs2[0][0] == 32.5   # Timer L


def test_invite_server_reliable_no_g() -> None:
    req = request()
    tx = InviteServerTransaction(req, reliable=True, now=0.0)
    tx.events()
    tx.respond(500, 1.0)
    tx.events()
    assert tx.get_timer() == 33.0   # H only
    tx.receive_request(request("ACK"), 1.1)
    assert kinds(tx.events()) == ["Terminated"]   # I = 0


# --- non-INVITE server (Figure 8) ---

def test_non_invite_server_unreliable() -> None:
    req = request("OPTIONS")
    tx = NonInviteServerTransaction(req, reliable=False, now=0.0)
    tx.receive_request(req, 0.5)    # Trying: absorbed silently
    assert tx.events() == []
    tx.respond(100, 0.6)
    tx.events()
    tx.receive_request(req, 0.7)    # Proceeding: last provisional again
    assert [e.message.status for e in tx.events()] == [100]  # type: ignore[union-attr]
    tx.respond(200, 1.0)
    ok = tx.events()
    tx.receive_request(req, 2.0)    # Completed: final again
    assert [e.data for e in tx.events()] == [ok[0].data]  # type: ignore[union-attr]
    with pytest.raises(TransactionStateError):
        tx.respond(500, 2.0)
    evs = run(tx, 100.0)
    assert kinds(evs) == ["Terminated"] and evs[0][0] == 33.0   # Timer J = 64*T1


def test_non_invite_server_reliable() -> None:
    tx = NonInviteServerTransaction(request("REGISTER"), reliable=True, now=0.0)
    tx.respond(200, 0.1)
    assert kinds(tx.events()) == ["Transmit", "Terminated"]   # J = 0


def test_transport_error() -> None:
    tx = InviteClientTransaction(request(), reliable=False)
    tx.start(0.0)
    tx.events()
    tx.transport_error(0.1)
    evs = tx.events()
    assert isinstance(evs[0], TransportFailed) and isinstance(evs[1], Terminated)
    assert tx.get_timer() is None


def test_keys() -> None:
    req = request()
    assert client_key(response(req, 180)) == client_key(req) == ("z9hG4bK-1", "INVITE")
    cancel = request("CANCEL")
    assert server_key(cancel) != server_key(req)
    assert server_key(cancel, method="INVITE") == server_key(req)
    assert server_key(request(branch="z9hG4bK-2")) != server_key(req)
    old = request(branch="1234")   # RFC 2543 fallback
    assert server_key(old)[0] == "2543" and server_key(old) == server_key(request("ACK", "1234"))
    with pytest.raises(TransactionStateError):
        new_server_transaction(request("ACK"), reliable=False, now=0.0)
    with pytest.raises(TransactionStateError):
        new_client_transaction(request("ACK"), reliable=False)
    assert isinstance(ResponseReceived(response(req, 200)).response, SipResponse)
