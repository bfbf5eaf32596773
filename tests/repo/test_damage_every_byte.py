"""Damage at rest, at every byte position: a sealed blob or object whose bytes changed anywhere
(first byte, last byte, anywhere between), or that was cut short at any length, opens as
CorruptObject, never as another exception (a damaged first byte used to surface as the crypto
layer's UnsupportedSuite: an internal error)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CorruptObject
from agent.repo.envelope import BlobType, Envelope
from crypto.keys import MasterKey

ENV = Envelope(MasterKey.generate(), "0" * 32, 2)
DATA = b"a chunk of a disk image " * 12
CID = ENV.chunk_id(DATA)
BLOB = ENV.seal(BlobType.DATA, CID, DATA)
OBJECT = ENV.seal_object(b"snapshot", b'{"a": 1}')


def _open_blob(raw: bytes) -> bytes:
    return ENV.open(BlobType.DATA, CID, raw, len(DATA))


def _open_object(raw: bytes) -> bytes:
    return ENV.open_object(b"snapshot", raw, "snapshot 12345678")


@pytest.mark.parametrize("sealed,opener", [(BLOB, _open_blob), (OBJECT, _open_object)], ids=["blob", "object"])
def test_every_flipped_byte_and_every_truncation_is_corrupt_object(sealed, opener):
    assert opener(sealed)  # intact: opens
    for pos in range(len(sealed)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(sealed)
            damaged[pos] ^= mask
            with pytest.raises(CorruptObject):
                opener(bytes(damaged))
    for length in range(len(sealed)):
        with pytest.raises(CorruptObject):
            opener(sealed[:length])
    with pytest.raises(CorruptObject):
        opener(bytes(len(sealed)))  # a zero-filled sector, as a NAS leaves after a power loss


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_corrupt_object(raw):
    for opener in (_open_blob, _open_object):
        with pytest.raises(CorruptObject):
            opener(raw)
