"""RELOAD (RFC 6940) with CHORD-RELOAD (§10) for VIPR. Package map (what is pure is marked):

wire/   the wire format, pure (bytes in, objects out; no I/O) with two edges: transaction ids
        from `os.urandom` (context), the clock when a signature check is given no time:
  codec            `Reader`/`Writer` (bounded), `ReloadDecodeError`, `ReloadEncodeError`.
  forwarding       `ForwardingHeader`, destinations, `overlay_hash`, `resource_id`,
                   `response_destinations` (§6.3.2.1: previous hop + reversed via list).
  envelope         `Message`, `MessageContents`, `SecurityBlock`, `Signature`,
                   `decode_message`, `decode_header`, `encode_message` (§6.3).
  codes            `MessageCode` (§14.8).
  bodies           `Body` (the union of every body class), `WithCertificates`,
                   `decode_body(code, bytes, models)`, `body_code(body)`, `error_info_json`;
                   re-exports the body classes of:
  topology_bodies  Probe, Join, Leave, Update (`ChordUpdate`), RouteQuery (§6.4.2, §10).
  link_bodies      Attach, AppAttach, Ping, ConfigUpdate, ICE candidates (§6.5).
  error_bodies     `ErrorCode`, `ErrorResponse` (§6.3.3.1).
  storage_bodies   `StoredData`, `DataModel`, Store/Fetch/Stat/Find (§7), `STORAGE_BODIES`.
  vipr_kind        the VIPR Kind's value (number prefix → provider entry).
  security         `NodeCredentials`, `TrustStore`, sign/verify messages and stored data (§13).
  context          `ReloadContext`: build + sign + encode, decode + verify (`Received`).
                   Transaction ids come from `os.urandom` (§6.3.2).

core/   the protocol, pure (events, messages, `now` and the wall time in, actions out;
        randomness injected; no clock, entropy source, socket, store or log):
  chord_protocol   `ChordProtocol`: join or create at start (§10.5, §11.4), reactive and
                   periodic Update (§10.7), Leave (§10.9), repair and finger refresh, the
                   No-ICE Attach exchange (§6.5.1), AppAttach requests and answers
                   (§6.5.2), Probe/Ping/RouteQuery answers, the routing decision.
                   Returns `SendRequest`/`Connect`/`CloseLinks`/`SetTimer`/`TopologyChanged`/
                   `JoinDone` actions; it is the `RingView` the storage reads.
  storage_protocol `StorageProtocol`: Store/Fetch/Stat/Find answers (§7.4), replica Stores
                   after an original Store (§10.4), hand-offs and re-replication after a
                   topology change (hold-down, §10.7.3), the hand-off before a Leave; returns
                   `SendRequest` (purpose REPLICA) and `SetTimer` (REPLICATION).
  vipr_usage       `ViprLookup` (N, COPY1N, COPY2N; Stat and fetch by key; signatures
                   checked), `ClaimStores` (signed Stores, increasing storage times): return
                   `UsageRequest`s (DESIGN §4).
  topology         `ChordTopology`: Neighbor and Finger Tables, `next_hop`, `responsible`,
                   Update contents and candidates (§10.3, §10.7).
  storage          `DataStore`: the stored data and the access-control policies (§7).
  replication      `ReplicationPlanner`: which replica goes where after a change (§10.7.4).
  transactions     `ClientTransactions` (3 s x 5 transmissions), `AnswerCache` (§6.2.1-2).
  framing          `FramingState`: TLS-TCP-FH-NO-ICE frames, ACK bitmaps, RTT/RTO (§6.6).
  node_api         `ChordTimers`, `ReloadRequestError`, `ReloadJoinError`, plug-in protocols.

aio/    the asyncio shell (sockets, TLS, clocks, tasks, logs), carrying out what core/ decides:
  link             `Link`, `connect`, `serve`, `Listener` (TLS 1.2+, mutual authentication).
  transactions     `AsyncTransactions` over `ClientTransactions`.
  transport        `NodeTransport`: links, the message path of symmetric recursive routing
                   (§6.2: forwarding, retransmission, answer cache, the
                   Error_Response_Too_Large substitution); routes come from the core.
  node             `ReloadNode`: holds a `ChordProtocol` and a `NodeTransport`, carries out
                   the protocol's actions (tasks, timers); looks up AppAttach addresses.
  storage_service  `StorageService`: the carrier of a `StorageProtocol` over a node.
  vipr_usage       `ViprPublisher`, `lookup`: the carriers of `ClaimStores` and `ViprLookup`.
  daemon           `vipr-overlayd`: nodes of one provider, IPC, republishing, systemd notify.
  capture          `overlay.debug.capture`: the pcap file, the TLS key log, the warnings.

sim/    the simulator: N `ChordProtocol`s (and `StorageProtocol`s) over an in-memory network
        in simulated time; `Simulation.request` carries a node user's request (the usage).

tools/  development tools: jsonview (JSON view of a message), pcap (tshark captures), fuzz,
        capture (pcap records of `overlay.debug.capture`; aio/capture writes them).

Top level: errors (`ReloadError`, the base of every RELOAD exception), overlay_config
(§11.1 configuration document), config_signature (its signatures: sign, verify), ca (overlay
CA, node and configuration-signer certificates), cli and overlay_cli (commands).
"""
