"""High-level helpers: build + sign + encode requests/answers, decode + verify messages."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509

from vipr.reload.wire.bodies import (
    Body,
    ErrorCode,
    ErrorResponse,
    MessageCode,
    OutgoingBody,
    WithCertificates,
    body_code,
    decode_body,
)
from vipr.reload.wire.codec import ReloadDecodeError, Writer
from vipr.reload.wire.envelope import (
    CERT_X509,
    Message,
    MessageContents,
    decode_message,
    encode_message,
)
from vipr.reload.wire.forwarding import (
    DEFAULT_TTL,
    Destination,
    ForwardingHeader,
    overlay_hash,
    response_destinations,
)
from vipr.reload.wire.security import (
    NodeCredentials,
    TrustStore,
    VerifiedSigner,
    message_signature_input,
    verify_message,
)
from vipr.reload.wire.storage_bodies import DataModel


def new_transaction_id() -> int:
    """§6.3.2: a random 64-bit transaction id."""
    return int.from_bytes(os.urandom(8), "big")


@dataclass(frozen=True)
class Received:
    """A decoded message with its typed body and (when verified) the signer."""

    message: Message
    body: Body
    signer: VerifiedSigner | None


def unwrap_body(body: OutgoingBody) -> tuple[Body, tuple[bytes, ...]]:
    if isinstance(body, WithCertificates):
        return body.body, body.certificates
    return body, ()


class ReloadContext:
    """Everything needed to emit and accept signed messages for one node in one overlay."""

    def __init__(
        self,
        overlay: str,
        creds: NodeCredentials,
        trust: TrustStore,
        *,
        configuration_sequence: int = 0,
        initial_ttl: int = DEFAULT_TTL,
        models: Mapping[int, DataModel] | None = None,
        include_certs: bool = True,
    ) -> None:
        self.overlay = overlay
        self.overlay_id = overlay_hash(overlay)
        self.creds = creds
        self.trust = trust
        self.configuration_sequence = configuration_sequence
        self.initial_ttl = initial_ttl
        self.models = models
        self.include_certs = include_certs
        self._sec_cache: dict[tuple[bytes, ...], bytes] = {}

    @property
    def node_id(self) -> bytes:
        return self.creds.node_id

    def encode(self, code: int, body: bytes, destinations: tuple[Destination, ...],
               transaction_id: int, *, via: tuple[Destination, ...] = (),
               max_response_length: int = 0, extra_certs: tuple[bytes, ...] = ()) -> bytes:
        """Header + contents + signed security block, as wire bytes."""
        header = ForwardingHeader(
            overlay=self.overlay_id,
            transaction_id=transaction_id,
            destination_list=destinations,
            via_list=via,
            configuration_sequence=self.configuration_sequence,
            ttl=self.initial_ttl,
            max_response_length=max_response_length,
        )
        contents = MessageContents(code, body).encode()
        return encode_message(header, contents, self._security(header, contents, extra_certs))

    def _security(self, header: ForwardingHeader, contents: bytes,
                  extra_certs: tuple[bytes, ...] = ()) -> bytes:
        data = message_signature_input(header.overlay, header.transaction_id, contents,
                                       self.creds.identity_bytes)
        sig = self.creds.sign(data)
        # Cache the certificate list prefix: only the signature value changes per message.
        w = bytearray(self._cert_prefix(extra_certs))
        w += bytes([4, 1]) + self.creds.identity_bytes + struct.pack("!H", len(sig)) + sig
        return bytes(w)

    def _cert_prefix(self, extra_certs: tuple[bytes, ...] = ()) -> bytes:
        key = ((self.creds.der,) if self.include_certs else ()) + extra_certs
        pre = self._sec_cache.get(key)
        if pre is None:
            cw = Writer()
            seen: set[bytes] = set()
            if self.include_certs:
                for gc in self.creds.generic_certificates():
                    cw.u8(gc.type).opaque(2, gc.certificate)
                    seen.add(gc.certificate)
            for der in extra_certs:
                if der not in seen:
                    cw.u8(CERT_X509).opaque(2, der)
                    seen.add(der)
            pre = Writer().opaque(2, cw.getvalue()).getvalue()
            if len(self._sec_cache) > 256:
                self._sec_cache.clear()
            self._sec_cache[key] = pre
        return pre

    def request(self, body: OutgoingBody, destinations: tuple[Destination, ...], *,
                transaction_id: int | None = None, code: int | None = None,
                via: tuple[Destination, ...] = (), max_response_length: int = 0,
                ) -> tuple[int, bytes]:
        """Build, sign and encode a request; returns (transaction_id, bytes)."""
        txid = new_transaction_id() if transaction_id is None else transaction_id
        body, extra = unwrap_body(body)
        c = body_code(body) if code is None else code
        return txid, self.encode(c, body.encode(), destinations, txid, via=via,
                                 max_response_length=max_response_length, extra_certs=extra)

    def answer(self, request: Message, body: OutgoingBody, *, previous_hop: bytes | None = None,
               code: int | None = None) -> bytes:
        """Build, sign and encode the answer to `request` (code = request code + 1)."""
        body, extra = unwrap_body(body)
        c = request.code + 1 if code is None else code
        if code is None and isinstance(body, ErrorResponse):
            c = MessageCode.ERROR
        return self.encode(c, body.encode(), response_destinations(request.header, previous_hop),
                           request.transaction_id, extra_certs=extra)

    def error_to(self, header: ForwardingHeader, error_code: int | ErrorCode,
                 info: bytes | str = b"", *, previous_hop: bytes | None = None) -> bytes:
        """An Error answering a request of which only the forwarding header is known."""
        raw = info.encode("utf-8") if isinstance(info, str) else info
        body = ErrorResponse(int(error_code), raw).encode()
        return self.encode(MessageCode.ERROR, body, response_destinations(header, previous_hop),
                           header.transaction_id)

    def error(self, request: Message, error_code: int | ErrorCode, info: bytes | str = b"", *,
              previous_hop: bytes | None = None) -> bytes:
        raw = info.encode("utf-8") if isinstance(info, str) else info
        return self.answer(request, ErrorResponse(int(error_code), raw),
                           previous_hop=previous_hop, code=MessageCode.ERROR)

    def decode(self, data: bytes, *, verify: bool = True, now: float | None = None,
               expected_node_id: bytes | None = None,
               extra_certs: Iterable[x509.Certificate] = ()) -> Received:
        """Decode (ReloadDecodeError) and verify (ReloadSecurityError) a message."""
        msg = decode_message(data)
        if msg.header.overlay != self.overlay_id:
            # §6.1: a message for another overlay is discarded.
            raise ReloadDecodeError("message is for another overlay")
        body = decode_body(msg.code, msg.contents.body, self.models)
        signer = None
        if verify:
            signer = verify_message(msg, self.trust, now, extra_certs, expected_node_id)
        return Received(msg, body, signer)
