"""AES-CBC for tlslite-ng's record layer from `cryptography` (OpenSSL) instead of pure Python.

tlslite-ng 0.8 looks for M2Crypto or the legacy pycrypto for AES and otherwise encrypts records
in pure Python (0.3 MB/s, measured). The PVP exchange after the handshake carries a
few hundred bytes each way, which then cost more than the handshake's own records (measured in
bench/pvp.py). `install()` makes tlslite's `createAES` return `CryptographyAES`, a drop-in with
the same semantics as `tlslite.utils.python_aes.Python_AES` in CBC mode (the IV chains across
calls); every other cipher is left to tlslite.
"""

from __future__ import annotations

from typing import Any

import tlslite.recordlayer
import tlslite.utils.cipherfactory
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tlslite.utils.aes import AES

__all__ = ["CryptographyAES", "install"]

_original_create_aes = tlslite.utils.cipherfactory.createAES


class CryptographyAES(AES):  # type: ignore[misc]
    """AES-CBC with a chained IV, like tlslite's Python_AES (mode 2).

    One OpenSSL context per direction lives as long as the object: CBC's state after a call
    is exactly the chained IV (the last ciphertext block), so `update` on a kept context gives
    the bytes a fresh context started from `IV` would, without building one per record
    (~10-20 µs each, 8 records per PVP validation). Setting `IV`, or switching between
    encrypting and decrypting, starts a new context from the current `IV`."""

    def __init__(self, key: bytes | bytearray, iv: bytes | bytearray) -> None:
        super().__init__(key, 2, iv, "cryptography")
        self._alg = algorithms.AES(bytes(key))
        self.IV = bytes(iv)

    @property
    def IV(self) -> bytes:  # tlslite's attribute name
        return self._iv

    @IV.setter
    def IV(self, iv: bytes | bytearray) -> None:
        self._iv = bytes(iv)
        self._enc: Any = None
        self._dec: Any = None

    def encrypt(self, plaintext: bytes | bytearray) -> bytearray:
        assert len(plaintext) % 16 == 0
        if self._enc is None:
            enc = Cipher(self._alg, modes.CBC(self._iv)).encryptor()
            self.IV = self._iv  # drops a decrypting context: it no longer chains
            self._enc = enc
        out = self._enc.update(bytes(plaintext))
        if out:
            self._iv = out[-16:]
        return bytearray(out)

    def decrypt(self, ciphertext: bytes | bytearray) -> bytearray:
        assert len(ciphertext) % 16 == 0
        if self._dec is None:
            dec = Cipher(self._alg, modes.CBC(self._iv)).decryptor()
            self.IV = self._iv
            self._dec = dec
        out = self._dec.update(bytes(ciphertext))
        if ciphertext:
            self._iv = bytes(ciphertext[-16:])
        return bytearray(out)


def _create_aes(key: Any, iv: Any, implList: Any = None) -> Any:
    if len(iv) == 16 and len(key) in (16, 24, 32):
        return CryptographyAES(key, iv)
    return _original_create_aes(key, iv, implList)


def install() -> None:
    """Route tlslite's AES-CBC through `cryptography` (idempotent, process-wide)."""
    tlslite.utils.cipherfactory.createAES = _create_aes
    tlslite.recordlayer.createAES = _create_aes  # imported by name there
