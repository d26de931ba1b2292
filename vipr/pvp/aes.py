"""AES-CBC for tlslite-ng's record layer from `cryptography` (OpenSSL) instead of pure Python.

tlslite-ng 0.8 looks for M2Crypto or the legacy pycrypto for AES and otherwise encrypts records
in pure Python (research/deps.md §3: 0.3 MB/s). The PVP exchange after the handshake carries a
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
    """AES-CBC with a chained IV, like tlslite's Python_AES (mode 2)."""

    def __init__(self, key: bytes | bytearray, iv: bytes | bytearray) -> None:
        super().__init__(key, 2, iv, "cryptography")
        self._alg = algorithms.AES(bytes(key))
        self.IV = bytes(iv)

    def encrypt(self, plaintext: bytes | bytearray) -> bytearray:
        assert len(plaintext) % 16 == 0
        enc = Cipher(self._alg, modes.CBC(self.IV)).encryptor()
        out = enc.update(bytes(plaintext)) + enc.finalize()
        if out:
            self.IV = out[-16:]
        return bytearray(out)

    def decrypt(self, ciphertext: bytes | bytearray) -> bytearray:
        assert len(ciphertext) % 16 == 0
        dec = Cipher(self._alg, modes.CBC(self.IV)).decryptor()
        out = dec.update(bytes(ciphertext)) + dec.finalize()
        if ciphertext:
            self.IV = bytes(ciphertext[-16:])
        return bytearray(out)


def _create_aes(key: Any, iv: Any, implList: Any = None) -> Any:
    if len(iv) == 16 and len(key) in (16, 24, 32):
        return CryptographyAES(key, iv)
    return _original_create_aes(key, iv, implList)


def install() -> None:
    """Route tlslite's AES-CBC through `cryptography` (idempotent, process-wide)."""
    tlslite.utils.cipherfactory.createAES = _create_aes
    tlslite.recordlayer.createAES = _create_aes  # imported by name there
