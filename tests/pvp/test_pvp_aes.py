"""The cryptography-backed AES-CBC behaves exactly like tlslite's pure-Python one."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlslite.utils.python_aes import new as python_aes

from vipr.pvp.aes import CryptographyAES


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=50)
@given(key_len=st.sampled_from([16, 32]), chunks=st.lists(st.integers(0, 6), max_size=5))
def test_same_as_python_aes_across_chained_calls(key_len: int, chunks: list[int]) -> None:
    key, iv = os.urandom(key_len), os.urandom(16)
    ours, ref = CryptographyAES(key, iv), python_aes(bytearray(key), 2, bytearray(iv))
    ours_d, ref_d = CryptographyAES(key, iv), python_aes(bytearray(key), 2, bytearray(iv))
    for n in chunks:
        pt = bytearray(os.urandom(16 * n))
        ct = ours.encrypt(bytearray(pt))
        assert ct == ref.encrypt(bytearray(pt))
        assert ours_d.decrypt(bytearray(ct)) == ref_d.decrypt(bytearray(ct)) == pt


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=50)
@given(ops=st.lists(st.tuples(st.sampled_from(["enc", "dec", "iv"]), st.integers(0, 4)),
                    max_size=8))
def test_same_as_python_aes_when_switching_direction_or_setting_iv(
    ops: list[tuple[str, int]],
) -> None:
    """One object used both ways, or given a new IV, still chains like Python_AES (the kept
    OpenSSL contexts are rebuilt from the current IV)."""
    key, iv = os.urandom(16), os.urandom(16)
    ours, ref = CryptographyAES(key, iv), python_aes(bytearray(key), 2, bytearray(iv))
    for op, n in ops:
        data = bytearray(os.urandom(16 * n))
        if op == "iv":
            new_iv = os.urandom(16)
            ours.IV, ref.IV = new_iv, bytearray(new_iv)
        elif op == "enc":
            assert ours.encrypt(bytearray(data)) == ref.encrypt(bytearray(data))
        else:
            assert ours.decrypt(bytearray(data)) == ref.decrypt(bytearray(data))
        assert bytes(ours.IV) == bytes(ref.IV)
