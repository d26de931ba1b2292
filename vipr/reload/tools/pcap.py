"""Write RELOAD link traffic into a classic pcap (Ethernet/IPv4/TCP) for tshark/Wireshark.

TCP port 6084 is what Wireshark's decode table hands to `reload-framing` (digest B.1), so the
capture is plaintext framed messages as a node writes them into its TLS stream.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from vipr.reload.core.framing import FramingState
from vipr.reload.wire import bodies as m
from vipr.reload.wire import storage_bodies as sc
from vipr.reload.wire.context import ReloadContext
from vipr.reload.wire.envelope import decode_message
from vipr.reload.wire.forwarding import NodeDestination, ResourceDestination, resource_id
from vipr.reload.wire.security import NodeCredentials, TrustStore, sign_stored_data

RELOAD_PORT = 6084
MSS = 1400


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = int(sum(struct.unpack(f"!{len(b) // 2}H", b)))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class PcapWriter:
    """One TCP conversation between a client (ephemeral port) and a server on `server_port`."""

    def __init__(self, f: BinaryIO, client: str = "127.0.0.1", server: str = "127.0.0.2",
                 client_port: int = 50000, server_port: int = RELOAD_PORT) -> None:
        self.f = f
        self.addr = {True: bytes(map(int, client.split("."))),
                     False: bytes(map(int, server.split(".")))}
        self.port = {True: client_port, False: server_port}
        self.seq = {True: 1000, False: 5000}
        self.t = time.time()
        self.frames = 0
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self._segment(True, b"", 0x02)  # SYN
        self.seq[True] += 1
        self._segment(False, b"", 0x12)  # SYN-ACK
        self.seq[False] += 1
        self._segment(True, b"", 0x10)  # ACK

    def _segment(self, from_client: bool, payload: bytes, flags: int = 0x18) -> None:
        src, dst = self.addr[from_client], self.addr[not from_client]
        ack = self.seq[not from_client] if flags != 0x02 else 0
        tcp = struct.pack("!HHIIBBHHH", self.port[from_client], self.port[not from_client],
                          self.seq[from_client], ack, 5 << 4, flags, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        c = _csum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload),
                         self.frames & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        frame = b"\0\0\0\0\0\2" + b"\0\0\0\0\0\1" + b"\x08\x00" + ip + tcp + payload
        self.t += 0.001
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.frames += 1
        self.seq[from_client] = (self.seq[from_client] + len(payload)) & 0xFFFFFFFF

    def write(self, from_client: bool, data: bytes) -> None:
        """Stream bytes from one side (split into MSS-sized segments)."""
        for i in range(0, len(data), MSS):
            self._segment(from_client, data[i : i + MSS])


class PcapTap:
    """A `Link` tap writing the plaintext framed stream of one link into a pcap.

    The link's own side is drawn as the client, its peer as port 6084 (so tshark dissects it).
    """

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.writer = PcapWriter(self._f)

    def __call__(self, link: object, outgoing: bool, data: bytes) -> None:
        self.writer.write(outgoing, data)

    def close(self) -> None:
        self._f.close()


def sample_messages(a: ReloadContext, b: ReloadContext) -> list[tuple[bool, bytes]]:
    """(from_a, message) for one instance of every request and answer this code emits.

    Fetch/Stat use the dictionary wildcard (what VIPR lookups send). Wireshark 4.0's dissector
    reads a non-empty dictionary key list in a StoredDataSpecifier at the wrong offset and
    flags it as an error although the bytes follow §7.4.2.1, so explicit keys are left out.
    """
    out: list[tuple[bool, bytes]] = []
    to_b = (NodeDestination(b.node_id),)
    rid = resource_id("+14085551234")
    kind = sc.KIND_VIPR
    key = (a.node_id.hex() + "+" + "00112233aabbccdd").encode()
    value = sc.DictionaryEntry(key, sc.DataValue(True, bytes.fromhex("2008001000") + b"\0" * 15))
    sd = sign_stored_data(a.creds, rid, kind, 1_700_000_000_000, 86400, value)
    cand = m.IceCandidate(m.IpAddressPort("127.0.0.1", 6084))
    cand6 = m.IceCandidate(m.IpAddressPort("::1", 6085))

    def pair(req_body: Any, ans_body: Any, dests: tuple[Any, ...] = to_b) -> None:
        _txid, req = a.request(req_body, dests)
        out.append((True, req))
        out.append((False, b.answer(decode_message(req), ans_body, previous_hop=a.node_id)))

    pair(m.PingReq(b"\0" * 8), m.PingAns(42, 1_700_000_000_000))
    pair(m.ProbeReq((1, 2, 3)), m.ProbeAns((m.ProbeInformation(1, 1000),
                                            m.ProbeInformation(2, 7), m.ProbeInformation(3, 60))))
    pair(m.AttachReqAns(b"uf", b"pw", b"passive", (cand,), True),
         m.AttachReqAns(b"uf2", b"pw2", b"active", (cand6,), False),
         (ResourceDestination(bytes(a.node_id[:-1]) + bytes([(a.node_id[-1] + 1) & 0xFF])),))
    pair(m.AppAttachReqAns(b"uf", b"pw", m.PVP_APPLICATION_ID, b"passive", ()),
         m.AppAttachReqAns(b"uf", b"pw", m.PVP_APPLICATION_ID, b"active", (cand,)))
    pair(sc.StoreReq(rid, 0, (sc.StoreKindData(kind, 0, (sd,)),)),
         sc.StoreAns((sc.StoreKindResponse(kind, 1, (b.node_id, a.node_id)),)),
         (ResourceDestination(rid),))
    pair(sc.FetchReq(rid, (sc.StoredDataSpecifier(kind, 0, sc.DictionarySpecifier(())),)),
         sc.FetchAns((sc.FetchKindResponse(kind, 1, (sd,)),)), (ResourceDestination(rid),))
    pair(sc.StatReq(rid, (sc.StoredDataSpecifier(kind, 0, sc.DictionarySpecifier(())),)),
         sc.StatAns((sc.StatKindResponse(kind, 1, (sc.StoredMetaData(
             1_700_000_000_000, 86400, sc.DictionaryEntryMeta(key, sc.MetaData(
                 True, 20, 4, b"\xab" * 32))),)),)),
         (ResourceDestination(rid),))
    pair(sc.FindReq(rid, (kind,)), sc.FindAns((sc.FindKindData(kind, rid),)),
         (ResourceDestination(rid),))
    pair(m.JoinReq(a.node_id), m.JoinAns())
    pair(m.LeaveReq.chord(a.node_id, m.ChordLeaveData(m.LEAVE_FROM_SUCC, (b.node_id,))),
         m.EmptyBody())
    pair(m.ChordUpdate(60, m.CHORD_FULL, (b.node_id,), (b.node_id,), (b.node_id,)),
         m.EmptyBody())
    pair(m.ChordUpdate(61, m.CHORD_NEIGHBORS, (b.node_id,), (b.node_id,)), m.EmptyBody())
    pair(m.ChordUpdate(62, m.CHORD_PEER_READY), m.EmptyBody())
    pair(m.RouteQueryReq(True, NodeDestination(b.node_id)), m.ChordRouteQueryAns(b.node_id))
    pair(m.ConfigUpdateReq(m.CONFIG_UPDATE_CONFIG, b"<overlay/>"), m.EmptyBody())
    pair(m.ConfigUpdateReq(m.CONFIG_UPDATE_KIND, b"", (b"<kind-block/>",)), m.EmptyBody())
    # Errors: a text reason, the binary error_info forms (§6.3.3.1).
    _, req = a.request(m.PingReq(), to_b)
    r = decode_message(req)
    out.append((True, req))
    hop = a.node_id
    gen_info = sc.StoreAns((sc.StoreKindResponse(kind, 5, ()),)).encode()
    for err in (
        b.error(r, m.ErrorCode.FORBIDDEN, "signature check failed", previous_hop=hop),
        b.answer(r, m.ErrorResponse.unknown_kinds((0xF0000999,)), previous_hop=hop),
        b.error(r, m.ErrorCode.GENERATION_COUNTER_TOO_LOW, gen_info, previous_hop=hop),
        b.error(r, m.ErrorCode.MESSAGE_TOO_LARGE, "message too large", previous_hop=hop),
    ):
        out.append((False, err))
    return out


def write_frames(path: Path, msgs: Iterable[tuple[bool, bytes]]) -> int:
    """Frame each message as its sender's link would (data + the peer's ACK) into a pcap."""
    fs = {True: FramingState(max_message_size=1 << 24), False: FramingState(
        max_message_size=1 << 24)}
    n = 0
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for from_a, msg in msgs:
            frame = fs[from_a].send_data(msg, 0.0)
            w.write(from_a, frame)
            _, ack = fs[not from_a].receive(frame, 0.0)
            w.write(not from_a, ack)
            fs[from_a].receive(ack, 0.001)
            n += 2
    return n


def write_sample_pcap(path: Path, overlay: str = "vipr-pcap.example.org") -> int:
    """Generate throw-away credentials and write `sample_messages` to `path`."""
    from vipr.reload.ca import create_ca, issue_node_cert

    ca_cert, ca_key = create_ca(overlay)
    a: NodeCredentials = issue_node_cert(ca_cert, ca_key, overlay, "a@pcap.example")
    b: NodeCredentials = issue_node_cert(ca_cert, ca_key, overlay, "b@pcap.example")
    trust = TrustStore([ca_cert], overlay=overlay)
    ca_ = ReloadContext(overlay, a, trust)
    cb = ReloadContext(overlay, b, trust)
    return write_frames(path, sample_messages(ca_, cb))


TSHARK_KIND_UAT = f'uat:reload_kindids:"{sc.KIND_VIPR}","VIPR","DICTIONARY"'

__all__ = ["PcapTap", "PcapWriter", "TSHARK_KIND_UAT", "sample_messages", "write_frames",
           "write_sample_pcap"]
