import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import aead, keys
from crypto.errors import AuthenticationFailed, KeyFileDamaged, KeyNotUnwrapped, UnsupportedSuite
from crypto.ids import chunk_id
from crypto.kdf import TEST_PARAMS, KdfParams, derive, max_memory_kib

KEY = bytes(range(32))


@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_seal_open_roundtrip(plaintext, ad):
    assert aead.open_(KEY, aead.seal(KEY, plaintext, ad), ad) == plaintext


@given(st.binary(min_size=1, max_size=512), st.data())
def test_any_flipped_bit_is_detected(plaintext, data):
    sealed = bytearray(aead.seal(KEY, plaintext, b"ad"))
    i = data.draw(st.integers(1, len(sealed) - 1))  # byte 0 is the suite: changing it is UnsupportedSuite
    sealed[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(AuthenticationFailed):
        aead.open_(KEY, bytes(sealed), b"ad")


def test_associated_data_and_key_are_bound():
    sealed = aead.seal(KEY, b"chunk", b"id-1")
    with pytest.raises(AuthenticationFailed):
        aead.open_(KEY, sealed, b"id-2")
    with pytest.raises(AuthenticationFailed):
        aead.open_(bytes(32), sealed, b"id-1")


def test_nonces_are_fresh():
    a, b = aead.seal(KEY, b"same", b""), aead.seal(KEY, b"same", b"")
    assert a != b and a[1:25] != b[1:25]


@given(st.binary(max_size=aead.OVERHEAD - 1))
def test_short_input_is_rejected(junk):
    with pytest.raises((AuthenticationFailed, UnsupportedSuite)):
        aead.open_(KEY, junk, b"")


def test_keyfile_roundtrip_and_wrong_passphrase():
    master = keys.MasterKey.generate()
    kf = keys.wrap(master, b"right", "r" * 32, TEST_PARAMS, {"label": "x"})
    assert keys.unwrap(kf, b"right", "r" * 32) == master
    with pytest.raises(KeyNotUnwrapped):
        keys.unwrap(kf, b"wrong", "r" * 32)
    with pytest.raises(KeyNotUnwrapped):  # a key file moved to another repository does not open
        keys.unwrap(kf, b"right", "s" * 32)
    assert b"right" not in kf and master.encryption_key not in kf
    assert "redacted" in repr(master)


def test_keyfile_digest_tells_damage_from_a_wrong_passphrase_and_old_files_still_open():
    master = keys.MasterKey.generate()
    kf = keys.wrap(master, b"right", "r" * 32, TEST_PARAMS, {"label": "x"})
    doc = json.loads(kf)
    assert doc["digest"].startswith("sha256:")
    damaged = dict(doc, data=doc["data"][:30] + ("B" if doc["data"][30] != "B" else "C") + doc["data"][31:])
    with pytest.raises(KeyFileDamaged):
        keys.unwrap(json.dumps(damaged).encode(), b"right", "r" * 32)
    old = {k: v for k, v in doc.items() if k != "digest"}  # written before the field existed
    assert keys.unwrap(json.dumps(old).encode(), b"right", "r" * 32) == master
    with pytest.raises(KeyNotUnwrapped):
        keys.unwrap(json.dumps(dict(old, data=damaged["data"])).encode(), b"right", "r" * 32)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_malformed_keyfile_is_a_clean_error(junk):
    with pytest.raises((UnsupportedSuite, KeyNotUnwrapped, KeyFileDamaged)):
        keys.unwrap(junk, b"pw", "r" * 32)


def test_hostile_kdf_cost_is_refused():
    with pytest.raises(UnsupportedSuite):
        KdfParams.from_dict({"algorithm": "argon2id", "time_cost": 1, "memory_kib": 1 << 30, "parallelism": 1})
    for bad in ({"time_cost": 17}, {"parallelism": 17, "memory_kib": 1 << 10}, {"parallelism": 4, "memory_kib": 31}):
        with pytest.raises(UnsupportedSuite):
            KdfParams.from_dict({"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8, "parallelism": 1, **bad})
    with pytest.raises(UnsupportedSuite, match="salt"):
        derive(b"pw", b"", TEST_PARAMS)


def test_kdf_memory_bound_is_4_gib_or_half_the_machine():
    assert max_memory_kib(64 << 30) == 4 << 20
    assert max_memory_kib(2 << 30) == 1 << 20
    assert max_memory_kib(0) == 4 << 20  # unknown: the fixed bound
    assert 0 < max_memory_kib() <= 4 << 20


def test_chunk_ids_are_keyed():
    assert chunk_id(KEY, b"data") != chunk_id(bytes(32), b"data")
    assert len(chunk_id(KEY, b"data")) == 32
