"""RELOAD (RFC 6940) for VIPR.

Part 1 (this branch, reload1) — wire codec, security, configuration, link, transactions:

Codec (sans-I/O; every decoder raises only `codec.ReloadDecodeError`):
  codec          `Reader`/`Writer` (bounded), `ReloadDecodeError`, `ReloadEncodeError`,
                 `NODE_ID_LENGTH` = 16.
  forwarding     `ForwardingHeader(overlay, transaction_id, destination_list, via_list, options,
                 configuration_sequence, version, ttl, fragment, length, max_response_length)`,
                 destinations `NodeDestination`, `ResourceDestination`, `OpaqueDestination`,
                 `CompactDestination`, `ForwardingOption`; `overlay_hash(name)` (last 4 bytes of
                 SHA-1), `resource_id(name)` (first 16 bytes of SHA-1), `WILDCARD_NODE_ID`.
  message        `Message(header, contents, security)`, `MessageContents(code, body bytes,
                 extensions)`, `SecurityBlock`, `Signature`, `SignerIdentity`,
                 `decode_message(bytes)`, `decode_header(bytes)`, `encode_message(...)`.
  messages       `decode_body(code, body, models)`, `body_code(body, answer=False)`,
                 EmptyBody (LeaveAns/UpdateAns/ConfigUpdateAns); re-exports every name below.
                 Bodies have `.encode()` / `Cls.decode(bytes)`:
  message_codes  `MessageCode`.
  topology_bodies  ProbeReq/ProbeAns, JoinReq/JoinAns, LeaveReq (+ChordLeaveData),
                 ChordUpdate (UpdateReq), RouteQueryReq, ChordRouteQueryAns.
  link_bodies    AttachReqAns, AppAttachReqAns, `IceCandidate`, `IpAddressPort`,
                 PingReq/PingAns, ConfigUpdateReq; `PVP_APPLICATION_ID` = 61441.
  error_response `ErrorCode`, ErrorResponse (`.text()`, `.unknown_kinds()`),
                 `error_info_json`.
  storage_codec  `DataModel`, `KIND_VIPR` = 0xF0000101, `DEFAULT_MODELS`, `DataValue`,
                 `ArrayEntry`, `DictionaryEntry`, `RawStoredValue` (unknown Kind), `StoredData`,
                 `StoreReq`/`StoreKindData`/`StoreAns`/`StoreKindResponse`, `FetchReq`/`FetchAns`/
                 `FetchKindResponse`, `StoredDataSpecifier` with `SingleSpecifier`,
                 `ArraySpecifier`, `DictionarySpecifier(())` (= wildcard, length 2),
                 `StatReq`/`StatAns`/`StoredMetaData`/`MetaData`, `FindReq`/`FindAns`.
                 Decoders take `models: Mapping[KindId, DataModel]` (None → DEFAULT_MODELS).
  jsonview       `to_jsonable(obj)`, `decode_to_json(bytes)`.

Security (raises `security.ReloadSecurityError`):
  security       `NodeCredentials(cert, key, node_id)` (`.load(cert_path, key_path)`,
                 `.write(dir)`), `TrustStore(roots, overlay=, self_signed_permitted=)`
                 (`.validate(cert, now) -> node_ids`), `sign_message`, `verify_message(msg,
                 trust, now, extra_certs, expected_node_id) -> VerifiedSigner`,
                 `sign_stored_data(creds, resource_id, kind, storage_time, lifetime, value)`,
                 `verify_stored_data(...)`, `cert_node_ids`, `cert_user`, `reload_uri`,
                 `parse_reload_uri` (RFC and bare-hex forms), `self_signed_node_id` (§13.4).
  ca             `create_ca(overlay)`, `issue_node_cert(ca_cert, ca_key, overlay, user, n)`,
                 `self_signed_node_cert(overlay, user)`, `random_node_id()`.
  overlay_config `OverlayConfiguration` (RFC 6940 §11.1 defaults), `KindDef`, `BootstrapNode`,
                 `load_overlay_config(path)`, `parse_overlay_document(bytes)`,
                 `write_overlay_document([conf])`, `vipr_overlay_configuration(...)`,
                 `vipr_kind()`, `OverlayConfigError`; `conf.trust_store()`, `conf.models()`.

High level (use these rather than assembling messages by hand):
  api            `ReloadContext(overlay, creds, trust, configuration_sequence=, models=)`:
                 `.request(body, destinations) -> (txid, bytes)` (built, signed, encoded),
                 `.answer(request_msg, body, previous_hop=)` (destination = previous hop +
                 reversed via list), `.error(request_msg, code, info, previous_hop=)`,
                 `.error_to(header, code, info)`, `.decode(bytes, verify=True,
                 expected_node_id=) -> Received(message, body, signer)`.
                 `new_transaction_id()`; `response_destinations` is re-exported from transactions.

Link and transactions:
  link           `FramingState` (sans-I/O framing: data 0x80 / ack 0x81, ACK bitmaps, RTT/RTO
                 per RFC 6298, `suspect()`/`dead()`), `connect(host, port, (cert, key) files,
                 trust, expected_node_id=, on_message=, on_too_large=)`, `serve(...)` →
                 `Link` (`.send(bytes)`, `.receive()`, `.peer_node_id`, `.closed`, `.close()`).
  transactions   `ClientTransactions` (3 s x 5 transmissions, sans-I/O), `AnswerCache` (15 s),
                 `response_destinations(header, previous_hop)` (previous hop + reversed via),
                 `AsyncTransactions` (`await request(txid, data, send)`, `deliver(txid, data)`).
  pcap           `PcapWriter`, `write_frames(path, [(from_client, message)])`,
                 `sample_messages(ctx_a, ctx_b)`, `TSHARK_KIND_UAT`.
"""
